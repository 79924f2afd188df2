//! Recording usage: the pricing trigger every insert path goes through, and
//! `track_detailed_usage`, the checked entry point for applications.

use crate::errors::raise_invalid;
use crate::json_args::{MetadataArg, UsageArg};
use crate::kept_plans::{self, KeptPlan};
use crate::numerics::numeric_datum;
use crate::price_cache::price_book;
use crate::text_datums::borrowed_text;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{JsonB, PgTupleDesc, Uuid};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;
use std::str::FromStr;
use usage_analytics_core::pricing::ServiceTier;
use usage_analytics_core::usage::normalize_usage;
use usage_analytics_core::usage::TokenUsage;
use usage_analytics_core::validate::{
    self, InvalidArgument, MAX_AGENT_NAME_CHARS, MAX_ERROR_MESSAGE_CHARS, MAX_IDENTIFIER_CHARS,
};

fn checked<T>(result: Result<T, InvalidArgument>) -> T {
    result.unwrap_or_else(|e| raise_invalid(format!("track_detailed_usage: {e}")))
}

/// Column positions of the usage table in one relation's tuple descriptor
/// (each partition has its own descriptor); the pricing trigger and the
/// counting trigger (src/counting.rs) read rows through it.
#[derive(Default)]
pub(crate) struct UsageColumns {
    pub user_id: Option<usize>,
    pub agent_id: Option<usize>,
    pub agent_name: Option<usize>,
    pub error_message: Option<usize>,
    pub provider: Option<usize>,
    pub framework: Option<usize>,
    pub message_type: Option<usize>,
    pub model: Option<usize>,
    pub requested_model: Option<usize>,
    pub cost_usd: Option<usize>,
    pub input_tokens: Option<usize>,
    pub output_tokens: Option<usize>,
    pub cache_read_tokens: Option<usize>,
    pub cache_write_tokens: Option<usize>,
    pub cache_write_1h_tokens: Option<usize>,
    pub reasoning_tokens: Option<usize>,
    pub service_tier: Option<usize>,
    pub cost_source: Option<usize>,
    pub cache_savings_usd: Option<usize>,
    pub timestamp: Option<usize>,
    pub success: Option<usize>,
    pub response_time_ms: Option<usize>,
}

impl UsageColumns {
    pub fn of(tupdesc: &PgTupleDesc) -> UsageColumns {
        let mut columns = UsageColumns::default();
        for (i, att) in tupdesc.iter().enumerate().filter(|(_, a)| !a.is_dropped()) {
            let slot = match att.name() {
                "user_id" => &mut columns.user_id,
                "agent_id" => &mut columns.agent_id,
                "agent_name" => &mut columns.agent_name,
                "error_message" => &mut columns.error_message,
                "provider" => &mut columns.provider,
                "framework" => &mut columns.framework,
                "message_type" => &mut columns.message_type,
                "model" => &mut columns.model,
                "requested_model" => &mut columns.requested_model,
                "cost_usd" => &mut columns.cost_usd,
                "input_tokens" => &mut columns.input_tokens,
                "output_tokens" => &mut columns.output_tokens,
                "cache_read_tokens" => &mut columns.cache_read_tokens,
                "cache_write_tokens" => &mut columns.cache_write_tokens,
                "cache_write_1h_tokens" => &mut columns.cache_write_1h_tokens,
                "reasoning_tokens" => &mut columns.reasoning_tokens,
                "service_tier" => &mut columns.service_tier,
                "cost_source" => &mut columns.cost_source,
                "cache_savings_usd" => &mut columns.cache_savings_usd,
                "timestamp" => &mut columns.timestamp,
                "success" => &mut columns.success,
                "response_time_ms" => &mut columns.response_time_ms,
                _ => continue,
            };
            *slot = Some(i);
        }
        columns
    }
}

thread_local! {
    /// Each relation's column positions, looked up by name once per backend
    /// (a bulk load would otherwise match every column name for every row);
    /// dropped by the relcache callback (`relation_changed`) when the
    /// relation's descriptor may have changed.
    static COLUMNS: RefCell<Vec<(pg_sys::Oid, Rc<UsageColumns>)>> = const { RefCell::new(Vec::new()) };
}

