//! The SQL side of the filter parser: `check_filters` and the `_filter_*`
//! accessors, all over `usage_analytics_core::filters::Filters::parse`.
//!
//! The accessors are IMMUTABLE: with a constant filter document the planner
//! folds them to constants, so `sql/records.sql` can write one static
//! predicate (`_usage_matches`) that still prunes partitions and uses the
//! indexes for whichever keys are present.

use crate::errors::raise_invalid;
use crate::json_args::FiltersArg;
use pgrx::prelude::*;
use pgrx::Uuid;
use usage_analytics_core::filters::Filters;

pub fn parse(filters: Option<&FiltersArg>) -> Filters {
    Filters::parse(filters.map(|j| &j.0)).unwrap_or_else(|e| raise_invalid(e))
}

fn to_timestamp(micros: Option<i64>) -> Option<TimestampWithTimeZone> {
    micros.and_then(|m| TimestampWithTimeZone::try_from(m).ok())
}

/// Validates a filter document, raising an error that names the bad key.
#[pg_extern(immutable, parallel_safe)]
fn check_filters(filters: Option<FiltersArg>) -> bool {
    parse(filters.as_ref());
    true
}

/// `start_date` (inclusive), `end_date` (exclusive; a plain date means the
/// next midnight UTC) or `after_timestamp` of a filter document.
#[pg_extern(immutable, parallel_safe)]
fn _filter_timestamp(filters: Option<FiltersArg>, field: &str) -> Option<TimestampWithTimeZone> {
    let f = parse(filters.as_ref());
    match field {
        "start_date" => to_timestamp(f.start),
        "end_date" => to_timestamp(f.end),
        "after_timestamp" => to_timestamp(f.after_timestamp),
        other => raise_invalid(format!("_filter_timestamp: no timestamp field {other}")),
    }
}

/// A text filter, normalised as it is stored; `search` is the ILIKE pattern.
#[pg_extern(immutable, parallel_safe)]
fn _filter_text(filters: Option<FiltersArg>, field: &str) -> Option<String> {
    let f = parse(filters.as_ref());
    match field {
        "agent_id" => f.agent_id,
        "framework" => f.framework,
        "provider" => f.provider,
        "model" => f.model,
        "message_type" => f.message_type,
        "search" => f.search,
        other => raise_invalid(format!("_filter_text: no text field {other}")),
    }
}

#[pg_extern(immutable, parallel_safe)]
fn _filter_uuid(filters: Option<FiltersArg>, field: &str) -> Option<Uuid> {
    let f = parse(filters.as_ref());
    let value = match field {
        "user_id" => f.user_id,
        "after_id" => f.after_id,
        other => raise_invalid(format!("_filter_uuid: no uuid field {other}")),
    };
    value.map(|s| {
        Uuid::from_bytes(
            *uuid::Uuid::parse_str(&s)
                .expect("validated by the parser")
                .as_bytes(),
        )
    })
}

#[pg_extern(immutable, parallel_safe)]
fn _filter_success(filters: Option<FiltersArg>) -> Option<bool> {
    parse(filters.as_ref()).success
}

/// Whether whole days may be read from the daily rollups for these filters.
/// Whether only the date range filters anything (system-wide totals serve).
#[pg_extern(immutable, parallel_safe)]
fn _filter_dates_only(filters: Option<FiltersArg>) -> bool {
    parse(filters.as_ref()).dates_only()
}

#[pg_extern(immutable, parallel_safe)]
fn _filter_rollup_compatible(filters: Option<FiltersArg>) -> bool {
    parse(filters.as_ref()).rollup_compatible()
}

// They reveal nothing but the document they are given.
extension_sql!(
    "GRANT EXECUTE ON FUNCTION usage_analytics.check_filters, usage_analytics._filter_timestamp, \
     usage_analytics._filter_text, usage_analytics._filter_uuid, usage_analytics._filter_success, \
     usage_analytics._filter_rollup_compatible, usage_analytics._filter_dates_only TO PUBLIC;",
    name = "filters_grants",
    requires = [
        "roles",
        check_filters,
        _filter_timestamp,
        _filter_text,
        _filter_uuid,
        _filter_success,
        _filter_rollup_compatible,
        _filter_dates_only
    ]
);
