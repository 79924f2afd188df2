//! The backend's one relcache callback. Every per-backend cache of the
//! extension drops what a changed relation made stale: the price book, the
//! budgets answer, the known searched texts and the pricing trigger's column
//! positions. One callback for all of them, because PostgreSQL gives a
//! backend ten callback slots, shared with every other loaded extension.

use crate::{budget_cache, price_cache, search_texts, usage};
use pgrx::prelude::*;

/// Registers the callback; called once per backend from `_PG_init`.
pub fn register() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
    }
}

unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // relid is InvalidOid when the whole relcache is reset.
    price_cache::relation_changed(relid);
    budget_cache::relation_changed(relid);
    search_texts::relation_changed(relid);
    usage::relation_changed(relid);
}