/// The column positions of `relation`'s descriptor.
fn columns_of(relation: pg_sys::Relation) -> Rc<UsageColumns> {
    let relid = unsafe { (*relation).rd_id };
    if let Some(columns) = COLUMNS.with(|c| {
        c.borrow()
            .iter()
            .find(|(r, _)| *r == relid)
            .map(|(_, c)| c.clone())
    }) {
        return columns;
    }
    let columns = Rc::new(UsageColumns::of(&unsafe {
        PgTupleDesc::from_pg_unchecked((*relation).rd_att)
    }));
    COLUMNS.with(|c| c.borrow_mut().push((relid, columns.clone())));
    columns
}

/// Forgets the column positions of `relid` (of every relation for
/// InvalidOid, a relcache reset); called by the backend's relcache callback
/// (src/invalidation.rs).
pub(crate) fn relation_changed(relid: pg_sys::Oid) {
    COLUMNS.with(|c| {
        c.borrow_mut()
            .retain(|(r, _)| relid != pg_sys::InvalidOid && *r != relid)
    });
}

/// A deformed row: read values, replace some, form the row once. Texts
/// read from it live as long as the trigger's tuple (`'a`), so they stay
/// valid when their column is replaced.
struct Row<'a> {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    tuple: PhantomData<&'a ()>,
}

thread_local! {
    /// The pricing trigger's values and nulls, reused from row to row (a
    /// bulk load would otherwise allocate both for every row).
    static ROW_BUFFERS: Cell<(Vec<pg_sys::Datum>, Vec<bool>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

impl<'a> Row<'a> {
    /// Deforms `tuple`, into the buffers of the previous row.
    unsafe fn deform(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, natts: usize) -> Row<'a> {
        let (mut values, mut nulls) = ROW_BUFFERS.take();
        values.clear();
        values.resize(natts, pg_sys::Datum::from(0));
        nulls.clear();
        nulls.resize(natts, true);
        pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        Row {
            values,
            nulls,
            tuple: PhantomData,
        }
    }

    /// The values of a virtual slot (all of them are there), into the
    /// buffers of the previous row.
    unsafe fn from_slot(slot: *mut pg_sys::TupleTableSlot, natts: usize) -> Row<'a> {
        let (mut values, mut nulls) = ROW_BUFFERS.take();
        values.clear();
        values.extend_from_slice(std::slice::from_raw_parts((*slot).tts_values, natts));
        nulls.clear();
        nulls.extend_from_slice(std::slice::from_raw_parts((*slot).tts_isnull, natts));
        Row {
            values,
            nulls,
            tuple: PhantomData,
        }
    }

    /// Writes the values back into the virtual slot they came from; the
    /// buffers go back for the next row.
    unsafe fn store(mut self, slot: *mut pg_sys::TupleTableSlot) {
        let natts = self.values.len();
        std::slice::from_raw_parts_mut((*slot).tts_values, natts).copy_from_slice(&self.values);
        std::slice::from_raw_parts_mut((*slot).tts_isnull, natts).copy_from_slice(&self.nulls);
        ROW_BUFFERS.set((std::mem::take(&mut self.values), std::mem::take(&mut self.nulls)));
    }

    /// The row formed anew (never the given tuple: `handed_back` tells why);
    /// its buffers go back for the next row.
    unsafe fn form(mut self, tupdesc: pg_sys::TupleDesc) -> pg_sys::HeapTuple {
        let tuple = pg_sys::heap_form_tuple(tupdesc, self.values.as_mut_ptr(), self.nulls.as_mut_ptr());
        ROW_BUFFERS.set((std::mem::take(&mut self.values), std::mem::take(&mut self.nulls)));
        tuple
    }

    fn get<T: FromDatum>(&self, column: Option<usize>) -> Option<T> {
        let i = column?;
        unsafe { T::from_datum(self.values[i], self.nulls[i]) }
    }

    /// A text column, borrowed (no copy): from the trigger's tuple, or from
    /// a replacement allocated in the trigger's memory context.
    fn text(&self, column: Option<usize>) -> Option<&'a str> {
        let i = column?;
        (!self.nulls[i]).then(|| unsafe { borrowed_text(self.values[i]) })
    }

    fn set<T: IntoDatum>(&mut self, column: Option<usize>, value: Option<T>) {
        if let Some(i) = column {
            let datum = value.and_then(IntoDatum::into_datum);
            self.nulls[i] = datum.is_none();
            self.values[i] = datum.unwrap_or(pg_sys::Datum::from(0));
        }
    }

    /// Sets column `to` to the value column `from` has now (no copy: the
    /// row is formed before anything it points to is freed).
    fn copy(&mut self, from: Option<usize>, to: Option<usize>) {
        if let (Some(from), Some(to)) = (from, to) {
            self.values[to] = self.values[from];
            self.nulls[to] = self.nulls[from];
        }
    }

    /// Lower-cases and trims an enumeration column, if it needs it.
    fn normalise(&mut self, column: Option<usize>) {
        let Some(value) = self.text(column) else {
            return;
        };
        if needs_normalising(value) {
            let normalised = value.trim().to_lowercase();
            self.set(column, Some(normalised));
        }
    }
}

