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
//! prices for any class). The cost of a [`TokenUsage`] is
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

use crate::usage::{TokenUsage, UsageError};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Prefixes that SDKs, gateways and clouds put before a model id
/// (`openai:gpt-4o`, `anthropic.claude-3-haiku-…`, `google-gla:gemini-…`).
const VENDOR_PREFIXES: &[&str] = &[
    "openai",
    "anthropic",
    "google",
    "google-gla",
    "google-vertex",
    "vertex_ai",
    "vertexai",
    "gemini",
    "perplexity",
    "bedrock",
    "azure",
    "meta",
    "groq",
    "mistral",
    "together",
];

/// AWS cross-region inference profiles: `us.anthropic.claude-…`.
const REGION_PREFIXES: &[&str] = &["us", "eu", "apac", "global"];

/// One price row from `model_pricing`, per 1,000 tokens: the 0.1 model
/// (standard tier, input and output only). [`PriceBook::add_price`] takes it
/// as a [`TieredPricePoint`] with only those two classes.
#[derive(Clone, Debug, PartialEq)]
pub struct PricePoint {
    pub effective_from: i64,
    pub effective_to: Option<i64>,
    pub input_usd_per_1k: Decimal,
    pub output_usd_per_1k: Decimal,
}

fn in_force(effective_from: i64, effective_to: Option<i64>, at: i64) -> bool {
    effective_from <= at && effective_to.is_none_or(|to| at < to)
}

/// The service tiers a request can be billed at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceTier {
    #[default]
    Standard,
    Batch,
    Flex,
    Priority,
}

impl ServiceTier {
    pub const ALL: [ServiceTier; 4] = [
        ServiceTier::Standard,
        ServiceTier::Batch,
        ServiceTier::Flex,
        ServiceTier::Priority,
    ];

    /// The name stored in `service_tier` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Batch => "batch",
            ServiceTier::Flex => "flex",
            ServiceTier::Priority => "priority",
        }
    }
}

impl fmt::Display for ServiceTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceTier {
    type Err = String;

    /// `standard`, `batch`, `flex` or `priority`, case-insensitive and
    /// trimmed; `default` (OpenAI's name for the standard tier reported in
    /// responses) is `standard`. Anything else (`auto`, `scale`, …) is an
    /// error naming the accepted values.
    fn from_str(text: &str) -> Result<ServiceTier, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "standard" | "default" => Ok(ServiceTier::Standard),
            "batch" => Ok(ServiceTier::Batch),
            "flex" => Ok(ServiceTier::Flex),
            "priority" => Ok(ServiceTier::Priority),
            _ => Err(format!(
                "service tier {text:?} is not one of standard, batch, flex, priority"
            )),
        }
    }
}

/// Base prices of one model at one tier, USD per 1,000 tokens. A missing
/// cache price means "the input price in effect", a missing reasoning price
/// "the output price in effect".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassPrices {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_read: Option<Decimal>,
    /// 5-minute (default) cache writes.
    pub cache_write: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    pub reasoning: Option<Decimal>,
}

/// Prices that replace the base ones above a context threshold; a class
/// without one keeps its base price.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassPriceOverrides {
    pub input: Option<Decimal>,
    pub output: Option<Decimal>,
    pub cache_read: Option<Decimal>,
    pub cache_write: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    pub reasoning: Option<Decimal>,
}

impl ClassPriceOverrides {
    pub fn is_empty(&self) -> bool {
        *self == ClassPriceOverrides::default()
    }
}

/// A context tier: when `input_tokens > threshold_tokens`, every class uses
/// its price in `above` (when it has one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextTier {
    pub threshold_tokens: i64,
    pub above: ClassPriceOverrides,
}

/// Everything that prices one model at one service tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelRates {
    pub base: ClassPrices,
    pub context: Option<ContextTier>,
}

/// The six prices that apply to one request (USD per 1,000 tokens), after
/// the context tier and the fallbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedPrices {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_read: Decimal,
    pub cache_write: Decimal,
    pub cache_write_1h: Decimal,
    pub reasoning: Decimal,
}

impl ModelRates {
    /// Input and output prices only (the 0.1 model).
    pub fn input_output(input_usd_per_1k: Decimal, output_usd_per_1k: Decimal) -> ModelRates {
        ModelRates {
            base: ClassPrices {
                input: input_usd_per_1k,
                output: output_usd_per_1k,
                ..ClassPrices::default()
            },
            context: None,
        }
    }

    /// The prices in effect for a request with `input_tokens` input tokens:
    /// above-T prices when the threshold is passed, then the fallbacks.
    pub fn applied(&self, input_tokens: i64) -> AppliedPrices {
        let above = self
            .context
            .as_ref()
            .filter(|c| input_tokens > c.threshold_tokens)
            .map(|c| &c.above);
        let pick = |base: Option<Decimal>, over: fn(&ClassPriceOverrides) -> Option<Decimal>| {
            above.and_then(over).or(base)
        };
        let input = pick(Some(self.base.input), |o| o.input).unwrap_or(self.base.input);
        let output = pick(Some(self.base.output), |o| o.output).unwrap_or(self.base.output);
        AppliedPrices {
            input,
            output,
            cache_read: pick(self.base.cache_read, |o| o.cache_read).unwrap_or(input),
            cache_write: pick(self.base.cache_write, |o| o.cache_write).unwrap_or(input),
            cache_write_1h: pick(self.base.cache_write_1h, |o| o.cache_write_1h).unwrap_or(input),
            reasoning: pick(self.base.reasoning, |o| o.reasoning).unwrap_or(output),
        }
    }

    /// Every price as (name, value), base then above-T, present ones only;
    /// names are the `model_pricing` column stems (`cache_read`,
    /// `above_cache_read`, …).
    pub fn prices(&self) -> Vec<(&'static str, Decimal)> {
        let b = &self.base;
        let mut out = vec![("input", b.input), ("output", b.output)];
        let optional = [
            ("cache_read", b.cache_read),
            ("cache_write", b.cache_write),
            ("cache_write_1h", b.cache_write_1h),
            ("reasoning", b.reasoning),
        ];
        out.extend(optional.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
        if let Some(c) = &self.context {
            let a = &c.above;
            let above = [
                ("above_input", a.input),
                ("above_output", a.output),
                ("above_cache_read", a.cache_read),
                ("above_cache_write", a.cache_write),
                ("above_cache_write_1h", a.cache_write_1h),
                ("above_reasoning", a.reasoning),
            ];
            out.extend(above.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
        }
        out
    }

    /// Every price passes [`validate_price`]; a threshold is >= 0 and
    /// comes with at least one above-T price.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in self.prices() {
            validate_price(&value).map_err(|e| format!("{name}: {e}"))?;
        }
        if let Some(c) = &self.context {
            if c.threshold_tokens < 0 {
                return Err(format!("context threshold {} must be >= 0", c.threshold_tokens));
            }
            if c.above.is_empty() {
                return Err(format!(
                    "context threshold {} has no above-threshold price",
                    c.threshold_tokens
                ));
            }
        }
        Ok(())
    }
}

