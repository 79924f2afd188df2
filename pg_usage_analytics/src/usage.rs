//! Recording usage: the pricing trigger every insert path goes through, and
//! `track_detailed_usage`, the checked entry point for applications.

use crate::price_cache::{price_book, to_numeric};
use crate::validate::{self, InvalidArgument, MAX_AGENT_NAME_CHARS, MAX_ERROR_MESSAGE_CHARS};
use pgrx::datum::{DatumWithOid, TryFromDatumError};
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{JsonB, PgSqlErrorCode, Uuid};
use std::cell::RefCell;

pub fn raise_invalid(message: impl std::fmt::Display) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message.to_string()
    );
}

fn checked<T>(result: Result<T, InvalidArgument>) -> T {
    result.unwrap_or_else(|e| raise_invalid(format!("track_detailed_usage: {e}")))
}

fn lower_trim(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_lowercase())
}

/// BEFORE INSERT row trigger on `agent_usage_detailed`: normalises the
/// enumerations, resolves the canonical model and, unless the caller supplied
/// `cost_usd`, prices the row at its own timestamp. `INSERT`, `COPY` and
/// `track_detailed_usage` all pass through here, so they price identically.
#[pg_trigger]
fn price_usage_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, TryFromDatumError> {
    let Some(new) = trigger.new() else {
        return Ok(None);
    };
    let mut row = new.into_owned();
    let provider = lower_trim(row.get_by_name::<String>("provider")?);
    let model: Option<String> = row.get_by_name("model")?;
    let timestamp: Option<TimestampWithTimeZone> = row.get_by_name("timestamp")?;
    let cost: Option<AnyNumeric> = row.get_by_name("cost_usd")?;

    let book = price_book();
    let canonical = book.resolve(provider.as_deref(), model.as_deref());
    if cost.is_none() {
        let input: i64 = row.get_by_name::<i32>("input_tokens")?.unwrap_or(0).into();
        let output: i64 = row.get_by_name::<i32>("output_tokens")?.unwrap_or(0).into();
        let at = timestamp.map(pg_sys::TimestampTz::from).unwrap_or(i64::MAX);
        match book.cost(provider.as_deref(), model.as_deref(), input, output, at) {
            Ok(Some(cost)) => row.set_by_name("cost_usd", to_numeric(cost))?,
            Ok(None) => {}
            Err(e) => raise_invalid(format!("agent_usage_detailed: {e}")),
        }
    }
    if row.get_by_name::<String>("requested_model")?.is_none() {
        row.set_by_name("requested_model", model.filter(|m| !m.trim().is_empty()))?;
    }
    row.set_by_name("model", canonical)?;
    row.set_by_name("provider", provider)?;
    for column in ["framework", "message_type"] {
        let value = lower_trim(row.get_by_name::<String>(column)?);
        row.set_by_name(column, value)?;
    }
    Ok(Some(row))
}

thread_local! {
    static INSERT_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

const INSERT_SQL: &str = "INSERT INTO usage_analytics.agent_usage_detailed \
    (id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, \
     output_tokens, response_time_ms, success, error_message, request_metadata, model) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// Records one AI request with its exact cost and returns its id. Arguments
/// are in the seed's `trackDetailedUsage` order. Bad input raises an error
/// naming the argument, and nothing is written.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn track_detailed_usage(
    user_id: Option<Uuid>,
    agent_id: Option<&str>,
    agent_name: Option<&str>,
    framework: Option<&str>,
    provider: Option<&str>,
    message_type: Option<&str>,
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    response_time_ms: Option<i32>,
    success: Option<bool>,
    error_message: default!(Option<&str>, "NULL"),
    request_metadata: default!(Option<JsonB>, "'{}'"),
    model: default!(Option<&str>, "NULL"),
) -> Uuid {
    let Some(user_id) = user_id else {
        raise_invalid("track_detailed_usage: invalid user_id: must not be NULL");
    };
    let agent_id = checked(validate::identifier("agent_id", agent_id, false));
    let agent_name = checked(validate::optional_text(
        "agent_name",
        agent_name,
        MAX_AGENT_NAME_CHARS,
    ));
    let framework = checked(validate::identifier("framework", framework, true));
    let provider = checked(validate::identifier("provider", provider, true));
    let message_type = checked(validate::identifier("message_type", message_type, true));
    let (input_tokens, output_tokens) = checked(validate::tokens(input_tokens, output_tokens));
    let response_time_ms = checked(validate::non_negative("response_time_ms", response_time_ms));
    let Some(success) = success else {
        raise_invalid("track_detailed_usage: invalid success: must not be NULL");
    };
    let error_message = checked(validate::optional_text(
        "error_message",
        error_message,
        MAX_ERROR_MESSAGE_CHARS,
    ));
    let metadata = request_metadata
        .map(|j| j.0)
        .unwrap_or_else(|| serde_json::json!({}));
    checked(validate::metadata(&metadata));
    let model = checked(validate::optional_text(
        "model",
        model,
        validate::MAX_IDENTIFIER_CHARS,
    ));

    // The id is made here, not by RETURNING: a writer may record usage for a
    // user whose rows it cannot read (RETURNING would apply SELECT policies).
    let id = Uuid::from_bytes(*uuid::Uuid::new_v4().as_bytes());
    Spi::connect_mut(|client| {
        let args: [DatumWithOid; 14] = [
            id.into(),
            user_id.into(),
            agent_id.into(),
            agent_name.into(),
            framework.into(),
            provider.into(),
            message_type.into(),
            input_tokens.into(),
            output_tokens.into(),
            response_time_ms.into(),
            success.into(),
            error_message.into(),
            JsonB(metadata).into(),
            model.into(),
        ];
        INSERT_PLAN.with(|cell| {
            let mut plan = cell.borrow_mut();
            if plan.is_none() {
                let oids: Vec<_> = args.iter().map(|a| pgrx::pg_sys::PgOid::from(a.oid())).collect();
                let prepared = client.prepare_mut(INSERT_SQL, &oids)?.keep();
                *plan = Some(prepared);
            }
            client
                .update(plan.as_ref().expect("prepared above"), None, &args)
                .map(|_| ())
        })
    })
    .unwrap_or_else(|e| error!("track_detailed_usage: {e}"));
    id
}