/// Whether trimming or lower-casing changes `value`: exactly when
/// str::trim or str::to_lowercase would change something (a character that
/// does not lower-case to itself, titlecase letters included). Plain ASCII,
/// the usual case, is told apart without decoding characters.
fn needs_normalising(value: &str) -> bool {
    if value.trim().len() != value.len() {
        return true;
    }
    if value.is_ascii() {
        return value.bytes().any(|b| b.is_ascii_uppercase());
    }
    value.chars().any(|c| {
        let mut lower = c.to_lowercase();
        lower.next() != Some(c) || lower.next().is_some()
    })
}

/// Whether this session is loading a dump (pg_dump output and pg_restore
/// both run with `row_security = off`); see `_restoring()` in counters.sql.
/// Read from the setting's variable: looking it up by name cost a search of
/// every setting, per row.
pub fn restoring() -> bool {
    !unsafe { pg_sys::row_security }
}

/// The documented limits of the text columns, checked on every insert path
/// (track_detailed_usage checks them again, with its argument names):
/// (column, longest, whether tab and line breaks are allowed).
const TEXT_LIMITS: &[(&str, usize, bool)] = &[
    ("agent_id", MAX_IDENTIFIER_CHARS, false),
    ("framework", MAX_IDENTIFIER_CHARS, false),
    ("provider", MAX_IDENTIFIER_CHARS, false),
    ("message_type", MAX_IDENTIFIER_CHARS, false),
    ("model", MAX_IDENTIFIER_CHARS, false),
    ("requested_model", MAX_IDENTIFIER_CHARS, false),
    ("agent_name", MAX_AGENT_NAME_CHARS, true),
    ("error_message", MAX_ERROR_MESSAGE_CHARS, true),
];

impl UsageColumns {
    fn text_column(&self, name: &str) -> Option<usize> {
        match name {
            "agent_id" => self.agent_id,
            "framework" => self.framework,
            "provider" => self.provider,
            "message_type" => self.message_type,
            "model" => self.model,
            "requested_model" => self.requested_model,
            "agent_name" => self.agent_name,
            "error_message" => self.error_message,
            _ => None,
        }
    }
}

fn check_row(row: &Row, columns: &UsageColumns) {
    for &(name, max_chars, free_text) in TEXT_LIMITS {
        let value = row.text(columns.text_column(name));
        let checked = if free_text {
            validate::usage_row_free_text(name, value, max_chars)
        } else {
            validate::usage_row_text(name, value, max_chars)
        };
        if let Err(e) = checked {
            raise_invalid(format!("agent_usage_detailed: {e}"));
        }
    }
    if let Some(at) = row.get::<TimestampWithTimeZone>(columns.timestamp) {
        if at.is_infinity() || at.is_neg_infinity() {
            raise_invalid(format!(
                "agent_usage_detailed: invalid timestamp: must be finite, got {at}"
            ));
        }
    }
}

