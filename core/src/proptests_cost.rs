//! Property tests for issue 14: usage documents in every provider shape
//! priced against an independent integer oracle, model resolution against a
//! naive scan, and the usage round trip.

use crate::pricing::{
    matches_with_version_suffix, normalize, strip_wrappers, ClassPriceOverrides, ClassPrices, ContextTier,
    ModelRates, PriceBook, ServiceTier, TieredPricePoint,
};
use crate::usage::{normalize_usage, TokenUsage};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// A price in pico-USD (1e-12 USD) per 1K tokens, within validate_price's bounds.
fn pico_price() -> impl Strategy<Value = i128> {
    prop_oneof![
        Just(0i128),
        0i128..=1_000_000_000,                     // up to 0.001 USD per 1K
        0i128..=1_000_000 * 1_000_000_000_000i128, // up to the limit
    ]
}

fn opt_price() -> impl Strategy<Value = Option<i128>> {
    prop::option::of(pico_price())
}

fn dec(pico: i128) -> Decimal {
    Decimal::from_i128_with_scale(pico, 12)
}

/// Rates as pico integers, the form the oracle computes with.
#[derive(Clone, Debug)]
struct PicoRates {
    input: i128,
    output: i128,
    cache_read: Option<i128>,
    cache_write: Option<i128>,
    cache_write_1h: Option<i128>,
    reasoning: Option<i128>,
    /// (threshold, above-T prices in class order)
    context: Option<(i64, [Option<i128>; 6])>,
}

fn pico_rates() -> impl Strategy<Value = PicoRates> {
    (
        pico_price(),
        pico_price(),
        opt_price(),
        opt_price(),
        opt_price(),
        opt_price(),
        prop::option::of((
            prop_oneof![0i64..=1_000, 0i64..=(1 << 29)],
            [
                opt_price(),
                opt_price(),
                opt_price(),
                opt_price(),
                opt_price(),
                opt_price(),
            ],
        )),
    )
        .prop_map(
            |(input, output, cache_read, cache_write, cache_write_1h, reasoning, context)| PicoRates {
                input,
                output,
                cache_read,
                cache_write,
                cache_write_1h,
                reasoning,
                context,
            },
        )
}

impl PicoRates {
    fn rates(&self) -> ModelRates {
        ModelRates {
            base: ClassPrices {
                input: dec(self.input),
                output: dec(self.output),
                cache_read: self.cache_read.map(dec),
                cache_write: self.cache_write.map(dec),
                cache_write_1h: self.cache_write_1h.map(dec),
                reasoning: self.reasoning.map(dec),
            },
            context: self.context.map(|(threshold_tokens, above)| ContextTier {
                threshold_tokens,
                above: ClassPriceOverrides {
                    input: above[0].map(dec),
                    output: above[1].map(dec),
                    cache_read: above[2].map(dec),
                    cache_write: above[3].map(dec),
                    cache_write_1h: above[4].map(dec),
                    reasoning: above[5].map(dec),
                },
            }),
        }
    }
}

/// What the request really consumed, per billing class, before any shape
/// is written: the oracle prices these.
#[derive(Clone, Copy, Debug)]
struct Billed {
    uncached: i64,
    read: i64,
    write_5m: i64,
    write_1h: i64,
    visible_output: i64,
    reasoning: i64,
}

impl Billed {
    fn input(&self) -> i64 {
        self.uncached + self.read + self.write_5m + self.write_1h
    }
}

/// The oracle: the contract's formula in i128 pico-USD × tokens, i.e. in
/// units of 1e-15 USD, written from the interface text, not from the pricing module.
fn oracle(rates: &PicoRates, billed: &Billed) -> i128 {
    let input_tokens = billed.input();
    let above = rates.context.filter(|(t, _)| input_tokens > *t).map(|(_, a)| a);
    let over = |class: usize| above.and_then(|a| a[class]);
    let input = over(0).unwrap_or(rates.input);
    let output = over(1).unwrap_or(rates.output);
    let cache_read = over(2).or(rates.cache_read).unwrap_or(input);
    let cache_write = over(3).or(rates.cache_write).unwrap_or(input);
    let cache_write_1h = over(4).or(rates.cache_write_1h).unwrap_or(input);
    let reasoning = over(5).or(rates.reasoning).unwrap_or(output);
    i128::from(billed.uncached) * input
        + i128::from(billed.read) * cache_read
        + i128::from(billed.write_5m) * cache_write
        + i128::from(billed.write_1h) * cache_write_1h
        + i128::from(billed.visible_output) * output
        + i128::from(billed.reasoning) * reasoning
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Canonical,
    Chat,
    Responses,
    Anthropic,
    Gemini,
    OTel,
}

