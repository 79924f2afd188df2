//! The per-backend price cache and the SQL functions that price requests.
//!
//! Prices are loaded once per backend from `model_pricing` and
//! `provider_default_model`. A statement trigger on those tables sends a
//! relcache invalidation for them; Postgres broadcasts it at commit, every
//! backend runs our callback at its next transaction start, and the cache is
//! reloaded on next use. A new price is therefore seen by every session at
//! once, without polling and without reconnecting.
//!
//! Two races would otherwise keep old prices cached for good, because the
//! invalidation that announced the new ones is consumed in the process:
//!  * a transaction whose snapshot predates the change (REPEATABLE READ, or
//!    a READ COMMITTED statement racing it) loads the cache: so the cache is
//!    always loaded under a fresh snapshot, never the transaction's;
//!  * the load itself locks the pricing tables, which processes pending
//!    invalidations after that fresh snapshot was taken: so every
//!    invalidation bumps a generation counter, and a load during which the
//!    generation moved is thrown away and redone.
//!
//! A price change is visible to new snapshots before its invalidation is
//! sent, so a load that saw no invalidation arrive holds every change whose
//! invalidation this backend has processed.

use pgrx::prelude::*;
use rust_decimal::Decimal;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use usage_analytics_core::pricing::{parse_price, PriceBook, PricePoint};

thread_local! {
    static BOOK: RefCell<Option<Rc<PriceBook>>> = const { RefCell::new(None) };
    /// OIDs of the pricing tables, to ignore invalidations of other relations.
    static WATCHED: Cell<[pg_sys::Oid; 2]> = const { Cell::new([pg_sys::InvalidOid; 2]) };
    /// Invalidations of the pricing tables processed by this backend.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Registers the invalidation callback; called once per backend from `_PG_init`.
pub fn register_invalidation_callback() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
    }
}

unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // relid is InvalidOid when the whole relcache is reset.
    if relid == pg_sys::InvalidOid || WATCHED.with(|w| w.get().contains(&relid)) {
        BOOK.with(|b| b.borrow_mut().take());
        GENERATION.with(|g| g.set(g.get() + 1));
    }
}

/// The current price book, loading it if the cache is empty.
pub fn price_book() -> Rc<PriceBook> {
    if let Some(book) = BOOK.with(|b| b.borrow().clone()) {
        return book;
    }
    if WATCHED.with(Cell::get)[0] == pg_sys::InvalidOid {
        watch_pricing_tables()
            .unwrap_or_else(|e| error!("pg_usage_analytics: cannot find the pricing tables: {e}"));
    }
    // Bounded: each retry means another price change arrived meanwhile.
    for _ in 0..16 {
        let generation = GENERATION.with(Cell::get);
        let book =
            Rc::new(load_latest().unwrap_or_else(|e| error!("pg_usage_analytics: cannot load prices: {e}")));
        if GENERATION.with(Cell::get) == generation {
            BOOK.with(|b| *b.borrow_mut() = Some(book.clone()));
            return book;
        }
    }
    error!("pg_usage_analytics: prices kept changing while they were loaded; try again")
}

/// Loads the price book under the latest snapshot (see the module comment).
fn load_latest() -> Result<PriceBook, pgrx::spi::Error> {
    unsafe {
        pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
    }
    let loaded = PgTryBuilder::new(load)
        .finally(|| unsafe { pg_sys::PopActiveSnapshot() })
        .execute();
    loaded
}

/// Records the pricing tables' OIDs, so invalidations of them are recognised.
fn watch_pricing_tables() -> Result<(), pgrx::spi::Error> {
    Spi::connect(|client| {
        let oids = client.select(
            "SELECT 'usage_analytics.model_pricing'::regclass::oid, \
                    'usage_analytics.provider_default_model'::regclass::oid",
            None,
            &[],
        )?;
        let oids = oids.first();
        WATCHED.with(|w| {
            w.set([
                oids.get::<pg_sys::Oid>(1)
                    .ok()
                    .flatten()
                    .unwrap_or(pg_sys::InvalidOid),
                oids.get::<pg_sys::Oid>(2)
                    .ok()
                    .flatten()
                    .unwrap_or(pg_sys::InvalidOid),
            ])
        });
        Ok(())
    })
}

