//! Reading a statement's transition table on the usage table row by row,
//! for the counting trigger (src/counting.rs): each row deformed into a slot
//! and read in a memory context reset after it.

use crate::text_datums::borrowed_text;
use crate::usage::UsageColumns;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgTupleDesc};

/// One transition-table row, deformed into its slot.
pub(crate) struct SlotRow {
    slot: *mut pg_sys::TupleTableSlot,
    pub(crate) columns: UsageColumns,
}

impl SlotRow {
    pub(crate) fn datum(&self, column: Option<usize>) -> Option<pg_sys::Datum> {
        let i = column?;
        unsafe {
            if *(*self.slot).tts_isnull.add(i) {
                None
            } else {
                Some(*(*self.slot).tts_values.add(i))
            }
        }
    }

    pub(crate) fn get<T: FromDatum>(&self, column: Option<usize>) -> Option<T> {
        self.datum(column)
            .and_then(|d| unsafe { T::from_datum(d, false) })
    }

    pub(crate) fn int(&self, column: Option<usize>) -> Option<i64> {
        self.datum(column).map(|d| i64::from(d.value() as i32))
    }

    /// A text column, borrowed from the row (or from its detoasted copy in
    /// the row's memory context).
    pub(crate) fn text(&self, column: Option<usize>) -> Option<&str> {
        self.datum(column).map(|d| unsafe { borrowed_text(d) })
    }

    /// `lower(requested_model)` as SQL computes it (the database's collation).
    pub(crate) fn lower_requested_model(&self) -> Option<String> {
        self.datum(self.columns.requested_model).and_then(|d| unsafe {
            let lowered = pg_sys::OidFunctionCall1Coll(
                pg_sys::Oid::from(pg_sys::F_LOWER_TEXT),
                pg_sys::DEFAULT_COLLATION_OID,
                d,
            );
            String::from_datum(lowered, false)
        })
    }
}

/// Hands every row of a transition table to `each`.
pub(crate) unsafe fn read_transition_table(
    table: *mut pg_sys::Tuplestorestate,
    relation: pg_sys::Relation,
    mut each: impl FnMut(&SlotRow),
) {
    let tupdesc = (*relation).rd_att;
    let columns = UsageColumns::of(&PgTupleDesc::from_pg_unchecked(tupdesc));
    // Every column the counting trigger reads (`Statement::add` in
    // src/counting.rs).
    let read = [
        ("provider", columns.provider),
        ("framework", columns.framework),
        ("agent_id", columns.agent_id),
        ("agent_name", columns.agent_name),
        ("error_message", columns.error_message),
        ("model", columns.model),
        ("requested_model", columns.requested_model),
        ("message_type", columns.message_type),
        ("success", columns.success),
        ("input_tokens", columns.input_tokens),
        ("output_tokens", columns.output_tokens),
        ("cost_usd", columns.cost_usd),
        ("response_time_ms", columns.response_time_ms),
        ("cache_read_tokens", columns.cache_read_tokens),
        ("cache_write_tokens", columns.cache_write_tokens),
        ("cache_write_1h_tokens", columns.cache_write_1h_tokens),
        ("reasoning_tokens", columns.reasoning_tokens),
        ("cache_savings_usd", columns.cache_savings_usd),
        ("timestamp", columns.timestamp),
        ("user_id", columns.user_id),
    ];
    if let Some((name, _)) = read.iter().find(|(_, position)| position.is_none()) {
        error!("agent_usage_detailed has no column {name}");
    }
    let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
    // A read pointer of our own, as a scan of the table by name takes one:
    // other triggers of the statement read the same store.
    let reader = pg_sys::tuplestore_alloc_read_pointer(table, pg_sys::EXEC_FLAG_REWIND as i32);
    pg_sys::tuplestore_select_read_pointer(table, reader);
    pg_sys::tuplestore_rescan(table);
    let row = SlotRow { slot, columns };
    // Each row's work runs in a context reset after it: what it keeps
    // (interned texts, numerics) is copied into Rust as it is read, so what
    // PostgreSQL allocates for one row would otherwise pile up over a COPY.
    let mut per_row = PgMemoryContexts::new("usage bookkeeping row");
    while pg_sys::tuplestore_gettupleslot(table, true, false, slot) {
        pg_sys::slot_getallattrs(slot);
        per_row.switch_to(|_| each(&row));
        per_row.reset();
    }
    pg_sys::ExecDropSingleTupleTableSlot(slot);
}
