//! Model resolution and exact cost arithmetic. Pure Rust: no Postgres here, so
//! every rule is covered by fast unit tests and property tests.
//!
//! Timestamps are opaque, ordered `i64` microseconds (Postgres' internal
//! `timestamptz` representation); this module only compares them.
//!
//! # Prices (0.2)
//! Every price is USD per 1,000 tokens (as `model_pricing` stores it), an
//! exact `Decimal`. A [`TieredPricePoint`] prices one (provider, model,
//! service tier) from `effective_from`: base [`ClassPrices`] (input and
//! output, optional cache-read, 5-minute cache-write, 1-hour cache-write and
//! reasoning prices) and an optional [`ContextTier`] (threshold T and above-T
//! prices for any class). The cost of a
//! [`TokenUsage`](crate::usage::TokenUsage) is
//!
//! ```text
//! (input − cache_read − cache_write − cache_write_1h) × input price
//! + cache_read × cache-read price + cache_write × cache-write price
//! + cache_write_1h × 1-hour cache-write price
//! + (output − reasoning) × output price + reasoning × reasoning price
//! ```
//!
//! with the prices "in effect" ([`ModelRates::applied`]): when the price has
//! a threshold T and `input_tokens > T`, each class takes its above-T price
//! if it has one; then a missing cache price (read, write or 1-hour write)
//! is the input price in effect and a missing reasoning price the output
//! price in effect. Each service tier has its own price history; a tier with
//! no price for the model leaves the request unpriced (`None`), never priced
//! at the standard tier. Every cost is exact or an error
//! ([`CostError::NotExact`], [`CostError::NotExactUsage`]), never rounded.
//!
//! # Resolution (0.2)
//! [`PriceBook::resolve`]: (1) an exact known id, case-insensitive, after
//! dropping any `provider/` or `models/`-style path prefix; (2) `ft:BASE:…`
//! resolves to the known id `ft:BASE` or to nothing; (3) only then the 0.1
//! rules: vendor wrappers dropped, separators folded ([`normalize`]), and the
//! longest known id that the name extends by version suffixes only (a date,
//! `-latest`, `-vN`, or a first suffix of at least three digits such as
//! `-0125`/`-002`; so `gpt-4.1` and `gpt-4-1` are never `gpt-4`). Every step
//! is a hash lookup (at most one per `-` in the name), never a scan of the
//! known models.
//!
//! # Files
//! * `prices.rs`: the price types, the service tiers, and which prices are
//!   accepted ([`validate_price`], [`parse_price`]).
//! * `cost.rs`: the exact cost arithmetic ([`cost_of_usage`], [`cost_of`])
//!   and [`CostError`].
//! * `price_book.rs`: [`PriceBook`], the prices over time; resolution and
//!   the cost of a request at the price in force.
//! * `model_names.rs`: the name rules resolution applies (wrappers,
//!   separators, version suffixes).

mod cost;
mod model_names;
mod price_book;
mod prices;
#[cfg(test)]
pub(crate) mod test_fixtures;

pub use cost::{check_tokens, cost_of, cost_of_usage, CostError};
pub use model_names::normalize;
pub(crate) use model_names::{matches_with_version_suffix, strip_wrappers};
pub use price_book::PriceBook;
pub use prices::{
    parse_price, validate_price, AppliedPrices, ClassPriceOverrides, ClassPrices, ContextTier, ModelRates,
    PricePoint, PriceRow, ServiceTier, TieredPricePoint, MAX_PRICE_DECIMALS, MAX_PRICE_USD_PER_1K,
};
