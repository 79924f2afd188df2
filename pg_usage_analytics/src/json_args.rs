//! `jsonb` arguments parsed with a nesting limit. pgrx's own `JsonB`
//! parses with serde_json and panics past serde's recursion limit (an
//! internal error with a Rust backtrace); these check the depth of the text
//! first, without recursion, and refuse deep documents with SQLSTATE 22023
//! naming the argument.

use crate::errors::raise_invalid;
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::{direct_function_call, FromDatum};
use usage_analytics_core::validate;

/// The text of a jsonb datum, checked for depth, then parsed.
unsafe fn parse_jsonb(datum: pg_sys::Datum, argument: &'static str, max_depth: usize) -> serde_json::Value {
    let detoasted = unsafe { pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr()) };
    let text =
        unsafe { direct_function_call::<&core::ffi::CStr>(pg_sys::jsonb_out, &[Some(detoasted.into())]) }
            .expect("jsonb_out returns text");
    let text = text.to_str().expect("jsonb text is UTF-8");
    if let Err(e) = validate::json_text(argument, text, max_depth) {
        raise_invalid(e);
    }
    serde_json::from_str(text).unwrap_or_else(|e| raise_invalid(format!("invalid {argument}: {e}")))
}

macro_rules! checked_jsonb {
    ($(#[$doc:meta])* $name:ident, $argument:literal, $max_depth:expr) => {
        $(#[$doc])*
        pub struct $name(pub serde_json::Value);

        impl FromDatum for $name {
            unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
                (!is_null).then(|| $name(unsafe { parse_jsonb(datum, $argument, $max_depth) }))
            }
        }

        unsafe impl<'fcx> ArgAbi<'fcx> for $name {
            unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                unsafe { arg.unbox_arg_using_from_datum() }
                    .unwrap_or_else(|| panic!("argument {index} must not be null"))
            }

            unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
                unsafe { arg.unbox_arg_using_from_datum() }.into()
            }
        }

        unsafe impl SqlTranslatable for $name {
            const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!($name);
            const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
            const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
            const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
        }
    };
}

checked_jsonb!(
    /// A filter document (`filters` argument).
    FiltersArg,
    "filters",
    usage_analytics_core::filters::MAX_FILTERS_DEPTH
);
checked_jsonb!(
    /// A usage document (`usage` argument), in any provider's shape.
    UsageArg,
    "usage",
    validate::MAX_METADATA_DEPTH
);
checked_jsonb!(
    /// A `request_metadata` argument.
    MetadataArg,
    "request_metadata",
    validate::MAX_METADATA_DEPTH
);