/// One price row with token classes and tiers, per 1,000 tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct TieredPricePoint {
    pub effective_from: i64,
    pub effective_to: Option<i64>,
    pub service_tier: ServiceTier,
    pub rates: ModelRates,
}

impl TieredPricePoint {
    fn in_force_at(&self, at: i64) -> bool {
        in_force(self.effective_from, self.effective_to, at)
    }
}

impl From<&PricePoint> for TieredPricePoint {
    fn from(point: &PricePoint) -> TieredPricePoint {
        TieredPricePoint {
            effective_from: point.effective_from,
            effective_to: point.effective_to,
            service_tier: ServiceTier::Standard,
            rates: ModelRates::input_output(point.input_usd_per_1k, point.output_usd_per_1k),
        }
    }
}

/// The prices of one (provider, model, service tier), without dates: what a
/// catalog import produces and what [`PriceBook::rows_in_force`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceRow {
    pub provider: String,
    pub model: String,
    pub service_tier: ServiceTier,
    pub rates: ModelRates,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CostError {
    NegativeTokens {
        argument: &'static str,
        value: i64,
    },
    /// The exact cost needs more than 28 decimal places or more than 96 bits
    /// of mantissa: `rust_decimal` would round it, so no cost is returned.
    NotExact {
        input_tokens: i64,
        input_usd_per_1k: Decimal,
        output_tokens: i64,
        output_usd_per_1k: Decimal,
    },
    /// The usage breaks an invariant (negative class, cache reads and writes
    /// beyond the input, reasoning beyond the output).
    InvalidUsage(UsageError),
    /// [`NotExact`](CostError::NotExact) for a cost with token classes.
    NotExactUsage(Box<(TokenUsage, AppliedPrices)>),
}

impl fmt::Display for CostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CostError::NegativeTokens { argument, value } => {
                write!(f, "{argument} must be >= 0, got {value}")
            }
            CostError::NotExact {
                input_tokens,
                input_usd_per_1k,
                output_tokens,
                output_usd_per_1k,
            } => write!(
                f,
                "cost of {input_tokens} input tokens at price {input_usd_per_1k} and {output_tokens} output \
                 tokens at price {output_usd_per_1k} (USD per 1K tokens) does not fit an exact 28-digit decimal"
            ),
            CostError::InvalidUsage(e) => e.fmt(f),
            CostError::NotExactUsage(inexact) => {
                let (usage, prices) = &**inexact;
                write!(
                f,
                "cost of {usage} at prices input {}, output {}, cache read {}, cache write {}, 1-hour cache \
                 write {}, reasoning {} (USD per 1K tokens) does not fit an exact 28-digit decimal",
                prices.input,
                prices.output,
                prices.cache_read,
                prices.cache_write,
                prices.cache_write_1h,
                prices.reasoning
                )
            }
        }
    }
}

/// The known models, their prices over time and each provider's default model.
#[derive(Default, Debug)]
pub struct PriceBook {
    /// Lower-cased id → canonical id, for exact matches.
    exact: HashMap<String, String>,
    /// Normalized id → canonical id (the smallest canonical id when several
    /// normalize alike), for the 0.1 version-suffix rules.
    normalized: HashMap<String, String>,
    /// (provider, canonical model, tier) → price history ordered by effective_from.
    prices: HashMap<(String, String, ServiceTier), Vec<TieredPricePoint>>,
    /// canonical model → providers that price it (at any tier), sorted, for
    /// lookups whose provider differs from the pricing row's (a gateway
    /// reselling a model).
    providers_of: HashMap<String, Vec<String>>,
    defaults: HashMap<String, String>,
}

impl PriceBook {
    /// Adds a 0.1 price row: standard tier, input and output prices only.
    pub fn add_price(&mut self, provider: &str, model: &str, point: PricePoint) {
        self.add_tiered_price(provider, model, TieredPricePoint::from(&point));
    }

    /// Adds a price row with token classes, for one service tier. Provider
    /// and model are trimmed and lower-cased. The caller validates the
    /// rates (`ModelRates::validate`); any rates are accepted here, and a
    /// cost that cannot be exact is an error at pricing time.
    pub fn add_tiered_price(&mut self, provider: &str, model: &str, point: TieredPricePoint) {
        let provider = provider.trim().to_lowercase();
        let model = model.trim().to_lowercase();
        let history = self
            .prices
            .entry((provider.clone(), model.clone(), point.service_tier))
            .or_default();
        history.push(point);
        history.sort_by_key(|p| p.effective_from);
        let providers = self.providers_of.entry(model.clone()).or_default();
        if !providers.contains(&provider) {
            providers.push(provider);
            providers.sort();
        }
        self.exact.entry(model.clone()).or_insert_with(|| model.clone());
        let slot = self
            .normalized
            .entry(normalize(&model))
            .or_insert_with(|| model.clone());
        if model < *slot {
            *slot = model;
        }
    }

    pub fn set_default(&mut self, provider: &str, model: &str) {
        self.defaults
            .insert(provider.trim().to_lowercase(), model.trim().to_lowercase());
    }

    /// The canonical model id for what a provider or SDK sent, the provider's
    /// default for NULL/empty, `None` when nothing known matches (see the
    /// module docs for the rules).
    pub fn resolve(&self, provider: Option<&str>, model: Option<&str>) -> Option<String> {
        let model = model.map(str::trim).unwrap_or("");
        if model.is_empty() {
            let provider = provider?.trim().to_lowercase();
            return self.defaults.get(&provider).cloned();
        }
        let lowered = model.to_lowercase();
        // 1. An exact known id, with or without path prefixes.
        let mut id = lowered.as_str();
        loop {
            if let Some(canonical) = self.exact.get(id.trim()) {
                return Some(canonical.clone());
            }
            match id.split_once('/') {
                Some((_, rest)) => id = rest,
                None => break,
            }
        }
        // 2. A fine-tuned model is priced as its `ft:BASE` or not at all.
        if let Some(rest) = id.trim().strip_prefix("ft:") {
            let base = rest.split(':').next().unwrap_or("").trim();
            return self.exact.get(&format!("ft:{base}")).cloned();
        }
        // 3. The 0.1 rules: the longest known id extended by version suffixes.
        let candidate = normalize(strip_wrappers(&lowered));
        let mut end = candidate.len();
        loop {
            let prefix = &candidate[..end];
            if let Some(canonical) = self.normalized.get(prefix) {
                if matches_with_version_suffix(&candidate, prefix) {
                    return Some(canonical.clone());
                }
            }
            match prefix.rfind('-') {
                Some(dash) => end = dash,
                None => return None,
            }
        }
    }