/// BEFORE INSERT row trigger on `agent_usage_detailed`: checks the documented
/// limits, normalises the enumerations, resolves the canonical model from
/// what the caller sent (`requested_model`, else `model`) and, unless the
/// caller supplied `cost_usd`, prices the row at its own timestamp. `INSERT`,
/// `COPY` and `track_detailed_usage` all pass through here, so they check and
/// price identically. Rows loaded by a restore are left exactly as dumped.
/// This runs for every row of a bulk load: the row is changed where the
/// executor holds it when it may be (`writable_in_place`), else deformed
/// once and formed once.
#[pg_trigger]
fn price_usage_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let data = trigger.trigger_data();
    // What it does to the row (`writable_in_place`, `handed_back`) holds
    // for a row about to be inserted only.
    const EVENT: u32 =
        pg_sys::TRIGGER_EVENT_OPMASK | pg_sys::TRIGGER_EVENT_ROW | pg_sys::TRIGGER_EVENT_TIMINGMASK;
    if data.tg_event & EVENT
        != pg_sys::TRIGGER_EVENT_INSERT | pg_sys::TRIGGER_EVENT_ROW | pg_sys::TRIGGER_EVENT_BEFORE
    {
        error!("price_usage_row must fire BEFORE INSERT … FOR EACH ROW");
    }
    let raw_tupdesc = unsafe { (*data.tg_relation).rd_att };
    let tupdesc = unsafe { PgTupleDesc::from_pg_unchecked(raw_tupdesc) };
    let slot = data.tg_trigslot;
    let in_place = unsafe { writable_in_place(slot, data.tg_trigger, data.tg_relation, tupdesc.len()) };
    if restoring() {
        // Left as dumped: the slot as it is, or a copy of the given tuple
        // (`handed_back` tells why not the tuple itself).
        let tuple = unsafe {
            if in_place {
                handed_back(data.tg_trigtuple)
            } else {
                pg_sys::heap_copytuple(data.tg_trigtuple)
            }
        };
        return Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(tupdesc, tuple) }));
    }
    let columns = columns_of(data.tg_relation);
    let mut row: Row<'a> = if in_place {
        unsafe { Row::from_slot(slot, tupdesc.len()) }
    } else {
        unsafe { Row::deform(data.tg_trigtuple, raw_tupdesc, tupdesc.len()) }
    };

    check_row(&row, &columns);
    row.normalise(columns.provider);
    row.normalise(columns.framework);
    row.normalise(columns.message_type);
    let provider = row.text(columns.provider);
    // What the caller sent decides: a re-inserted row (INSERT … SELECT, ETL)
    // whose model was unknown keeps model NULL in `model` but its name in
    // `requested_model`, and must not be priced as the provider default.
    let sent = row.text(columns.requested_model).is_some();
    let model_column = if sent {
        columns.requested_model
    } else {
        columns.model
    };
    let model = row.text(model_column);
    let book = price_book();
    let canonical = book.resolve(provider, model);
    if row.get::<pg_sys::Datum>(columns.cost_usd).is_some() {
        // A cost supplied with the row (a provider's own figure) is kept.
        row.set(columns.cost_source, Some("caller"));
        row.set::<AnyNumeric>(columns.cache_savings_usd, None);
    } else {
        let class = |column: Option<usize>| -> i64 { row.get::<i32>(column).unwrap_or(0).into() };
        let usage = TokenUsage {
            input_tokens: class(columns.input_tokens),
            output_tokens: class(columns.output_tokens),
            cache_read_tokens: class(columns.cache_read_tokens),
            cache_write_tokens: class(columns.cache_write_tokens),
            cache_write_1h_tokens: class(columns.cache_write_1h_tokens),
            reasoning_tokens: class(columns.reasoning_tokens),
        };
        if let Err(e) = usage.validate() {
            raise_invalid(format!("agent_usage_detailed: {e}"));
        }
        let tier = ServiceTier::from_str(row.text(columns.service_tier).unwrap_or("standard"))
            .unwrap_or_else(|e| raise_invalid(format!("agent_usage_detailed: invalid service_tier: {e}")));
        let at = row
            .get::<TimestampWithTimeZone>(columns.timestamp)
            .map(pg_sys::TimestampTz::from)
            .unwrap_or(i64::MAX);
        let priced = match canonical {
            // The model resolved above: priced with one price lookup.
            Some(canonical) => book
                .cost_and_savings(provider, canonical, &usage, at, tier)
                .map_err(|e| e.to_string()),
            None => Ok(None),
        };
        match priced {
            Ok(Some((cost, savings))) => {
                row.set(columns.cost_usd, Some(numeric_datum(cost)));
                row.set(columns.cost_source, Some("catalog"));
                row.set(columns.cache_savings_usd, savings.map(numeric_datum));
            }
            Ok(None) => {
                row.set::<&str>(columns.cost_source, None);
                row.set::<AnyNumeric>(columns.cache_savings_usd, None);
            }
            Err(e) => raise_invalid(format!("agent_usage_detailed: {e}")),
        }
    }
    if !sent && model.is_some_and(|m| !m.trim().is_empty()) {
        // The name as sent, before `model` becomes the canonical one.
        row.copy(columns.model, columns.requested_model);
    }
    if canonical != row.text(columns.model) {
        row.set(columns.model, canonical);
    }
    let tuple = if in_place {
        unsafe {
            row.store(slot);
            handed_back(data.tg_trigtuple)
        }
    } else {
        unsafe { row.form(raw_tupdesc) }
    };
    Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(tupdesc, tuple) }))
}