fn count() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), 0i64..=2_000, 0i64..=(1 << 28)]
}

/// A usage document of a random shape and the tokens it bills.
fn document() -> impl Strategy<Value = (Shape, Value, Billed)> {
    let shape = prop::sample::select(vec![
        Shape::Canonical,
        Shape::Chat,
        Shape::Responses,
        Shape::Anthropic,
        Shape::Gemini,
        Shape::OTel,
    ]);
    (
        shape,
        [count(), count(), count(), count(), count(), count()],
        any::<[bool; 3]>(),
    )
        .prop_map(|(shape, [a, b, c, d, e, f], flags)| {
            let mut billed = Billed {
                uncached: a,
                read: b,
                write_5m: c,
                write_1h: d,
                visible_output: e,
                reasoning: f,
            };
            let doc = match shape {
                Shape::Canonical => json!({
                    "input_tokens": billed.input(), "output_tokens": e + f,
                    "cache_read_tokens": b, "cache_write_tokens": c, "cache_write_1h_tokens": d,
                    "reasoning_tokens": f,
                }),
                Shape::Chat => {
                    (billed.write_5m, billed.write_1h) = (0, 0);
                    if flags[0] {
                        json!({"prompt_tokens": a + b, "completion_tokens": e + f, "total_tokens": a + b + e + f,
                               "prompt_tokens_details": {"cached_tokens": b, "audio_tokens": 0},
                               "completion_tokens_details": {"reasoning_tokens": f}})
                    } else {
                        // DeepSeek's spelling of the cache hits.
                        json!({"prompt_tokens": a + b, "completion_tokens": e + f,
                               "prompt_cache_hit_tokens": b, "prompt_cache_miss_tokens": a,
                               "completion_tokens_details": {"reasoning_tokens": f}})
                    }
                }
                Shape::Responses => {
                    (billed.write_5m, billed.write_1h) = (0, 0);
                    json!({"input_tokens": a + b, "output_tokens": e + f, "total_tokens": a + b + e + f,
                           "input_tokens_details": {"cached_tokens": b},
                           "output_tokens_details": {"reasoning_tokens": f}})
                }
                Shape::Anthropic => {
                    billed.reasoning = 0;
                    if flags[1] {
                        json!({"input_tokens": a, "output_tokens": e, "cache_read_input_tokens": b,
                               "cache_creation_input_tokens": c + d,
                               "cache_creation": {"ephemeral_5m_input_tokens": c, "ephemeral_1h_input_tokens": d},
                               "service_tier": "standard"})
                    } else {
                        // Without the split every write is a 5-minute write.
                        billed.write_5m = c + d;
                        billed.write_1h = 0;
                        json!({"input_tokens": a, "output_tokens": e, "cache_read_input_tokens": b,
                               "cache_creation_input_tokens": c + d})
                    }
                }
                Shape::Gemini => {
                    (billed.write_5m, billed.write_1h) = (0, 0);
                    // Part of the uncached input arrives as tool-use prompt tokens.
                    let tool = a / 3;
                    json!({"promptTokenCount": a - tool + b, "toolUsePromptTokenCount": tool,
                           "cachedContentTokenCount": b, "candidatesTokenCount": e, "thoughtsTokenCount": f,
                           "totalTokenCount": a + b + e + f})
                }
                Shape::OTel => {
                    billed.write_1h = 0;
                    let write_key = if flags[2] {
                        "gen_ai.usage.cache_creation.input_tokens"
                    } else {
                        "gen_ai.usage.cache_write.input_tokens"
                    };
                    let mut doc = json!({"gen_ai.usage.input_tokens": a + b + c,
                           "gen_ai.usage.output_tokens": e + f,
                           "gen_ai.usage.cache_read.input_tokens": b,
                           "gen_ai.usage.reasoning.output_tokens": f,
                           "gen_ai.request.model": "whatever"});
                    doc[write_key] = json!(c);
                    doc
                }
            };
            (shape, doc, billed)
        })
}