    /// The price in force at `at` for a canonical model at a service tier.
    /// The given provider's rows win when it prices the model at any tier
    /// (then a tier it lacks is `None`); otherwise (a gateway) the rows of
    /// the first provider, by name, that prices the model.
    pub fn price_at_tier(
        &self,
        provider: Option<&str>,
        model: &str,
        at: i64,
        tier: ServiceTier,
    ) -> Option<&TieredPricePoint> {
        let model = model.trim().to_lowercase();
        let providers = self.providers_of.get(&model)?;
        let provider = provider
            .map(|p| p.trim().to_lowercase())
            .filter(|p| providers.contains(p))
            .or_else(|| providers.first().cloned())?;
        self.prices
            .get(&(provider, model, tier))?
            .iter()
            .rev()
            .find(|p| p.in_force_at(at))
    }

    /// Resolves the model and prices the tokens at `at` (standard tier).
    /// `Ok(None)` means no price is known (unknown model, or no price in
    /// force then). Equals `cost_usage` with only input and output tokens
    /// at the standard tier.
    pub fn cost(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        input_tokens: i64,
        output_tokens: i64,
        at: i64,
    ) -> Result<Option<Decimal>, CostError> {
        check_tokens(input_tokens, output_tokens)?;
        let usage = TokenUsage::input_output(input_tokens, output_tokens);
        match self.cost_usage(provider, model, &usage, at, ServiceTier::Standard) {
            Err(CostError::NotExactUsage(inexact)) => Err(CostError::NotExact {
                input_tokens,
                input_usd_per_1k: inexact.1.input,
                output_tokens,
                output_usd_per_1k: inexact.1.output,
            }),
            other => other,
        }
    }

    /// Resolves the model and prices a request's token classes at `at` and
    /// `tier`. `Ok(None)`: unknown model, or no price in force then at that
    /// tier. Errors: a usage that breaks an invariant (`InvalidUsage`,
    /// checked before anything else) or a cost that is not exact.
    pub fn cost_usage(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        usage: &TokenUsage,
        at: i64,
        tier: ServiceTier,
    ) -> Result<Option<Decimal>, CostError> {
        Ok(self
            .resolve_cost_and_savings(provider, model, usage, at, tier)?
            .map(|(cost, _)| cost))
    }

    /// `cost_and_savings` of the model the caller named, resolved first;
    /// `Ok(None)` and errors as for `cost_usage`.
    pub fn resolve_cost_and_savings(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        usage: &TokenUsage,
        at: i64,
        tier: ServiceTier,
    ) -> Result<Option<(Decimal, Option<Decimal>)>, CostError> {
        usage.validate().map_err(CostError::InvalidUsage)?;
        match self.resolve(provider, model) {
            Some(canonical) => self.cost_and_savings(provider, &canonical, usage, at, tier),
            None => Ok(None),
        }
    }

    /// A request's cost and cache savings (what its cache reads would have
    /// cost at the input price in force, minus their cost; None if that
    /// overflows), both at the one price of `canonical` (an already resolved
    /// model) in force at `at` for `tier`. `Ok(None)`: no such price.
    pub fn cost_and_savings(
        &self,
        provider: Option<&str>,
        canonical: &str,
        usage: &TokenUsage,
        at: i64,
        tier: ServiceTier,
    ) -> Result<Option<(Decimal, Option<Decimal>)>, CostError> {
        let Some(price) = self.price_at_tier(provider, canonical, at, tier) else {
            return Ok(None);
        };
        let cost = cost_of_usage(&price.rates, usage)?;
        let applied = price.rates.applied(usage.input_tokens);
        // Per 1k tokens: the scale grows by 3, the digits do not, so exact.
        let savings = (applied.input - applied.cache_read)
            .checked_mul(Decimal::from(usage.cache_read_tokens))
            .and_then(|d| d.checked_mul(Decimal::new(1, 3)));
        Ok(Some((cost, savings)))
    }

    /// Every (provider, model, tier) price in force at `at`: the "rows in
    /// force" that `catalog::classify` compares an import with. Sorted by
    /// provider, model, tier.
    pub fn rows_in_force(&self, at: i64) -> Vec<PriceRow> {
        let mut rows: Vec<PriceRow> = self
            .prices
            .iter()
            .filter_map(|((provider, model, tier), history)| {
                let point = history.iter().rev().find(|p| p.in_force_at(at))?;
                Some(PriceRow {
                    provider: provider.clone(),
                    model: model.clone(),
                    service_tier: *tier,
                    rates: point.rates.clone(),
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            (&a.provider, &a.model, a.service_tier).cmp(&(&b.provider, &b.model, b.service_tier))
        });
        rows
    }
}

/// Exact cost of a request's token classes at the given rates (see the
/// module docs), trailing zeros removed. The usage must be valid
/// (`TokenUsage::validate`), else `InvalidUsage`.
pub fn cost_of_usage(rates: &ModelRates, usage: &TokenUsage) -> Result<Decimal, CostError> {
    usage.validate().map_err(CostError::InvalidUsage)?;
    let prices = rates.applied(usage.input_tokens);
    // validate() bounds the cached classes by the input, so no overflow.
    let uncached =
        usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens - usage.cache_write_1h_tokens;
    let terms = [
        (prices.input, uncached),
        (prices.cache_read, usage.cache_read_tokens),
        (prices.cache_write, usage.cache_write_tokens),
        (prices.cache_write_1h, usage.cache_write_1h_tokens),
        (prices.output, usage.output_tokens - usage.reasoning_tokens),
        (prices.reasoning, usage.reasoning_tokens),
    ];
    let mut total = Scaled {
        mantissa: 0,
        scale: 0,
    };
    for (price, tokens) in terms {
        total = Scaled::of(price)
            .per_thousand_times(tokens)
            .and_then(|term| total.checked_add(term))
            .ok_or_else(|| CostError::NotExactUsage(Box::new((*usage, prices))))?;
    }
    total
        .to_decimal()
        .ok_or_else(|| CostError::NotExactUsage(Box::new((*usage, prices))))
}

pub fn check_tokens(input_tokens: i64, output_tokens: i64) -> Result<(), CostError> {
    if input_tokens < 0 {
        return Err(CostError::NegativeTokens {
            argument: "input_tokens",
            value: input_tokens,
        });
    }
    if output_tokens < 0 {
        return Err(CostError::NegativeTokens {
            argument: "output_tokens",
            value: output_tokens,
        });
    }
    Ok(())
}

/// Largest accepted price, USD per 1,000 tokens.
pub const MAX_PRICE_USD_PER_1K: u32 = 1_000_000;
/// Most decimal places accepted in a price (USD per 1,000 tokens): 1e-12 USD
/// per 1K tokens is 1e-15 USD per token, finer than any provider bills.
pub const MAX_PRICE_DECIMALS: u32 = 12;

/// Whether a price (USD per 1,000 tokens) is one the catalog accepts:
/// non-negative, at most `MAX_PRICE_DECIMALS` decimal places (trailing zeros
/// do not count) and at most `MAX_PRICE_USD_PER_1K`. Within these bounds every
/// cost of up to `i32::MAX` input and `i32::MAX` output tokens is exact.
pub fn validate_price(value: &Decimal) -> Result<(), String> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("price {value} is negative"));
    }
    let scale = value.normalize().scale();
    if scale > MAX_PRICE_DECIMALS {
        return Err(format!(
            "price {value} has {scale} decimal places, the limit is {MAX_PRICE_DECIMALS}"
        ));
    }
    if *value > Decimal::from(MAX_PRICE_USD_PER_1K) {
        return Err(format!(
            "price {value} exceeds the limit of {MAX_PRICE_USD_PER_1K} USD per 1K tokens"
        ));
    }
    Ok(())
}

