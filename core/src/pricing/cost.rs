//! Exact cost arithmetic: the cost of a request's token classes at given
//! rates ([`cost_of_usage`]) or of input and output tokens at a 0.1 price
//! ([`cost_of`]), computed on scaled `i128` integers so that every cost is
//! exact or a [`CostError`], never rounded.

use super::{AppliedPrices, ModelRates, PricePoint};
use crate::usage::{TokenUsage, UsageError};
use rust_decimal::Decimal;
use std::fmt;

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

/// Exact cost of a request's token classes at the given rates (see the
/// [`pricing`](super) module docs), trailing zeros removed. The usage must be valid
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
    let total = match at_common_scale(&terms) {
        Some(total) => total,
        None => {
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
        }
    };
    total
        .to_decimal()
        .ok_or_else(|| CostError::NotExactUsage(Box::new((*usage, prices))))
}

/// Σ price × tokens / 1000 with every term at the largest price scale: one
/// multiplication per class that has tokens, no division (this runs for
/// every row written). `None` when that could overflow i128; the caller
/// then works term by term, dividing out common factors first. Both give
/// the same value, and `to_decimal` the same decimal.
fn at_common_scale(terms: &[(Decimal, i64)]) -> Option<Scaled> {
    let priced = || {
        terms
            .iter()
            .filter(|(price, tokens)| *tokens != 0 && !price.is_zero())
    };
    let Some(scale) = priced().map(|(price, _)| price.scale()).max() else {
        return Some(Scaled {
            mantissa: 0,
            scale: 0,
        });
    };
    let mut sum: i128 = 0;
    for (price, tokens) in priced() {
        let aligned = price
            .mantissa()
            .checked_mul(10i128.checked_pow(scale - price.scale())?)?;
        sum = sum.checked_add(aligned.checked_mul(i128::from(*tokens))?)?;
    }
    Some(Scaled {
        mantissa: sum,
        scale: scale + 3,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The term-by-term sum, what `cost_of_usage` falls back to.
    fn term_by_term(terms: &[(Decimal, i64)]) -> Option<Decimal> {
        let mut total = Scaled {
            mantissa: 0,
            scale: 0,
        };
        for (price, tokens) in terms {
            total = total.checked_add(Scaled::of(*price).per_thousand_times(*tokens)?)?;
        }
        total.to_decimal()
    }

    proptest! {
        /// The common-scale sum gives the term-by-term sum's decimal
        /// exactly, whenever it does not overflow.
        #[test]
        fn common_scale_sum_equals_term_by_term(
            terms in prop::collection::vec(
                ((0u64..u64::MAX, 0u32..=28).prop_map(|(m, s)| Decimal::from_i128_with_scale(i128::from(m >> (m % 64)), s)),
                 prop_oneof![Just(0i64), 0i64..=i64::from(i32::MAX)]),
                0..6)
        ) {
            if let Some(quick) = at_common_scale(&terms) {
                prop_assert_eq!(quick.to_decimal(), term_by_term(&terms));
            }
        }
    }

    use crate::pricing::test_fixtures::{dec, point, rates, seed_book};
    use crate::pricing::{ClassPriceOverrides, ContextTier, PriceBook, ServiceTier};

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
}
