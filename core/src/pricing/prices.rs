//! The price data: what one model costs per token class at one service tier
//! and from when ([`PricePoint`], [`TieredPricePoint`], [`ModelRates`] and
//! its parts, [`PriceRow`]), the service tiers, and which prices are
//! accepted ([`validate_price`], [`parse_price`] and their limits). Every
//! price is USD per 1,000 tokens.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// One price row from `model_pricing`, per 1,000 tokens: the 0.1 model
/// (standard tier, input and output only).
/// [`PriceBook::add_price`](super::PriceBook::add_price) takes it as a
/// [`TieredPricePoint`] with only those two classes.
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
        let tier = text.trim();
        if tier.eq_ignore_ascii_case("default") {
            return Ok(ServiceTier::Standard);
        }
        ServiceTier::ALL
            .into_iter()
            .find(|t| tier.eq_ignore_ascii_case(t.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = ServiceTier::ALL.iter().map(|t| t.as_str()).collect();
                format!("service tier {text:?} is not one of {}", names.join(", "))
            })
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
    pub(super) fn in_force_at(&self, at: i64) -> bool {
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
/// catalog import produces and what
/// [`PriceBook::rows_in_force`](super::PriceBook::rows_in_force) returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceRow {
    pub provider: String,
    pub model: String,
    pub service_tier: ServiceTier,
    pub rates: ModelRates,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::test_fixtures::{dec, rates};

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