/// Parses a price as Postgres prints a `numeric` (`0.0025`, `10`, `-1.5`)
/// and checks it with `validate_price`. Unlike `Decimal::from_str`, which
/// silently rounds text beyond 28 significant digits, this refuses any text
/// it cannot hold exactly.
pub fn parse_price(text: &str) -> Result<Decimal, String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix(['-', '+']).unwrap_or(trimmed);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let well_formed = !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(format!("price {trimmed:?} is not a decimal number"));
    }
    let decimals = fraction.trim_end_matches('0').len();
    if decimals > MAX_PRICE_DECIMALS as usize {
        return Err(format!(
            "price {trimmed} has {decimals} decimal places, the limit is {MAX_PRICE_DECIMALS}"
        ));
    }
    if whole.trim_start_matches('0').len() > 7 {
        return Err(format!(
            "price {trimmed} exceeds the limit of {MAX_PRICE_USD_PER_1K} USD per 1K tokens"
        ));
    }
    // At most 7 + 12 significant digits (leading and trailing zeros aside):
    // the parse below is exact.
    let value = Decimal::from_str_exact(trimmed).map_err(|e| format!("price {trimmed}: {e}"))?;
    validate_price(&value)?;
    Ok(value)
}

/// An exact non-negative or negative decimal as `mantissa × 10^-scale`, in
/// i128 so that intermediate results are not limited to rust_decimal's 96 bits.
#[derive(Clone, Copy, Debug)]
struct Scaled {
    mantissa: i128,
    scale: u32,
}

impl Scaled {
    fn of(value: Decimal) -> Scaled {
        Scaled {
            mantissa: value.mantissa(),
            scale: value.scale(),
        }
        .stripped()
    }

    /// Removes trailing decimal zeros (scale never goes below 0).
    fn stripped(mut self) -> Scaled {
        while self.scale > 0 && self.mantissa != 0 && self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.scale -= 1;
        }
        if self.mantissa == 0 {
            self.scale = 0;
        }
        self
    }

    /// `tokens × self / 1000`, exactly. The factors of ten the product will
    /// have are divided out of the operands first, so the product overflows
    /// i128 only when the exact result is too large for any Decimal anyway.
    fn per_thousand_times(self, tokens: i64) -> Option<Scaled> {
        if tokens == 0 || self.mantissa == 0 {
            return Some(Scaled {
                mantissa: 0,
                scale: 0,
            });
        }
        let mut tokens = i128::from(tokens);
        let mut price = self.mantissa;
        let mut scale = self.scale + 3;
        // Divide out 2s and 5s pairwise (each pair is a 10) while the result
        // still has decimal places to give up.
        let (t2, t5) = (twos(tokens), fives(tokens));
        let (p2, p5) = (twos(price), fives(price));
        let tens = (t2 + p2).min(t5 + p5).min(scale);
        let from_tokens2 = tens.min(t2);
        let from_tokens5 = tens.min(t5);
        tokens /= 2i128.pow(from_tokens2) * 5i128.pow(from_tokens5);
        price /= 2i128.pow(tens - from_tokens2) * 5i128.pow(tens - from_tokens5);
        scale -= tens;
        Some(Scaled {
            mantissa: tokens.checked_mul(price)?,
            scale,
        })
    }

    fn checked_add(self, other: Scaled) -> Option<Scaled> {
        let scale = self.scale.max(other.scale);
        let align = |s: Scaled| s.mantissa.checked_mul(10i128.checked_pow(scale - s.scale)?);
        Some(
            Scaled {
                mantissa: align(self)?.checked_add(align(other)?)?,
                scale,
            }
            .stripped(),
        )
    }

    /// The Decimal holding exactly this value, if one does.
    fn to_decimal(self) -> Option<Decimal> {
        let s = self.stripped();
        // try_from_i128_with_scale refuses a scale above 28 or a mantissa
        // beyond 96 bits instead of rounding.
        Decimal::try_from_i128_with_scale(s.mantissa, s.scale).ok()
    }
}

fn twos(mut n: i128) -> u32 {
    let mut count = 0;
    while n != 0 && n % 2 == 0 {
        n /= 2;
        count += 1;
    }
    count
}

fn fives(mut n: i128) -> u32 {
    let mut count = 0;
    while n != 0 && n % 5 == 0 {
        n /= 5;
        count += 1;
    }
    count
}

/// Exact cost: (input × input price + output × output price) / 1000, with
/// trailing zeros removed. Never rounds: `rust_decimal`'s own `checked_mul`
/// and `checked_add` round results that need more than 28 decimal places
/// (they return `Some(rounded)`), so the arithmetic here is done on exact
/// scaled integers and a result no Decimal holds exactly is `NotExact`.
pub fn cost_of(price: &PricePoint, input_tokens: i64, output_tokens: i64) -> Result<Decimal, CostError> {
    let not_exact = || CostError::NotExact {
        input_tokens,
        input_usd_per_1k: price.input_usd_per_1k,
        output_tokens,
        output_usd_per_1k: price.output_usd_per_1k,
    };
    let input = Scaled::of(price.input_usd_per_1k).per_thousand_times(input_tokens);
    let output = Scaled::of(price.output_usd_per_1k).per_thousand_times(output_tokens);
    input
        .zip(output)
        .and_then(|(input, output)| input.checked_add(output))
        .and_then(Scaled::to_decimal)
        .ok_or_else(not_exact)
}

