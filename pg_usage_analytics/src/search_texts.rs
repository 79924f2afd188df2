//! The searched texts this backend knows `search_texts` holds (see
//! sql/schema.sql): the counting trigger (src/counting.rs) adds a
//! statement's texts through `note` unless `is_known` says they are there
//! already, so a writer that repeats its texts adds nothing.

use crate::abort_guard;
use crate::kept_plans::{self, KeptPlan};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashSet};

thread_local! {
    /// Texts this backend has seen in `search_texts` or added there
    /// (forgotten if that transaction aborts, or when
    /// forget_unused_search_texts drops texts: see `relation_changed`); at
    /// most KNOWN_TEXTS_LIMIT bytes of them, then it starts over.
    static KNOWN_TEXTS: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    static SEARCH_TEXTS_OID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    static KNOWN_TEXTS_BYTES: Cell<usize> = const { Cell::new(0) };
    static KNOWN_TEXTS_GUARD: Cell<u32> = const { Cell::new(0) };
    static ADD_TEXTS: KeptPlan = const { RefCell::new(None) };
}

const KNOWN_TEXTS_LIMIT: usize = 4 << 20;
/// See _add_search_texts in sql/schema.sql.
const ADD_TEXTS_SQL: &str = "SELECT usage_analytics._add_search_texts($1, $2)";

fn forget_known_texts() {
    // Never borrowed across a call into PostgreSQL, so free here.
    KNOWN_TEXTS.with(|k| k.borrow_mut().clear());
    KNOWN_TEXTS_BYTES.with(|b| b.set(0));
}

/// Whether `search_texts` is known to hold `text`.
pub(crate) fn is_known(text: &str) -> bool {
    KNOWN_TEXTS.with(|k| k.borrow().contains(text))
}

/// Forgets the known texts when `search_texts` lost rows (its
/// `_announce_change` trigger; InvalidOid: the whole relcache was reset);
/// called by the backend's relcache callback (src/invalidation.rs).
/// forget_unused_search_texts holds writers off while it deletes, and the
/// invalidation reaches a writer when its next statement locks the usage
/// table, before the counting trigger runs.
pub(crate) fn relation_changed(relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || relid == SEARCH_TEXTS_OID.with(Cell::get) {
        forget_known_texts();
        // Looked up again on next use: the table may have been recreated.
        SEARCH_TEXTS_OID.with(|o| o.set(pg_sys::InvalidOid));
    }
}

/// Adds the texts `search_texts` may lack, and remembers them.
pub(crate) fn note(texts: BTreeSet<String>) {
    abort_guard::forget_on_abort(&KNOWN_TEXTS_GUARD, forget_known_texts);
    if SEARCH_TEXTS_OID.with(Cell::get) == pg_sys::InvalidOid {
        let oid = Spi::get_one::<pg_sys::Oid>("SELECT 'usage_analytics.search_texts'::regclass::oid")
            .unwrap_or_else(|e| error!("usage bookkeeping: {e}"))
            .unwrap_or(pg_sys::InvalidOid);
        SEARCH_TEXTS_OID.with(|o| o.set(oid));
    }
    let texts: Vec<String> = texts.into_iter().collect();
    let transaction_snapshot = unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32;
    kept_plans::run(
        &ADD_TEXTS,
        ADD_TEXTS_SQL,
        &[texts.clone().into(), transaction_snapshot.into()],
        |_| Ok(()),
    )
    .unwrap_or_else(|e| error!("usage bookkeeping: {e}"));
    KNOWN_TEXTS.with(|k| {
        let mut known = k.borrow_mut();
        let added: usize = texts.iter().map(String::len).sum();
        if KNOWN_TEXTS_BYTES.with(Cell::get) + added > KNOWN_TEXTS_LIMIT {
            known.clear();
            KNOWN_TEXTS_BYTES.with(|b| b.set(0));
        }
        KNOWN_TEXTS_BYTES.with(|b| b.set(b.get() + added));
        known.extend(texts);
    });
}
