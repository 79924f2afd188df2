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

use crate::errors::raise_invalid;
use crate::json_args::UsageArg;
use crate::numerics::to_numeric;
use pgrx::prelude::*;
use pgrx::JsonB;
use rust_decimal::Decimal;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::str::FromStr;
use usage_analytics_core::pricing::{
    parse_price, ClassPriceOverrides, ClassPrices, ContextTier, ModelRates, PriceBook, ServiceTier,
    TieredPricePoint,
};
use usage_analytics_core::usage::normalize_usage as normalize;

thread_local! {
    static BOOK: RefCell<Option<Rc<PriceBook>>> = const { RefCell::new(None) };
    /// OIDs of the pricing tables, to ignore invalidations of other relations.
    static WATCHED: Cell<[pg_sys::Oid; 2]> = const { Cell::new([pg_sys::InvalidOid; 2]) };
    /// Invalidations of the pricing tables processed by this backend.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Drops the price book when a pricing table changed (InvalidOid: the whole
/// relcache was reset); called by the backend's relcache callback
/// (src/invalidation.rs).
pub(crate) fn relation_changed(relid: pg_sys::Oid) {
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
        let book = Rc::new(
            under_latest_snapshot(load)
                .unwrap_or_else(|e| error!("pg_usage_analytics: cannot load prices: {e}")),
        );
        if GENERATION.with(Cell::get) == generation {
            BOOK.with(|b| *b.borrow_mut() = Some(book.clone()));
            return book;
        }
    }
    error!("pg_usage_analytics: prices kept changing while they were loaded; try again")
}

