//! Whether any budget exists, cached per backend: the usage table's budget
//! triggers run only when one does (their WHEN clause), so an installation
//! without budgets pays nothing for them on each insert (a PL/pgSQL
//! statement trigger finding no budget cost a tenth of a single-row INSERT).
//!
//! A statement trigger on `budgets` (`_announce_change`) sends a relcache
//! invalidation for it, broadcast at commit, and our callback drops the
//! cached answer; every call first takes in the invalidations that arrived,
//! so each statement sees the budgets committed before it started, as a
//! query of the table would. As in
//! `price_cache`, the answer is read under the latest snapshot and thrown
//! away when an invalidation arrived meanwhile. One window remains: a commit
//! is visible a moment before its invalidation is sent, and a statement
//! starting in that moment still sees no budget. A budget's first instant was
//! already racy (a statement whose snapshot predates the commit books nothing
//! against it either).

use crate::price_cache::under_latest_snapshot;
use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    static EXIST: Cell<Option<bool>> = const { Cell::new(None) };
    static BUDGETS_OID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// Invalidations of `budgets` processed by this backend.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Drops the cached answer when `budgets` changed (InvalidOid: the whole
/// relcache was reset); called by the backend's relcache callback
/// (src/invalidation.rs).
pub(crate) fn relation_changed(relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || relid == BUDGETS_OID.with(Cell::get) {
        EXIST.with(|e| e.set(None));
        GENERATION.with(|g| g.set(g.get() + 1));
    }
}

/// Whether `usage_analytics.budgets` has a row (the budget triggers' WHEN).
/// Parallel restricted: a parallel worker cannot take the latest snapshot.
#[pg_extern(stable, parallel_restricted)]
fn _budgets_exist() -> bool {
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if let Some(exist) = EXIST.with(Cell::get) {
        return exist;
    }
    let generation = GENERATION.with(Cell::get);
    let loaded = under_latest_snapshot(|| {
        Spi::get_two::<pg_sys::Oid, bool>(
            "SELECT 'usage_analytics.budgets'::regclass::oid, EXISTS (SELECT 1 FROM usage_analytics.budgets)",
        )
    })
    .unwrap_or_else(|e| error!("pg_usage_analytics: cannot read budgets: {e}"));
    let (oid, exist) = (loaded.0.unwrap_or(pg_sys::InvalidOid), loaded.1.unwrap_or(true));
    BUDGETS_OID.with(|b| b.set(oid));
    if GENERATION.with(Cell::get) == generation {
        EXIST.with(|e| e.set(Some(exist)));
    }
    exist
}