/// Whether the pricing trigger may change the row in the executor's slot
/// and hand back the tuple it was given, which PostgreSQL then does not
/// store into the slot again: a third of what a bulk load's row costs in
/// this trigger. Only a virtual slot (what COPY and INSERT through the
/// partitioned table hand over) holds the row as values that can be
/// replaced, and only for it is the tuple handed to the trigger a copy that
/// the trigger may free (`handed_back`). Only the last BEFORE INSERT row
/// trigger may do it: a later one would be handed that freed tuple. The
/// values written there are allocated in the per-row memory the executor
/// keeps until the row is stored.
unsafe fn writable_in_place(
    slot: *mut pg_sys::TupleTableSlot,
    ours: *const pg_sys::Trigger,
    relation: pg_sys::Relation,
    natts: usize,
) -> bool {
    const ROW: i16 = 1 << 0;
    const BEFORE: i16 = 1 << 1;
    const INSERT: i16 = 1 << 2;
    if slot.is_null()
        || !std::ptr::eq((*slot).tts_ops, &raw const pg_sys::TTSOpsVirtual)
        || usize::try_from((*slot).tts_nvalid).ok() != Some(natts)
    {
        return false;
    }
    let trigdesc = (*relation).trigdesc;
    if trigdesc.is_null() {
        return false;
    }
    let triggers = std::slice::from_raw_parts((*trigdesc).triggers, (*trigdesc).numtriggers as usize);
    match triggers.iter().position(|t| t.tgoid == (*ours).tgoid) {
        Some(at) => !triggers[at + 1..]
            .iter()
            .any(|t| t.tgtype & (ROW | BEFORE | INSERT) == ROW | BEFORE | INSERT),
        None => false,
    }
}

/// The tuple PostgreSQL handed the trigger, handed back to say "store the
/// row as the slot holds it". PostgreSQL formed that tuple for the trigger
/// from the virtual slot and frees it only when the trigger returns another
/// one: kept, a `COPY` would hold one row per row until the statement ended.
/// So it is freed here. PostgreSQL then only compares the pointer with its
/// own, and hands it to no later trigger (`writable_in_place`: ours is the
/// last BEFORE INSERT row trigger).
unsafe fn handed_back(given: pg_sys::HeapTuple) -> pg_sys::HeapTuple {
    pg_sys::heap_freetuple(given);
    given
}

thread_local! {
    /// The prepared INSERT, for the table with the token-class columns and
    /// for the 0.1.0 table without them.
    static INSERT_PLAN: KeptPlan = const { RefCell::new(None) };
    static INSERT_PLAN_0_1: KeptPlan = const { RefCell::new(None) };
}

/// Whether the usage table has the 0.2 token-class columns. After a package
/// upgrade replaced the library but before ALTER EXTENSION … UPDATE, a
/// database still has the 0.1.0 table: recording goes on without the classes
/// (catalog-cache lookups, so this costs no query).
pub fn table_has_token_classes() -> bool {
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"usage_analytics".as_ptr(), true);
        let relid = pg_sys::get_relname_relid(c"agent_usage_detailed".as_ptr(), namespace);
        relid != pg_sys::InvalidOid
            && pg_sys::get_attnum(relid, c"service_tier".as_ptr()) != pg_sys::InvalidAttrNumber as i16
    }
}

const INSERT_SQL: &str = "INSERT INTO usage_analytics.agent_usage_detailed \
    (id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, \
     output_tokens, response_time_ms, success, error_message, request_metadata, model, \
     cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, service_tier) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

/// The same for a 0.1.0 table (see `table_has_token_classes`).
const INSERT_SQL_0_1: &str = "INSERT INTO usage_analytics.agent_usage_detailed \
    (id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, \
     output_tokens, response_time_ms, success, error_message, request_metadata, model) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// The token classes of a call: from `usage` (any provider's shape) when
