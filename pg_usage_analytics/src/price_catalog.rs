//! Price catalogs: `import_price_catalog` (admin, audited, in sql/admin.sql)
//! reads LiteLLM's `model_prices_and_context_window.json` format through
//! `_import_price_catalog`; the extension ships a snapshot of it
//! (`catalog/litellm_model_prices.json`, refreshed by `make price-catalog`)
//! and installs it (sql/price_catalog.sql).

use crate::errors::raise_invalid;
use crate::numerics::to_numeric;
use crate::price_cache::price_book;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;
use rust_decimal::Decimal;
use std::str::FromStr;
use usage_analytics_core::catalog::{classify, parse_litellm, Change};
use usage_analytics_core::pricing::{PriceRow, ServiceTier};
use usage_analytics_core::usage::TokenUsage;

/// LiteLLM's catalog as shipped with this version.
const SHIPPED_CATALOG: &str = include_str!("../catalog/litellm_model_prices.json");

/// The shipped catalog's text (installed by sql/price_catalog.sql).
#[pg_extern(immutable, parallel_safe)]
fn _shipped_price_catalog() -> &'static str {
    SHIPPED_CATALOG
}

const INSERT_PRICE: &str = "INSERT INTO usage_analytics.model_pricing AS p \
    (provider, model, service_tier, effective_from, seeded, input_usd_per_1k, output_usd_per_1k, \
     cache_read_usd_per_1k, cache_write_usd_per_1k, cache_write_1h_usd_per_1k, reasoning_usd_per_1k, \
     above_input_tokens, above_input_usd_per_1k, above_output_usd_per_1k, above_cache_read_usd_per_1k, \
     above_cache_write_usd_per_1k, above_cache_write_1h_usd_per_1k, above_reasoning_usd_per_1k) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
    ON CONFLICT ON CONSTRAINT model_pricing_key DO UPDATE SET \
      input_usd_per_1k = excluded.input_usd_per_1k, output_usd_per_1k = excluded.output_usd_per_1k, \
      cache_read_usd_per_1k = excluded.cache_read_usd_per_1k, cache_write_usd_per_1k = excluded.cache_write_usd_per_1k, \
      cache_write_1h_usd_per_1k = excluded.cache_write_1h_usd_per_1k, reasoning_usd_per_1k = excluded.reasoning_usd_per_1k, \
      above_input_tokens = excluded.above_input_tokens, above_input_usd_per_1k = excluded.above_input_usd_per_1k, \
      above_output_usd_per_1k = excluded.above_output_usd_per_1k, \
      above_cache_read_usd_per_1k = excluded.above_cache_read_usd_per_1k, \
      above_cache_write_usd_per_1k = excluded.above_cache_write_usd_per_1k, \
      above_cache_write_1h_usd_per_1k = excluded.above_cache_write_1h_usd_per_1k, \
      above_reasoning_usd_per_1k = excluded.above_reasoning_usd_per_1k";

fn price(value: Option<Decimal>) -> Option<AnyNumeric> {
    value.map(to_numeric)
}

fn insert(
    client: &mut pgrx::spi::SpiClient<'_>,
    row: &PriceRow,
    from: TimestampWithTimeZone,
    installed: bool,
) {
    let base = &row.rates.base;
    let above = row.rates.context.as_ref().map(|c| &c.above);
    let threshold = row
        .rates
        .context
        .as_ref()
        .map(|c| i32::try_from(c.threshold_tokens).unwrap_or(i32::MAX));
    let args: [DatumWithOid; 18] = [
        row.provider.as_str().into(),
        row.model.as_str().into(),
        row.service_tier.as_str().into(),
        from.into(),
        installed.into(),
        price(Some(base.input)).into(),
        price(Some(base.output)).into(),
        price(base.cache_read).into(),
        price(base.cache_write).into(),
        price(base.cache_write_1h).into(),
        price(base.reasoning).into(),
        threshold.into(),
        price(above.and_then(|a| a.input)).into(),
        price(above.and_then(|a| a.output)).into(),
        price(above.and_then(|a| a.cache_read)).into(),
        price(above.and_then(|a| a.cache_write)).into(),
        price(above.and_then(|a| a.cache_write_1h)).into(),
        price(above.and_then(|a| a.reasoning)).into(),
    ];
    client
        .update(INSERT_PRICE, None, &args)
        .unwrap_or_else(|e| error!("import_price_catalog: {}/{}: {e}", row.provider, row.model));
}