/// Drops what wraps a model id: paths (`openai/gpt-4o`, `models/gemini-…`),
/// a `vendor:` prefix, `:0`/`:free` suffixes and `us.anthropic.` prefixes.
pub(crate) fn strip_wrappers(lowered: &str) -> &str {
    let mut s = lowered.rsplit('/').next().unwrap_or(lowered).trim();
    if let Some((head, tail)) = s.split_once(':') {
        if VENDOR_PREFIXES.contains(&head.trim()) {
            s = tail.trim();
        }
    }
    if let Some((head, _)) = s.split_once(':') {
        s = head.trim();
    }
    if let Some((head, tail)) = s.split_once('.') {
        if REGION_PREFIXES.contains(&head)
            && tail
                .split_once('.')
                .is_some_and(|(v, _)| VENDOR_PREFIXES.contains(&v))
        {
            s = tail;
        }
    }
    if let Some((head, tail)) = s.split_once('.') {
        if VENDOR_PREFIXES.contains(&head) {
            s = tail;
        }
    }
    s
}

/// Dots, underscores, spaces and `@` become dashes, so `claude-3.5-sonnet`,
/// `claude_3_5_sonnet` and `claude-3-5-sonnet@20240620` compare equal.
pub fn normalize(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for ch in id.trim().chars() {
        let ch = match ch {
            '.' | '_' | ' ' | '@' => '-',
            other => other.to_ascii_lowercase(),
        };
        if ch == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(ch);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// `candidate` is `known` itself or `known` followed by dated/version
/// suffixes only (`-2024-08-06`, `-20241022`, `-0125`, `-002`, `-latest`, `-v2`).
/// A first suffix of one or two digits is a point release, not a version.
pub(crate) fn matches_with_version_suffix(candidate: &str, known: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(known) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    let mut tokens = rest.split('-');
    // The first suffix is a date or version (`2024`, `20241022`, `0125`,
    // `002`, `latest`, `v2`), never a point release (`gpt-4.1`, `gpt-4-1`).
    let first_is_version = tokens
        .next()
        .is_some_and(|first| is_version_token(first) && (first.len() >= 3 || first.starts_with('v')));
    first_is_version && tokens.all(is_version_token)
}

fn is_version_token(token: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(token) || token == "latest" || token.strip_prefix('v').is_some_and(all_digits)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::str::FromStr;

    /// The seed's 12 models, prices per 1K tokens.
    pub(crate) const SEED_PRICES: &[(&str, &str, &str, &str)] = &[
        ("openai", "gpt-4o", "0.0025", "0.01"),
        ("openai", "gpt-4o-mini", "0.00015", "0.0006"),
        ("openai", "gpt-4-turbo", "0.01", "0.03"),
        ("openai", "gpt-3.5-turbo", "0.0005", "0.0015"),
        ("anthropic", "claude-3-5-sonnet", "0.003", "0.015"),
        ("anthropic", "claude-3-opus", "0.015", "0.075"),
        ("anthropic", "claude-3-haiku", "0.00025", "0.00125"),
        (
            "perplexity",
            "llama-3.1-sonar-small-128k-online",
            "0.0002",
            "0.0002",
        ),
        (
            "perplexity",
            "llama-3.1-sonar-large-128k-online",
            "0.001",
            "0.001",
        ),
        ("perplexity", "llama-3.1-sonar-huge-128k-online", "0.005", "0.005"),
        ("google", "gemini-1.5-pro", "0.00125", "0.005"),
        ("google", "gemini-1.5-flash", "0.000075", "0.0003"),
    ];

    pub(crate) fn seed_book() -> PriceBook {
        let mut book = PriceBook::default();
        for (provider, model, input, output) in SEED_PRICES {
            book.add_price(
                provider,
                model,
                PricePoint {
                    effective_from: i64::MIN,
                    effective_to: None,
                    input_usd_per_1k: Decimal::from_str(input).unwrap(),
                    output_usd_per_1k: Decimal::from_str(output).unwrap(),
                },
            );
        }
        book.set_default("openai", "gpt-4o-mini");
        book.set_default("anthropic", "claude-3-haiku");
        book.set_default("perplexity", "llama-3.1-sonar-small-128k-online");
        book.set_default("google", "gemini-1.5-flash");
        book
    }

    #[test]
    fn resolves_what_sdks_send() {
        let book = seed_book();
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("openai", Some("gpt-4o"), Some("gpt-4o")),
            ("openai", Some("GPT-4o"), Some("gpt-4o")),
            ("openai", Some("gpt-4o-2024-08-06"), Some("gpt-4o")),
            ("openai", Some("gpt-4o-2024-05-13"), Some("gpt-4o")),
            ("openai", Some("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini")),
            ("openai", Some("openai/gpt-4o-mini"), Some("gpt-4o-mini")),
            ("openai", Some("openai:gpt-4o"), Some("gpt-4o")),
            ("openai", Some("gpt-4-turbo-2024-04-09"), Some("gpt-4-turbo")),
            ("openai", Some("gpt-3.5-turbo-0125"), Some("gpt-3.5-turbo")),
            ("openai", Some("gpt-3-5-turbo"), Some("gpt-3.5-turbo")),
            ("openai", Some("gpt-4o-latest"), Some("gpt-4o")),
            ("openai", Some(" gpt-4o "), Some("gpt-4o")),
            (
                "anthropic",
                Some("claude-3-5-sonnet-20241022"),
                Some("claude-3-5-sonnet"),
            ),
            ("anthropic", Some("claude-3.5-sonnet"), Some("claude-3-5-sonnet")),
            (
                "anthropic",
                Some("claude-3-5-sonnet-latest"),
                Some("claude-3-5-sonnet"),
            ),
            (
                "anthropic",
                Some("claude-3-5-sonnet@20240620"),
                Some("claude-3-5-sonnet"),
            ),
            (
                "anthropic",
                Some("anthropic.claude-3-haiku-20240307-v1:0"),
                Some("claude-3-haiku"),
            ),
            (
                "anthropic",
                Some("us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
                Some("claude-3-5-sonnet"),
            ),
            ("anthropic", Some("claude-3-opus-20240229"), Some("claude-3-opus")),
            ("anthropic", Some("Claude 3 Haiku"), Some("claude-3-haiku")),
            (
                "perplexity",
                Some("llama-3.1-sonar-small-128k-online"),
                Some("llama-3.1-sonar-small-128k-online"),
            ),
            (
                "perplexity",
                Some("llama-3-1-sonar-huge-128k-online"),
                Some("llama-3.1-sonar-huge-128k-online"),
            ),
            ("google", Some("gemini-1.5-flash-002"), Some("gemini-1.5-flash")),
            (
                "google",
                Some("models/gemini-1.5-pro-001"),
                Some("gemini-1.5-pro"),
            ),
            (
                "google",
                Some("gemini-1.5-flash-latest"),
                Some("gemini-1.5-flash"),
            ),
            (
                "google",
                Some("google-gla:gemini-1.5-pro"),
                Some("gemini-1.5-pro"),
            ),
            // defaults
            ("openai", None, Some("gpt-4o-mini")),
            ("OpenAI", Some(""), Some("gpt-4o-mini")),
            ("anthropic", Some("   "), Some("claude-3-haiku")),
            ("perplexity", None, Some("llama-3.1-sonar-small-128k-online")),
            ("google", None, Some("gemini-1.5-flash")),
            ("other", None, None),
            // unknown: never a guess
            ("openai", Some("gpt-4"), None),
            ("openai", Some("gpt-4o-audio-preview"), None),
            ("openai", Some("chatgpt-4o-latest"), None),
            ("openai", Some("gpt-3.5-turbo-16k"), None),
            ("openai", Some("gpt-3.5-turbo-instruct"), None),
            ("openai", Some("ft:gpt-4o-mini:org::abc"), None),
            ("google", Some("gemini-1.5-flash-8b"), None),
            ("anthropic", Some("claude-3-5-haiku-20241022"), None),
            ("other", Some("mistral-large"), None),
        ];
        for (provider, model, expected) in cases {
            assert_eq!(
                book.resolve(Some(provider), *model).as_deref(),
                *expected,
                "resolve({provider:?}, {model:?})"
            );
        }
    }

    #[test]
    fn prices_every_seed_model_exactly() {
        let book = seed_book();
        for (provider, model, input, output) in SEED_PRICES {
            let cost = book
                .cost(Some(provider), Some(model), 1000, 1000, 0)
                .unwrap()
                .unwrap();
            let expected = Decimal::from_str(input).unwrap() + Decimal::from_str(output).unwrap();
            assert_eq!(cost, expected.normalize(), "{model}");
        }
    }

    #[test]
    fn cost_is_exact_for_small_and_large_counts() {
        let book = seed_book();
        let cost = |model, i, o| {
            book.cost(Some("x"), Some(model), i, o, 0)
                .unwrap()
                .unwrap()
                .to_string()
        };
        // 100 gemini-1.5-flash tokens: DECIMAL(10,6) would round this by 7%.
        assert_eq!(cost("gemini-1.5-flash", 100, 0), "0.0000075");
        assert_eq!(cost("gpt-4o", 1234, 567), "0.008755");
        assert_eq!(cost("gpt-4o-mini", 1, 1), "0.00000075");
        assert_eq!(
            cost("claude-3-opus", 2_147_483_647, 2_147_483_647),
            "193273.52823"
        );
        assert_eq!(cost("gpt-4o", 0, 0), "0");
        assert_eq!(cost("gpt-4-turbo", i64::MAX, 0), "92233720368547.75807");
    }

    #[test]
    fn negative_tokens_are_refused() {
        let book = seed_book();
        assert_eq!(
            book.cost(Some("openai"), None, -1, 0, 0),
            Err(CostError::NegativeTokens {
                argument: "input_tokens",
                value: -1
            })
        );
        assert_eq!(
            book.cost(Some("openai"), None, 0, -5, 0),
            Err(CostError::NegativeTokens {
                argument: "output_tokens",
                value: -5
            })
        );
    }

    #[test]
    fn unknown_model_has_no_cost() {
        assert_eq!(
            seed_book().cost(Some("openai"), Some("o1-preview"), 10, 10, 0),
            Ok(None)
        );
    }

    #[test]
    fn price_history_picks_the_row_in_force() {
        let mut book = seed_book();
        let dec = |s| Decimal::from_str(s).unwrap();
        book.add_price(
            "openai",
            "gpt-4o",
            PricePoint {
                effective_from: 1_000,
                effective_to: None,
                input_usd_per_1k: dec("0.005"),
                output_usd_per_1k: dec("0.02"),
            },
        );
        book.add_price(
            "openai",
            "gpt-4o",
            PricePoint {
                effective_from: 2_000,
                effective_to: Some(3_000),
                input_usd_per_1k: dec("1"),
                output_usd_per_1k: dec("1"),
            },
        );
        let at = |t| book.cost(Some("openai"), Some("gpt-4o"), 1000, 0, t).unwrap();
        assert_eq!(at(999), Some(dec("0.0025")));
        assert_eq!(at(1_000), Some(dec("0.005")));
        assert_eq!(at(2_500), Some(dec("1")));
        // After an expired row, the most recent open row still in force applies.
        assert_eq!(at(3_000), Some(dec("0.005")));
    }

    #[test]
    fn no_price_before_the_first_row() {
        let mut book = PriceBook::default();
        book.add_price(
            "openai",
            "gpt-5",
            PricePoint {
                effective_from: 100,
                effective_to: None,
                input_usd_per_1k: Decimal::ONE,
                output_usd_per_1k: Decimal::ONE,
            },
        );
        assert_eq!(book.cost(Some("openai"), Some("gpt-5"), 1, 1, 99), Ok(None));
        assert_eq!(
            book.resolve(Some("openai"), Some("gpt-5-2025-08-07")).as_deref(),
            Some("gpt-5")
        );
    }

    #[test]
    fn gateway_provider_uses_the_model_price() {
        let book = seed_book();
        let cost = book
            .cost(Some("openrouter"), Some("anthropic/claude-3-haiku"), 1000, 0, 0)
            .unwrap();
        assert_eq!(cost, Some(Decimal::from_str("0.00025").unwrap()));
    }

    #[test]
    fn normalize_folds_separators() {
        assert_eq!(normalize("Claude 3.5__Sonnet@2024"), "claude-3-5-sonnet-2024");
        assert_eq!(normalize("--x--"), "x");
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn point(input: Decimal, output: Decimal) -> PricePoint {
        PricePoint {
            effective_from: i64::MIN,
            effective_to: None,
            input_usd_per_1k: input,
            output_usd_per_1k: output,
        }
    }

    #[test]
    fn rust_decimal_rounds_silently() {
        // The premise of cost_of's own arithmetic: checked_mul and
        // checked_add return Some(rounded) rather than None.
        let x = dec("0.123456789012345");
        assert_eq!(x.checked_mul(x), Some(dec("0.0152415787532386691205623990")));
        let tiny = Decimal::from_i128_with_scale(1, 28);
        assert_eq!(
            tiny.checked_add(Decimal::from(1_000_000_000_000i64)),
            Some(Decimal::from(1_000_000_000_000i64))
        );
        // So does parsing text with too many digits.
        assert_eq!(dec("1.00000000000000000000000000001"), Decimal::ONE);
    }

    #[test]
    fn cost_that_needs_rounding_is_an_error() {
        let err = cost_of(&point(Decimal::from_i128_with_scale(1, 28), Decimal::ZERO), 1, 0).unwrap_err();
        assert!(matches!(err, CostError::NotExact { input_tokens: 1, .. }));
        let message = err.to_string();
        assert!(
            message.contains("does not fit an exact 28-digit decimal"),
            "{message}"
        );
        assert!(
            message.contains("1 input tokens at price 0.0000000000000000000000000001"),
            "{message}"
        );
        // The same price is fine where the tokens bring the scale back.
        assert_eq!(
            cost_of(
                &point(Decimal::from_i128_with_scale(1, 28), Decimal::ZERO),
                1000,
                0
            ),
            Ok(Decimal::from_i128_with_scale(1, 28))
        );
        // Each product fits, their sum would need 41 significant digits.
        let sum = cost_of(
            &point(Decimal::from_i128_with_scale(1, 25), dec("1000000")),
            1,
            i32::MAX.into(),
        );
        assert!(matches!(sum, Err(CostError::NotExact { .. })), "{sum:?}");
        // A product beyond 96 bits.
        assert!(matches!(
            cost_of(&point(Decimal::MAX, Decimal::ZERO), 2000, 0),
            Err(CostError::NotExact { .. })
        ));
        assert!(matches!(
            cost_of(&point(Decimal::MAX, Decimal::MAX), i64::MAX, i64::MAX),
            Err(CostError::NotExact { .. })
        ));
    }

    #[test]
    fn exact_costs_at_the_edges_of_the_range() {
        assert_eq!(
            cost_of(&point(Decimal::MAX, Decimal::ZERO), 1, 0)
                .unwrap()
                .to_string(),
            "79228162514264337593543950.335"
        );
        assert_eq!(
            cost_of(&point(Decimal::MAX, Decimal::ZERO), 1000, 0),
            Ok(Decimal::MAX)
        );
        // 2^62 tokens at 5^28 × 10^-28 USD per 1K: the raw product of the
        // mantissas overflows i128, yet the cost is exactly 2^34 / 1000.
        let price = Decimal::from_i128_with_scale(5i128.pow(28), 28);
        assert_eq!(
            cost_of(&point(price, price), 1 << 62, 0).unwrap().to_string(),
            "17179869.184"
        );
        assert_eq!(cost_of(&point(dec("-0.5"), dec("0.25")), 2, 4), Ok(Decimal::ZERO));
        assert_eq!(
            cost_of(&point(dec("1.000000"), dec("0")), 10, 7)
                .unwrap()
                .to_string(),
            "0.01"
        );
    }

    #[test]
    fn prices_are_validated() {
        for ok in [
            "0",
            "0.0025",
            "0.000000000001",
            "1000000",
            "1000000.000000000000",
            "-0",
        ] {
            assert_eq!(validate_price(&dec(ok)), Ok(()), "{ok}");
            assert_eq!(parse_price(ok), Ok(dec(ok)), "{ok}");
        }
        let refused = [
            ("-0.001", "negative"),
            ("0.0000000000001", "13 decimal places, the limit is 12"),
            ("1000000.000000000001", "exceeds the limit of 1000000 USD"),
            ("2000000", "exceeds the limit"),
        ];
        for (text, problem) in refused {
            let by_value = validate_price(&dec(text)).unwrap_err();
            assert!(by_value.contains(problem), "{text}: {by_value}");
            let by_text = parse_price(text).unwrap_err();
            assert!(by_text.contains(problem), "{text}: {by_text}");
        }
        // Text that Decimal::from_str would round to an acceptable value.
        assert!(parse_price("0.00000000000000000000000000001")
            .unwrap_err()
            .contains("29 decimal places"));
        assert!(parse_price("123456789012345678901234567890123")
            .unwrap_err()
            .contains("exceeds the limit"));
        assert_eq!(parse_price(" 0.50 "), Ok(dec("0.5")));
        assert_eq!(parse_price("00012.5"), Ok(dec("12.5")));
        for bad in ["", "abc", "NaN", "Infinity", "1e-5", "1.2.3", "--1", ".", "0x10"] {
            assert!(
                parse_price(bad).unwrap_err().contains("not a decimal number"),
                "{bad}"
            );
        }
    }

    #[test]
    fn point_releases_are_other_models() {
        let mut book = seed_book();
        let one = |book: &mut PriceBook, model: &str| {
            book.add_price("openai", model, point(Decimal::ONE, Decimal::ONE));
        };
        one(&mut book, "gpt-4");
        for (model, expected) in [
            ("gpt-4", Some("gpt-4")),
            ("gpt-4-0613", Some("gpt-4")),
            ("gpt-4-2024-04-09", Some("gpt-4")),
            ("gpt-4.1", None),
            ("gpt-4-1", None),
            ("gpt-4.1-2025-04-14", None),
            ("gpt-4.10", None),
            ("gpt-4-v2", Some("gpt-4")),
        ] {
            assert_eq!(
                book.resolve(Some("openai"), Some(model)).as_deref(),
                expected,
                "{model}"
            );
        }
        one(&mut book, "gpt-4.1");
        one(&mut book, "gpt-4o-2024-05-13");
        one(&mut book, "ft:gpt-4o-mini");
        for (model, expected) in [
            ("gpt-4.1", Some("gpt-4.1")),
            ("gpt-4-1", Some("gpt-4.1")),
            ("gpt-4.1-2025-04-14", Some("gpt-4.1")),
            ("gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
            ("gpt-4o-2024-08-06", Some("gpt-4o")),
            ("ft:gpt-4o-mini:org::abc", Some("ft:gpt-4o-mini")),
            ("openai/ft:gpt-4o-mini:org:name:abc", Some("ft:gpt-4o-mini")),
            ("ft:gpt-4o:org::abc", None),
            ("ft:gpt-4o-mini", Some("ft:gpt-4o-mini")),
        ] {
            assert_eq!(
                book.resolve(Some("openai"), Some(model)).as_deref(),
                expected,
                "{model}"
            );
        }
    }

    fn rates(input: &str, output: &str) -> ModelRates {
        ModelRates::input_output(dec(input), dec(output))
    }

    fn tiered(tier: ServiceTier, rates: ModelRates) -> TieredPricePoint {
        TieredPricePoint {
            effective_from: 0,
            effective_to: None,
            service_tier: tier,
            rates,
        }
    }

    #[test]
    fn cost_and_savings_come_from_one_price() {
        let mut book = PriceBook::default();
        let mut cached = rates("3", "15");
        cached.base.cache_read = Some(dec("0.3"));
        book.add_tiered_price("anthropic", "m", tiered(ServiceTier::Standard, cached));
        let usage = TokenUsage {
            input_tokens: 2000,
            output_tokens: 100,
            cache_read_tokens: 1500,
            ..TokenUsage::default()
        };
        let priced = book
            .cost_and_savings(Some("anthropic"), "m", &usage, 0, ServiceTier::Standard)
            .unwrap()
            .unwrap();
        // 500 uncached input at 3, 1500 cache reads at 0.3, 100 output at 15 (per 1k).
        assert_eq!(priced.0, dec("3.45"));
        assert_eq!(
            Ok(Some(priced.0)),
            book.cost_usage(Some("anthropic"), Some("m"), &usage, 0, ServiceTier::Standard)
        );
        // The 1500 cache reads at the input price (3) less what they cost (0.3).
        assert_eq!(priced.1, Some(dec("4.05")));
        // No price at that tier, or for that model: nothing.
        assert_eq!(
            book.cost_and_savings(Some("anthropic"), "m", &usage, 0, ServiceTier::Batch),
            Ok(None)
        );
        assert_eq!(
            book.cost_and_savings(Some("anthropic"), "other", &usage, 0, ServiceTier::Standard),
            Ok(None)
        );
    }

    #[test]
    fn service_tiers_never_fall_back_to_standard() {
        let mut book = PriceBook::default();
        book.add_tiered_price("openai", "m", tiered(ServiceTier::Standard, rates("2", "8")));
        book.add_tiered_price("openai", "m", tiered(ServiceTier::Batch, rates("1", "4")));
        let usage = TokenUsage::input_output(1000, 1000);
        let cost = |tier| {
            book.cost_usage(Some("openai"), Some("m"), &usage, 0, tier)
                .unwrap()
        };
        assert_eq!(cost(ServiceTier::Standard), Some(dec("10")));
        assert_eq!(cost(ServiceTier::Batch), Some(dec("5")));
        assert_eq!(cost(ServiceTier::Flex), None);
        assert_eq!(cost(ServiceTier::Priority), None);
        // A gateway uses the pricing provider's tiers.
        assert_eq!(
            book.cost_usage(
                Some("openrouter"),
                Some("openai/m"),
                &usage,
                0,
                ServiceTier::Batch
            ),
            Ok(Some(dec("5")))
        );
        assert_eq!(book.rows_in_force(0).len(), 2);
        assert_eq!(book.rows_in_force(-1).len(), 0);
    }

    #[test]
    fn class_prices_and_fallbacks() {
        let usage = TokenUsage {
            input_tokens: 1000,
            output_tokens: 500,
            cache_read_tokens: 100,
            cache_write_tokens: 200,
            cache_write_1h_tokens: 300,
            reasoning_tokens: 400,
        };
        // No class prices: everything at input/output.
        assert_eq!(cost_of_usage(&rates("1", "2"), &usage), Ok(dec("2")));
        let mut full = rates("1", "2");
        full.base.cache_read = Some(dec("0.1"));
        full.base.cache_write = Some(dec("1.25"));
        full.base.cache_write_1h = Some(dec("2"));
        full.base.reasoning = Some(dec("3"));
        // 400×1 + 100×0.1 + 200×1.25 + 300×2 + 100×2 + 400×3, per 1K
        assert_eq!(cost_of_usage(&full, &usage), Ok(dec("2.66")));
        full.context = Some(ContextTier {
            threshold_tokens: 999,
            above: ClassPriceOverrides {
                input: Some(dec("10")),
                reasoning: Some(dec("30")),
                ..ClassPriceOverrides::default()
            },
        });
        // Above T: input 10, reasoning 30, the rest keep their base prices.
        assert_eq!(cost_of_usage(&full, &usage), Ok(dec("17.06")));
        let mut partial = rates("1", "2");
        partial.context = full.context.clone();
        // Missing cache prices follow the above-T input, reasoning its own above-T price.
        // 1000×10 + 100×2 + 400×30, per 1K
        assert_eq!(cost_of_usage(&partial, &usage), Ok(dec("22.2")));
        assert_eq!(
            partial.applied(999),
            AppliedPrices {
                input: dec("1"),
                output: dec("2"),
                cache_read: dec("1"),
                cache_write: dec("1"),
                cache_write_1h: dec("1"),
                reasoning: dec("2"),
            }
        );
    }

    #[test]
    fn invalid_or_inexact_usage_is_an_error() {
        let bad = TokenUsage {
            input_tokens: 10,
            cache_read_tokens: 11,
            ..TokenUsage::default()
        };
        let err = cost_of_usage(&rates("1", "1"), &bad).unwrap_err();
        assert!(
            matches!(&err, CostError::InvalidUsage(e) if e.key == "cache_read_tokens"),
            "{err}"
        );
        let err = seed_book()
            .cost_usage(
                Some("openai"),
                Some("nothing-known"),
                &bad,
                0,
                ServiceTier::Standard,
            )
            .unwrap_err();
        assert!(matches!(err, CostError::InvalidUsage(_)));
        let usage = TokenUsage {
            input_tokens: 1,
            cache_write_1h_tokens: 1,
            ..TokenUsage::default()
        };
        let mut tiny = rates("0", "0");
        tiny.base.cache_write_1h = Some(Decimal::from_i128_with_scale(1, 28));
        let err = cost_of_usage(&tiny, &usage).unwrap_err();
        assert!(matches!(err, CostError::NotExactUsage(_)));
        assert!(
            err.to_string()
                .contains("1-hour cache write 0.0000000000000000000000000001"),
            "{err}"
        );
        // The 0.1 API keeps its own error.
        let mut book = PriceBook::default();
        book.add_price(
            "x",
            "m",
            point(Decimal::from_i128_with_scale(1, 28), Decimal::ZERO),
        );
        assert!(matches!(
            book.cost(Some("x"), Some("m"), 1, 0, 0),
            Err(CostError::NotExact { input_tokens: 1, .. })
        ));
    }

    #[test]
    fn tiers_and_rates_are_validated() {
        assert_eq!(ServiceTier::from_str(" Batch "), Ok(ServiceTier::Batch));
        assert_eq!(ServiceTier::from_str("default"), Ok(ServiceTier::Standard));
        assert!(ServiceTier::from_str("auto")
            .unwrap_err()
            .contains("standard, batch, flex, priority"));
        for tier in ServiceTier::ALL {
            assert_eq!(tier.as_str().parse(), Ok(tier));
        }
        let mut r = rates("1", "2");
        assert_eq!(r.validate(), Ok(()));
        r.base.cache_read = Some(dec("-1"));
        assert!(r
            .validate()
            .unwrap_err()
            .starts_with("cache_read: price -1 is negative"));
        r.base.cache_read = None;
        r.context = Some(ContextTier {
            threshold_tokens: 5,
            above: ClassPriceOverrides::default(),
        });
        assert!(r.validate().unwrap_err().contains("no above-threshold price"));
        r.context = Some(ContextTier {
            threshold_tokens: 5,
            above: ClassPriceOverrides {
                output: Some(dec("0.0000000000001")),
                ..ClassPriceOverrides::default()
            },
        });
        assert!(r.validate().unwrap_err().starts_with("above_output:"));
    }
}