fn book_with(tiers: &[(ServiceTier, ModelRates)]) -> PriceBook {
    let mut book = PriceBook::default();
    for (tier, rates) in tiers {
        book.add_tiered_price(
            "acme",
            "model-x",
            TieredPricePoint {
                effective_from: 0,
                effective_to: None,
                service_tier: *tier,
                rates: rates.clone(),
            },
        );
    }
    book
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Every shape, every class, context tiers, service tiers and fallbacks:
    /// the cost equals the integer oracle exactly.
    #[test]
    fn cost_matches_the_integer_oracle(
        (shape, doc, billed) in document(),
        mut standard in pico_rates(),
        snap in 0i64..6,
        batch in prop::option::of(pico_rates()),
        flex in prop::option::of(pico_rates()),
        tier in prop::sample::select(ServiceTier::ALL.to_vec()),
    ) {
        let usage = normalize_usage(Some("acme"), &doc)
            .map_err(|e| TestCaseError::fail(format!("{shape:?} {doc}: {e}")))?;
        prop_assert_eq!(usage.input_tokens, billed.input());
        // Often put the threshold right at the input, or one token either side.
        if let (Some((threshold, _)), 0..=2) = (standard.context.as_mut(), snap) {
            *threshold = (billed.input() + snap - 1).max(0);
        }
        let mut tiers = vec![(ServiceTier::Standard, standard.rates())];
        tiers.extend(batch.as_ref().map(|r| (ServiceTier::Batch, r.rates())));
        tiers.extend(flex.as_ref().map(|r| (ServiceTier::Flex, r.rates())));
        let book = book_with(&tiers);
        let cost = book.cost_usage(Some("acme"), Some("model-x"), &usage, 0, tier).unwrap();
        let expected = match tier {
            ServiceTier::Standard => Some(&standard),
            ServiceTier::Batch => batch.as_ref(),
            ServiceTier::Flex => flex.as_ref(),
            ServiceTier::Priority => None,
        }
        .map(|rates| Decimal::from_i128_with_scale(oracle(rates, &billed), 15).normalize());
        prop_assert_eq!(cost, expected, "{:?} {} at {:?}", shape, doc, tier);
        // A gateway provider is priced the same; before the first row nothing is.
        prop_assert_eq!(book.cost_usage(Some("gateway"), Some("Model-X"), &usage, 0, tier).unwrap(), expected);
        prop_assert_eq!(book.cost_usage(Some("acme"), Some("model-x"), &usage, -1, tier).unwrap(), None);
    }

    /// The 0.1 API is cost_usage with only input and output, standard tier.
    #[test]
    fn cost_is_cost_usage_with_two_classes(
        rates in pico_rates(),
        input in 0i64..=i64::from(i32::MAX),
        output in 0i64..=i64::from(i32::MAX),
    ) {
        let book = book_with(&[(ServiceTier::Standard, rates.rates())]);
        let old = book.cost(Some("acme"), Some("model-x"), input, output, 0);
        let new = book.cost_usage(
            Some("acme"), Some("model-x"), &TokenUsage::input_output(input, output), 0, ServiceTier::Standard);
        prop_assert_eq!(&old, &new);
        let billed = Billed { uncached: input, read: 0, write_5m: 0, write_1h: 0, visible_output: output, reasoning: 0 };
        prop_assert_eq!(old.unwrap(), Some(Decimal::from_i128_with_scale(oracle(&rates, &billed), 15).normalize()));
    }

    /// The canonical document of a valid usage reads back as itself.
    #[test]
    fn canonical_json_round_trips(
        (_, doc, _) in document(),
    ) {
        let usage = normalize_usage(None, &doc).unwrap();
        prop_assert_eq!(normalize_usage(None, &usage.to_canonical_json()), Ok(usage));
    }

    /// Normalization never panics and whatever it accepts is valid and
    /// within the column bounds.
    #[test]
    fn normalized_usage_is_valid(doc in usage_like_json()) {
        if let Ok(usage) = normalize_usage(Some("x"), &doc) {
            prop_assert!(usage.validate().is_ok());
            for (_, value) in usage.classes() {
                prop_assert!((0..=crate::usage::MAX_TOKENS).contains(&value));
            }
        }
    }

    /// Resolution with its hash indexes agrees with a naive scan of every
    /// known id.
    #[test]
    fn resolution_agrees_with_a_naive_scan(
        known in prop::collection::vec(model_id(), 0..24),
        queries in prop::collection::vec(query(), 1..24),
    ) {
        let mut book = PriceBook::default();
        for id in &known {
            book.add_price("p", id, crate::pricing::PricePoint {
                effective_from: 0, effective_to: None,
                input_usd_per_1k: Decimal::ONE, output_usd_per_1k: Decimal::ONE,
            });
        }
        let known: Vec<String> = known.iter().map(|k| k.trim().to_lowercase()).collect();
        let queries = queries.into_iter().chain(known.iter().flat_map(|k| {
            [k.clone(), format!("{k}-2024-08-06"), format!("{k}.1"), format!("openai/{}", k.to_uppercase()),
             format!("{k}:org::abc")]
        }));
        for q in queries {
            prop_assert_eq!(book.resolve(Some("p"), Some(&q)).map(str::to_owned), naive_resolve(&known, &q), "query {:?}", q);
        }
    }
}