/// Imports a catalog in LiteLLM's format (the document's text, so prices
/// keep every digit): a model whose prices differ from those in force at
/// `effective_from` gets new rows from then, and tiers it no longer prices
/// end then; older rows keep pricing their time. `installed`: rows of the
/// shipped catalog (seeded), and models new to the book are priced since
/// 1970 like the installed prices. Returns {added, changed, unchanged,
/// skipped}. A document in the wrong format is refused whole, naming the key.
#[pg_extern(volatile, parallel_unsafe)]
fn _import_price_catalog(
    catalog: &str,
    format: &str,
    effective_from: TimestampWithTimeZone,
    installed: bool,
) -> JsonB {
    if format != "litellm" {
        raise_invalid(format!(
            "import_price_catalog: invalid format: {format:?}, the one format read is 'litellm'"
        ));
    }
    let import =
        parse_litellm(catalog).unwrap_or_else(|e| raise_invalid(format!("import_price_catalog: {e}")));
    let at = pg_sys::TimestampTz::from(effective_from);
    let diff = classify(&price_book().rows_in_force(at), &import.rows);
    let since_1970 =
        TimestampWithTimeZone::with_timezone(1970, 1, 1, 0, 0, 0.0, "UTC").expect("a valid timestamp");
    Spi::connect_mut(|client| {
        for model in diff.models.iter().filter(|m| m.change != Change::Unchanged) {
            let from = if installed && model.change == Change::Added {
                since_1970
            } else {
                effective_from
            };
            for row in &model.rows {
                insert(client, row, from, installed);
            }
            for tier in &model.retired_tiers {
                let args: [DatumWithOid; 4] = [
                    model.provider.as_str().into(),
                    model.model.as_str().into(),
                    tier.as_str().into(),
                    effective_from.into(),
                ];
                client
                    .update(
                        "UPDATE usage_analytics.model_pricing SET effective_to = $4 \
                          WHERE provider = $1 AND model = $2 AND service_tier = $3 \
                            AND effective_from < $4 AND (effective_to IS NULL OR effective_to > $4)",
                        None,
                        &args,
                    )
                    .unwrap_or_else(|e| error!("import_price_catalog: {e}"));
            }
        }
    });
    JsonB(diff.summary_json(import.skipped_entries()))
}

/// A stored row's price at the catalog in force at `at`, as [cost,
/// cache_savings]; NULL when no price is known (used by `reprice`).
#[allow(clippy::too_many_arguments)]
#[pg_extern(stable, parallel_safe)]
fn _catalog_cost(
    provider: Option<&str>,
    model: Option<&str>,
    input_tokens: i32,
    output_tokens: i32,
    cache_read_tokens: i32,
    cache_write_tokens: i32,
    cache_write_1h_tokens: i32,
    reasoning_tokens: i32,
    service_tier: &str,
    at: TimestampWithTimeZone,
) -> Option<Vec<Option<AnyNumeric>>> {
    let usage = TokenUsage {
        input_tokens: input_tokens.into(),
        output_tokens: output_tokens.into(),
        cache_read_tokens: cache_read_tokens.into(),
        cache_write_tokens: cache_write_tokens.into(),
        cache_write_1h_tokens: cache_write_1h_tokens.into(),
        reasoning_tokens: reasoning_tokens.into(),
    };
    let tier = ServiceTier::from_str(service_tier).unwrap_or_else(|e| raise_invalid(format!("reprice: {e}")));
    match price_book().resolve_cost_and_savings(provider, model, &usage, pg_sys::TimestampTz::from(at), tier)
    {
        Ok(priced) => priced.map(|(cost, savings)| vec![Some(to_numeric(cost)), savings.map(to_numeric)]),
        Err(e) => raise_invalid(format!("reprice: {e}")),
    }
}

// Internal: sql/price_catalog.sql's import_price_catalog and reprice check
// the caller and audit.
extension_sql!(
    "REVOKE ALL ON FUNCTION usage_analytics._import_price_catalog, usage_analytics._shipped_price_catalog, \
     usage_analytics._catalog_cost FROM PUBLIC;",
    name = "price_catalog_grants",
    requires = [
        "roles",
        _import_price_catalog,
        _shipped_price_catalog,
        _catalog_cost
    ]
);