fn load() -> Result<PriceBook, pgrx::spi::Error> {
    Spi::connect(|client| {
        let mut book = PriceBook::default();
        let rows = client.select(
            "SELECT provider, model, input_usd_per_1k::text, output_usd_per_1k::text, \
                    effective_from, effective_to \
               FROM usage_analytics.model_pricing",
            None,
            &[],
        )?;
        for row in rows {
            let provider: String = row.get(1)?.unwrap_or_default();
            let model: String = row.get(2)?.unwrap_or_default();
            let input: String = row.get(3)?.unwrap_or_default();
            let output: String = row.get(4)?.unwrap_or_default();
            let from: Option<TimestampWithTimeZone> = row.get(5)?;
            let to: Option<TimestampWithTimeZone> = row.get(6)?;
            // model_pricing's CHECK keeps prices exact decimals; a row that
            // still does not fit (written before the CHECK existed) leaves
            // that one model unpriced instead of failing every insert.
            let (input_usd_per_1k, output_usd_per_1k) = match (parse_price(&input), parse_price(&output)) {
                (Ok(i), Ok(o)) => (i, o),
                (Err(e), _) | (_, Err(e)) => {
                    warning!("model_pricing: the price of {provider}/{model} is ignored: {e}");
                    continue;
                }
            };
            book.add_price(
                &provider,
                &model,
                PricePoint {
                    effective_from: from.map(pg_sys::TimestampTz::from).unwrap_or(i64::MIN),
                    effective_to: to.map(pg_sys::TimestampTz::from),
                    input_usd_per_1k,
                    output_usd_per_1k,
                },
            );
        }
        let defaults = client.select(
            "SELECT provider, model FROM usage_analytics.provider_default_model",
            None,
            &[],
        )?;
        for row in defaults {
            let provider: String = row.get(1)?.unwrap_or_default();
            let model: String = row.get(2)?.unwrap_or_default();
            book.set_default(&provider, &model);
        }
        Ok(book)
    })
}

pub fn to_numeric(cost: Decimal) -> AnyNumeric {
    AnyNumeric::try_from(cost.to_string().as_str())
        .unwrap_or_else(|e| error!("cannot convert cost {cost} to numeric: {e}"))
}

/// Statement trigger on the pricing tables: queue a relcache invalidation so
/// every backend drops its cached prices once this transaction commits.
#[pg_trigger]
fn invalidate_price_cache<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let relid = trigger.relid()?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}

/// The canonical model id for what a provider or SDK sent; the provider's
/// default model for NULL or empty; NULL when nothing known matches.
#[pg_extern(stable, parallel_safe)]
fn resolve_model(provider: Option<&str>, model: Option<&str>) -> Option<String> {
    price_book().resolve(provider, model)
}

/// Exact USD cost at the price in force at `at`; NULL when no price is known.
#[pg_extern(stable, parallel_safe)]
fn calculate_cost(
    provider: Option<&str>,
    model: Option<&str>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    at: default!(Option<TimestampWithTimeZone>, "now()"),
) -> Option<AnyNumeric> {
    let (input_tokens, output_tokens) = (input_tokens?, output_tokens?);
    let at = at.map(pg_sys::TimestampTz::from)?;
    match price_book().cost(provider, model, input_tokens, output_tokens, at) {
        Ok(cost) => cost.map(to_numeric),
        Err(e) => crate::errors::raise_invalid(format!("calculate_cost: {e}")),
    }
}

// Pricing is public knowledge: anyone with schema access may price.
extension_sql!(
    "GRANT EXECUTE ON FUNCTION usage_analytics.resolve_model, usage_analytics.calculate_cost TO PUBLIC;\n\
     REVOKE ALL ON FUNCTION usage_analytics.invalidate_price_cache FROM PUBLIC;",
    name = "price_cache_grants",
    requires = ["roles", resolve_model, calculate_cost, invalidate_price_cache]
);