/// Documents that look like usage: known keys with good and bad values.
fn usage_like_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "reasoning_tokens",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "promptTokenCount",
        "cachedContentTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "prompt_cache_hit_tokens",
        "other",
    ]);
    let value = prop_oneof![
        (0i64..=3000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(2147483647)),
        Just(json!(1.5)),
        Just(json!("12")),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!({"cached_tokens": 5, "reasoning_tokens": 7})),
        Just(json!({"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 9})),
    ];
    let details = prop::sample::select(vec![
        "prompt_tokens_details",
        "completion_tokens_details",
        "input_tokens_details",
        "output_tokens_details",
        "cache_creation",
    ]);
    (
        prop::collection::btree_map(key, value.clone(), 0..8),
        prop::collection::btree_map(details, value, 0..3),
    )
        .prop_map(|(a, b)| {
            Value::Object(
                a.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .chain(b.into_iter().map(|(k, v)| (k.to_string(), v)))
                    .collect(),
            )
        })
}

/// Model ids built from the pieces real ids are made of.
fn model_id() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "gpt", "4", "4o", "1", "5", "mini", "claude", "3", "sonnet", "2024", "08", "06", "0125", "002",
        "latest", "v2", "pro", "Flash",
    ]);
    let sep = prop::sample::select(vec!["-", ".", "_", "-"]);
    (
        prop::option::of(Just("ft:")),
        piece.clone(),
        prop::collection::vec((sep, piece), 0..4),
    )
        .prop_map(|(ft, first, rest)| {
            let mut id = format!("{}{first}", ft.unwrap_or(""));
            for (sep, piece) in rest {
                id.push_str(sep);
                id.push_str(piece);
            }
            id
        })
}

fn query() -> impl Strategy<Value = String> {
    let wrapper = prop::sample::select(vec![
        "",
        "",
        "openai/",
        "models/",
        "openai:",
        "us.anthropic.",
        "a/b/",
        " ",
    ]);
    let tail = prop::sample::select(vec!["", "", ":org::x1", ":0", "-latest", "-20241022", " "]);
    (wrapper, model_id(), tail).prop_map(|(w, id, t)| format!("{w}{id}{t}"))
}

/// The resolution rules as a plain scan over every known id.
fn naive_resolve(known: &[String], model: &str) -> Option<String> {
    let lowered = model.trim().to_lowercase();
    if lowered.is_empty() {
        return None;
    }
    // Exact, with any number of leading path segments dropped.
    let mut id = lowered.as_str();
    loop {
        if let Some(k) = known.iter().find(|k| k.as_str() == id.trim()) {
            return Some(k.clone());
        }
        match id.split_once('/') {
            Some((_, rest)) => id = rest,
            None => break,
        }
    }
    if let Some(rest) = id.trim().strip_prefix("ft:") {
        let base = format!("ft:{}", rest.split(':').next().unwrap_or("").trim());
        return known.iter().find(|k| **k == base).cloned();
    }
    let candidate = normalize(strip_wrappers(&lowered));
    known
        .iter()
        .filter(|k| matches_with_version_suffix(&candidate, &normalize(k)))
        .min_by(|a, b| normalize(b).len().cmp(&normalize(a).len()).then_with(|| a.cmp(b)))
        .cloned()
}