/// Runs `read` under the latest snapshot, not the transaction's: a cache
/// loaded under an old snapshot would keep what its invalidation already
/// announced as changed (see the module comment). Also `budget_cache`'s.
pub(crate) fn under_latest_snapshot<R>(read: impl FnOnce() -> R + std::panic::UnwindSafe) -> R {
    unsafe {
        pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
    }
    PgTryBuilder::new(read)
        .finally(|| unsafe { pg_sys::PopActiveSnapshot() })
        .execute()
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

/// The price columns of `model_pricing` after provider, model, tier and
/// dates, in the order `price_columns` reads them.
const PRICE_COLUMNS: [&str; 12] = [
    "input_usd_per_1k",
    "output_usd_per_1k",
    "cache_read_usd_per_1k",
    "cache_write_usd_per_1k",
    "cache_write_1h_usd_per_1k",
    "reasoning_usd_per_1k",
    "above_input_usd_per_1k",
    "above_output_usd_per_1k",
    "above_cache_read_usd_per_1k",
    "above_cache_write_usd_per_1k",
    "above_cache_write_1h_usd_per_1k",
    "above_reasoning_usd_per_1k",
];

/// One `model_pricing` row's rates; an error names the bad price.
fn rates(prices: &[Option<String>], threshold: Option<i32>) -> Result<ModelRates, String> {
    let parsed: Vec<Option<Decimal>> = prices
        .iter()
        .zip(PRICE_COLUMNS)
        .map(|(text, column)| {
            text.as_deref()
                .map(|t| parse_price(t).map_err(|e| format!("{column}: {e}")))
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    let (Some(input), Some(output)) = (parsed[0], parsed[1]) else {
        return Err("input_usd_per_1k and output_usd_per_1k are required".into());
    };
    let above = ClassPriceOverrides {
        input: parsed[6],
        output: parsed[7],
        cache_read: parsed[8],
        cache_write: parsed[9],
        cache_write_1h: parsed[10],
        reasoning: parsed[11],
    };
    let rates = ModelRates {
        base: ClassPrices {
            input,
            output,
            cache_read: parsed[2],
            cache_write: parsed[3],
            cache_write_1h: parsed[4],
            reasoning: parsed[5],
        },
        context: threshold.map(|t| ContextTier {
            threshold_tokens: t.into(),
            above,
        }),
    };
    rates.validate()?;
    Ok(rates)
}

/// Whether model_pricing has the 0.2 columns (tiers, classes). A 0.1.0
/// database whose library a package upgrade replaced before ALTER
/// EXTENSION … UPDATE has only input and output prices: they are read as
/// the standard tier, so pricing goes on.
fn pricing_has_classes() -> bool {
    WATCHED.with(|w| {
        let relid = w.get()[0];
        relid != pg_sys::InvalidOid
            && unsafe { pg_sys::get_attnum(relid, c"service_tier".as_ptr()) }
                != pg_sys::InvalidAttrNumber as i16
    })
}

fn load() -> Result<PriceBook, pgrx::spi::Error> {
    Spi::connect(|client| {
        let mut book = PriceBook::default();
        let classes = pricing_has_classes();
        let query = if !classes {
            "SELECT provider, model, 'standard', effective_from, effective_to, NULL::integer, \
                    input_usd_per_1k::text, output_usd_per_1k::text \
               FROM usage_analytics.model_pricing"
                .to_string()
        } else {
            format!(
                "SELECT provider, model, service_tier, effective_from, effective_to, above_input_tokens, {} \
               FROM usage_analytics.model_pricing",
                PRICE_COLUMNS.map(|c| format!("{c}::text")).join(", ")
            )
        };
        let rows = client.select(&query, None, &[])?;
        for row in rows {
            let provider: String = row.get(1)?.unwrap_or_default();
            let model: String = row.get(2)?.unwrap_or_default();
            let tier: String = row.get(3)?.unwrap_or_default();
            let from: Option<TimestampWithTimeZone> = row.get(4)?;
            let to: Option<TimestampWithTimeZone> = row.get(5)?;
            let threshold: Option<i32> = row.get(6)?;
            let columns = if classes { PRICE_COLUMNS.len() } else { 2 };
            let mut prices: Vec<Option<String>> =
                (7..7 + columns).map(|i| row.get(i)).collect::<Result<_, _>>()?;
            prices.resize(PRICE_COLUMNS.len(), None);
            // model_pricing's CHECK keeps prices exact decimals; a row that
            // still does not fit (written before the CHECK existed) leaves
            // that one price out instead of failing every insert.
            let (service_tier, rates) = match (ServiceTier::from_str(&tier), rates(&prices, threshold)) {
                (Ok(t), Ok(r)) => (t, r),
                (Err(e), _) | (_, Err(e)) => {
                    warning!("model_pricing: the price of {provider}/{model} ({tier}) is ignored: {e}");
                    continue;
                }
            };
            book.add_tiered_price(
                &provider,
                &model,
                TieredPricePoint {
                    effective_from: from.map(pg_sys::TimestampTz::from).unwrap_or(i64::MIN),
                    effective_to: to.map(pg_sys::TimestampTz::from),
                    service_tier,
                    rates,
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

/// Statement trigger on a table that backends keep a cache of (the pricing
/// tables, budgets, search_texts): queue a relcache invalidation of it, sent
/// when this transaction commits, so every backend's callback drops what it
/// cached.
#[pg_trigger]
fn _announce_change<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let relid = trigger.relid()?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}

/// `_announce_change` under its 0.1.0 name, which the pricing tables'
/// triggers call (0.1.0's install script declares this symbol).
#[pg_trigger]
fn invalidate_price_cache<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    _announce_change(trigger)
}

/// The canonical model id for what a provider or SDK sent; the provider's
/// default model for NULL or empty; NULL when nothing known matches.
#[pg_extern(stable, parallel_safe)]
fn resolve_model(provider: Option<&str>, model: Option<&str>) -> Option<String> {
    price_book().resolve(provider, model).map(str::to_owned)
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
        Err(e) => raise_invalid(format!("calculate_cost: {e}")),
    }
}

fn service_tier(argument: &str, value: Option<&str>) -> ServiceTier {
    ServiceTier::from_str(value.unwrap_or("standard"))
        .unwrap_or_else(|e| raise_invalid(format!("{argument}: invalid service_tier: {e}")))
}

/// The token classes of a usage document in any provider's shape (OpenAI
/// Chat Completions or Responses, Anthropic Messages, Gemini usageMetadata,
/// OpenTelemetry gen_ai.usage.* attributes, or canonical), as the canonical
/// document.
#[pg_extern(immutable, parallel_safe)]
fn normalize_usage(provider: Option<&str>, usage: Option<UsageArg>) -> Option<JsonB> {
    let usage = usage?;
    let tokens =
        normalize(provider, &usage.0).unwrap_or_else(|e| raise_invalid(format!("normalize_usage: {e}")));
    Some(JsonB(tokens.to_canonical_json()))
}

/// Exact USD cost of a usage document (any shape `normalize_usage` reads)
/// at the prices in force at `at` for the service tier; NULL when no price
/// is known (an unknown model, or a tier the model has no price for).
#[pg_extern(stable, parallel_safe, name = "calculate_cost")]
fn calculate_cost_of_usage(
    provider: Option<&str>,
    model: Option<&str>,
    usage: Option<UsageArg>,
    at: default!(Option<TimestampWithTimeZone>, "now()"),
    service_tier: default!(Option<&str>, "'standard'"),
) -> Option<AnyNumeric> {
    let usage = usage?;
    let at = at.map(pg_sys::TimestampTz::from)?;
    let tokens =
        normalize(provider, &usage.0).unwrap_or_else(|e| raise_invalid(format!("calculate_cost: {e}")));
    let tier = self::service_tier("calculate_cost", service_tier);
    match price_book().resolve_cost_and_savings(provider, model, &tokens, at, tier) {
        Ok(priced) => priced.map(|(cost, _)| to_numeric(cost)),
        Err(e) => raise_invalid(format!("calculate_cost: {e}")),
    }
}

// Pricing is public knowledge: anyone with schema access may price.
extension_sql!(
    "GRANT EXECUTE ON FUNCTION usage_analytics.resolve_model, usage_analytics.normalize_usage, \
     usage_analytics.calculate_cost(text, text, bigint, bigint, timestamptz), \
     usage_analytics.calculate_cost(text, text, jsonb, timestamptz, text) TO PUBLIC;\n\
     REVOKE ALL ON FUNCTION usage_analytics.invalidate_price_cache, usage_analytics._announce_change FROM PUBLIC;",
    name = "price_cache_grants",
    requires = [
        "roles",
        resolve_model,
        normalize_usage,
        calculate_cost,
        calculate_cost_of_usage,
        invalidate_price_cache,
        _announce_change
    ]
);
