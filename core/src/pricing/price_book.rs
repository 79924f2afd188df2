//! The price book ([`PriceBook`]): the known models, their price history per
//! provider and service tier, and each provider's default model. It resolves
//! the model a request names and prices the request at the price in force.

use super::{
    check_tokens, cost_of_usage, matches_with_version_suffix, normalize, strip_wrappers, CostError,
    PricePoint, PriceRow, ServiceTier, TieredPricePoint,
};
use crate::usage::TokenUsage;
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::HashMap;

/// Maps keyed by model and provider names. Seeded per process (the names
/// looked up come from writers); looked up by `&str`, so pricing a row
/// allocates nothing when the names it carries are already canonical.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The known models, their prices over time and each provider's default model.
#[derive(Default, Debug)]
pub struct PriceBook {
    /// Lower-cased id → canonical id, for exact matches.
    exact: Map<String, String>,
    /// Normalized id → canonical id (the smallest canonical id when several
    /// normalize alike), for the 0.1 version-suffix rules.
    normalized: Map<String, String>,
    /// Canonical model → its price histories: (provider, tier, history
    /// ordered by effective_from), one per provider and tier that price it.
    prices: Map<String, Vec<(String, ServiceTier, Vec<TieredPricePoint>)>>,
    defaults: Map<String, String>,
}

/// A name trimmed and lower-cased, borrowed when it already is.
fn lowered(name: &str) -> Cow<'_, str> {
    let name = name.trim();
    if name.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_lowercase())
    }
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
        let histories = self.prices.entry(model.clone()).or_default();
        let at = histories
            .iter()
            .position(|(p, t, _)| *p == provider && *t == point.service_tier)
            .unwrap_or_else(|| {
                histories.push((provider, point.service_tier, Vec::new()));
                histories.len() - 1
            });
        let history = &mut histories[at].2;
        history.push(point);
        history.sort_by_key(|p| p.effective_from);
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
    /// [`pricing`](super) module docs for the rules).
    pub fn resolve(&self, provider: Option<&str>, model: Option<&str>) -> Option<&str> {
        let model = model.map(str::trim).unwrap_or("");
        if model.is_empty() {
            return self.defaults.get(lowered(provider?).as_ref()).map(String::as_str);
        }
        let lowered = lowered(model);
        // 1. An exact known id, with or without path prefixes.
        let mut id = lowered.as_ref();
        loop {
            if let Some(canonical) = self.exact.get(id.trim()) {
                return Some(canonical);
            }
            match id.split_once('/') {
                Some((_, rest)) => id = rest,
                None => break,
            }
        }
        // 2. A fine-tuned model is priced as its `ft:BASE` or not at all.
        if let Some(rest) = id.trim().strip_prefix("ft:") {
            let base = rest.split(':').next().unwrap_or("").trim();
            return self.exact.get(&format!("ft:{base}")).map(String::as_str);
        }
        // 3. The 0.1 rules: the longest known id extended by version suffixes.
        let candidate = normalize(strip_wrappers(&lowered));
        let mut end = candidate.len();
        loop {
            let prefix = &candidate[..end];
            if let Some(canonical) = self.normalized.get(prefix) {
                if matches_with_version_suffix(&candidate, prefix) {
                    return Some(canonical);
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
        let histories = self.prices.get(lowered(model).as_ref())?;
        let given = provider.map(lowered);
        let provider = match given.as_deref() {
            Some(p) if histories.iter().any(|(q, _, _)| q == p) => p,
            // A gateway reselling the model: the first provider by name.
            _ => histories.iter().map(|(q, _, _)| q.as_str()).min()?,
        };
        histories
            .iter()
            .find(|(p, t, _)| p == provider && *t == tier)?
            .2
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
            Some(canonical) => self.cost_and_savings(provider, canonical, usage, at, tier),
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
            .flat_map(|(model, histories)| {
                histories.iter().filter_map(move |(provider, tier, history)| {
                    let point = history.iter().rev().find(|p| p.in_force_at(at))?;
                    Some(PriceRow {
                        provider: provider.clone(),
                        model: model.clone(),
                        service_tier: *tier,
                        rates: point.rates.clone(),
                    })
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            (&a.provider, &a.model, a.service_tier).cmp(&(&b.provider, &b.model, b.service_tier))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::test_fixtures::{dec, point, rates, seed_book, SEED_PRICES};
    use crate::pricing::ModelRates;
    use std::str::FromStr;

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
                book.resolve(Some(provider), *model),
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
            book.resolve(Some("openai"), Some("gpt-5-2025-08-07")),
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
    fn a_gateway_takes_the_first_pricing_provider_by_name() {
        let mut book = PriceBook::default();
        // Added out of name order: the rule is by name, not by arrival.
        book.add_price("zeta", "shared-model", point(Decimal::TEN, Decimal::TEN));
        book.add_price("alpha", "shared-model", point(Decimal::ONE, Decimal::ONE));
        book.add_price("mid", "shared-model", point(Decimal::TWO, Decimal::TWO));
        let cost = |provider: &str| {
            book.cost(Some(provider), Some("shared-model"), 1000, 0, 0)
                .unwrap()
        };
        assert_eq!(cost("openrouter"), Some(Decimal::ONE));
        // A provider that prices the model keeps its own price.
        assert_eq!(cost("Zeta"), Some(Decimal::TEN));
        assert_eq!(cost("mid"), Some(Decimal::TWO));
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
            assert_eq!(book.resolve(Some("openai"), Some(model)), expected, "{model}");
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
            assert_eq!(book.resolve(Some("openai"), Some(model)), expected, "{model}");
        }
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
}