/// given, in which case input_tokens/output_tokens may be NULL and, if
/// given, must agree; otherwise from input_tokens/output_tokens alone.
fn token_classes(
    provider: Option<&str>,
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    usage: Option<&serde_json::Value>,
) -> TokenUsage {
    let Some(usage) = usage else {
        let (input, output) = checked(validate::tokens(input_tokens, output_tokens));
        return TokenUsage::input_output(input.into(), output.into());
    };
    let classes = normalize_usage(provider, usage)
        .unwrap_or_else(|e| raise_invalid(format!("track_detailed_usage: invalid usage: {e}")));
    for (argument, given, normalized) in [
        ("input_tokens", input_tokens, classes.input_tokens),
        ("output_tokens", output_tokens, classes.output_tokens),
    ] {
        if let Some(given) = given {
            if i64::from(given) != normalized {
                raise_invalid(format!(
                    "track_detailed_usage: invalid {argument}: {given} disagrees with usage, which gives {normalized}"
                ));
            }
        }
    }
    checked(validate::tokens(
        i32::try_from(classes.input_tokens).ok(),
        i32::try_from(classes.output_tokens).ok(),
    ));
    classes
}

/// Records one AI request with its exact cost and returns its id. Arguments
/// are in the order of the original product's `trackDetailedUsage`, then the
/// model and the provider's usage document (any shape `normalize_usage`
/// reads; its token classes are priced). `request_metadata.service_tier`
/// sets the service tier. Bad input raises an error naming the argument,
/// and nothing is written.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe, name = "track_detailed_usage")]
fn track_detailed_usage_with_usage(
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
    request_metadata: default!(Option<MetadataArg>, "'{}'"),
    model: default!(Option<&str>, "NULL"),
    usage: default!(Option<UsageArg>, "NULL"),
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
    let classes = token_classes(
        Some(provider.as_str()),
        input_tokens,
        output_tokens,
        usage.as_ref().map(|u| &u.0),
    );
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
    let tier = metadata
        .get("service_tier")
        .map(|t| match t.as_str().map(ServiceTier::from_str) {
            Some(Ok(tier)) => tier,
            Some(Err(e)) => raise_invalid(format!(
                "track_detailed_usage: invalid request_metadata.service_tier: {e}"
            )),
            None => {
                raise_invalid("track_detailed_usage: invalid request_metadata.service_tier: must be a string")
            }
        })
        .unwrap_or_default();
    let model = checked(validate::optional_identifier("model", model));

    // The id is made here, not by RETURNING: a writer may record usage for a
    // user whose rows it cannot read (RETURNING would apply SELECT policies).
    let id = Uuid::from_bytes(*uuid::Uuid::new_v4().as_bytes());
    let class = |v: i64| i32::try_from(v).expect("normalize_usage bounds every class");
    let args: [DatumWithOid; 19] = [
        id.into(),
        user_id.into(),
        agent_id.into(),
        agent_name.into(),
        framework.into(),
        provider.into(),
        message_type.into(),
        class(classes.input_tokens).into(),
        class(classes.output_tokens).into(),
        response_time_ms.into(),
        success.into(),
        error_message.into(),
        JsonB(metadata).into(),
        model.into(),
        class(classes.cache_read_tokens).into(),
        class(classes.cache_write_tokens).into(),
        class(classes.cache_write_1h_tokens).into(),
        class(classes.reasoning_tokens).into(),
        tier.as_str().into(),
    ];
    let (plan, sql, args) = if table_has_token_classes() {
        (&INSERT_PLAN, INSERT_SQL, &args[..])
    } else {
        (&INSERT_PLAN_0_1, INSERT_SQL_0_1, &args[..14])
    };
    kept_plans::run(plan, sql, args, |_| Ok(())).unwrap_or_else(|e| error!("track_detailed_usage: {e}"));
    id
}

/// The 0.1.0 form of `track_detailed_usage` (13 arguments), for a database
/// whose library a package upgrade replaced before ALTER EXTENSION … UPDATE:
/// its SQL definition still names this symbol. Not part of 0.2's SQL.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe, sql = false)]
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
    error_message: Option<&str>,
    request_metadata: Option<MetadataArg>,
    model: Option<&str>,
) -> Uuid {
    track_detailed_usage_with_usage(
        user_id,
        agent_id,
        agent_name,
        framework,
        provider,
        message_type,
        input_tokens,
        output_tokens,
        response_time_ms,
        success,
        error_message,
        request_metadata,
        model,
        None,
    )
}

extension_sql!(
    "REVOKE ALL ON FUNCTION usage_analytics.track_detailed_usage FROM PUBLIC;\n\
     GRANT EXECUTE ON FUNCTION usage_analytics.track_detailed_usage TO usage_analytics_writer, usage_analytics_admin;\n\
     REVOKE ALL ON FUNCTION usage_analytics.price_usage_row FROM PUBLIC;",
    name = "usage_grants",
    requires = ["roles", track_detailed_usage_with_usage, price_usage_row]
);
