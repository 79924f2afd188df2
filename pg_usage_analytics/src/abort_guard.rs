//! Per-backend caches of what the tables hold (a backend's own bookkeeping
//! shards, the exporter series it has seen) take in what the current
//! transaction writes; when it aborts, or a savepoint of it is rolled back,
//! those writes are gone and so must be the cache (it reloads on next use).

use pgrx::prelude::*;
use pgrx::{register_subxact_callback, register_xact_callback, PgSubXactCallbackEvent, PgXactCallbackEvent};
use std::cell::Cell;
use std::thread::LocalKey;

/// Runs `forget` if the current transaction aborts or rolls back a
/// subtransaction (any: savepoints, PL/pgSQL exception blocks), or is
/// prepared for two-phase commit (ROLLBACK PREPARED may follow). `guard`
/// remembers the transaction already guarded, so a cache registers once per
/// transaction.
pub fn forget_on_abort(guard: &'static LocalKey<Cell<u32>>, forget: fn()) {
    let xid = u32::from(unsafe { pg_sys::GetCurrentTransactionId() });
    if guard.with(Cell::get) != xid {
        guard.with(|g| g.set(xid));
        for event in [PgXactCallbackEvent::Abort, PgXactCallbackEvent::Prepare] {
            register_xact_callback(event, move || {
                forget();
                guard.with(|g| g.set(0));
            });
        }
        register_subxact_callback(PgSubXactCallbackEvent::AbortSub, move |_, _| forget());
    }
}
