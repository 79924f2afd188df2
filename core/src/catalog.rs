//! Import of LiteLLM's `model_prices_and_context_window.json` price catalog.
//!
//! # What is read
//! The document is one JSON object: model key → entry object. An entry is
//! imported when
//! * its `litellm_provider` (lower-cased) is one of [`IMPORTED_PROVIDERS`]:
//!   `openai`, `text-completion-openai` (→ `openai`), `anthropic`, `gemini`
//!   (→ `google`), `perplexity`, `mistral`, `deepseek`, `xai`. Every other
//!   provider (`azure`, `bedrock*`, `vertex_ai-*`, `openrouter`, …) is skipped:
//!   they resell the same model ids at their own prices (Vertex AI's
//!   `gemini-2.5-pro` and Google AI's `gemini/gemini-2.5-pro` would both be
//!   google/gemini-2.5-pro), and a price under a gateway's name would become
//!   the price of every gateway request for that model;
//! * its `mode` is `chat`, `completion` or `responses`;
//! * the model id — the key without a leading `<litellm_provider>/`,
//!   lower-cased — contains no `/` (Perplexity's `perplexity/openai/gpt-5`
//!   resells another provider's model);
//! * it has `input_cost_per_token` and `output_cost_per_token`.
//!
//! Price keys, per token in the catalog, stored per 1,000 tokens:
//! `input_cost_per_token`, `output_cost_per_token`,
//! `cache_read_input_token_cost`, `cache_creation_input_token_cost` (5-minute
//! writes), `cache_creation_input_token_cost_above_1hr` (1-hour writes),
//! `output_cost_per_reasoning_token`, each optionally followed by
//! `_above_<N>k_tokens` (context tier, threshold N × 1000 input tokens) and
//! then by `_batches`, `_flex` or `_priority` (service tier). Other keys
//! (audio, image, per-request, `_cache_hit`, `_above_12hr`, `_ultrafast`, …)
//! are ignored. A tier exists when the entry has its input and output
//! prices; above-T prices of a tier apply only to that tier.
//!
//! # Exactness
//! Numbers are read from their JSON text (the document is parsed with
//! `serde_json::value::RawValue`, never through `f64`), so `1.5e-06` is
//! exactly 0.0000015 USD per token = 0.0015 per 1K. The workspace does not
//! enable serde_json's `arbitrary_precision` (it would change
//! `serde_json::Number` for the extension and the exporter too). A
//! Postgres `jsonb` value keeps numbers exact, so the extension passes
//! `catalog::text` here, not a `serde_json::Value`.
//!
//! # Refused or skipped
//! A document in the wrong format is refused whole ([`CatalogError`], naming
//! the key): not a JSON object, an entry that is not an object, a
//! `litellm_provider` or `mode` that is not a string, or (in an entry that is
//! otherwise imported) a price key whose value is not a JSON number. An
//! entry that is well-formed but cannot be imported is skipped with a reason
//! ([`Skipped`]): other provider or mode, no input/output price, a price
//! beyond [`validate_price`]'s bounds (negative, more than 12 decimals per
//! 1K, above 1,000,000 USD per 1K), several context thresholds, or a
//! duplicate. Duplicates (`deepseek-chat` and `deepseek/deepseek-chat`, both
//! deepseek/deepseek-chat): the entry whose key carries the provider prefix
//! wins; the other is skipped either way (its reason says whether its prices
//! differed).

use crate::pricing::{
    validate_price, ClassPriceOverrides, ClassPrices, ContextTier, ModelRates, PriceRow, ServiceTier,
};
use rust_decimal::Decimal;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// `litellm_provider` → provider stored in `model_pricing`.
pub const IMPORTED_PROVIDERS: &[(&str, &str)] = &[
    ("openai", "openai"),
    ("text-completion-openai", "openai"),
    ("anthropic", "anthropic"),
    ("gemini", "google"),
    ("perplexity", "perplexity"),
    ("mistral", "mistral"),
    ("deepseek", "deepseek"),
    ("xai", "xai"),
];

/// The modes priced per token.
pub const IMPORTED_MODES: &[&str] = &["chat", "completion", "responses"];

/// The document was refused whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogError {
    /// The offending key (`entry` or `entry.field`), empty for the document.
    pub key: String,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "price catalog: {}", self.message)
        } else {
            write!(f, "price catalog key \"{}\": {}", self.key, self.message)
        }
    }
}

impl std::error::Error for CatalogError {}

fn refuse(key: impl Into<String>, message: impl Into<String>) -> CatalogError {
    CatalogError {
        key: key.into(),
        message: message.into(),
    }
}

/// An entry (or one service tier of it, `tier` set) that was not imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub key: String,
    pub tier: Option<ServiceTier>,
    pub reason: String,
}

/// The rows of an import and what was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogImport {
    /// One row per (provider, model, service tier), sorted by provider,
    /// model, tier; model ids lower-cased.
    pub rows: Vec<PriceRow>,
    /// Entries (`tier: None`) and single tiers of imported entries that were
    /// left out, sorted by key.
    pub skipped: Vec<Skipped>,
}

impl CatalogImport {
    /// Entries skipped whole (the `skipped` of the import summary).
    pub fn skipped_entries(&self) -> usize {
        self.skipped.iter().filter(|s| s.tier.is_none()).count()
    }
}

/// (class, context threshold in tokens, service tier) of a price key.
type PriceKey = (Class, Option<i64>, ServiceTier);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Input,
    Output,
    CacheRead,
    CacheWrite,
    CacheWrite1h,
    Reasoning,
}

/// Longest first, so `…_above_1hr` is tried before its prefix.
const CLASS_KEYS: &[(&str, Class)] = &[
    ("cache_creation_input_token_cost_above_1hr", Class::CacheWrite1h),
    ("cache_creation_input_token_cost", Class::CacheWrite),
    ("cache_read_input_token_cost", Class::CacheRead),
    ("output_cost_per_reasoning_token", Class::Reasoning),
    ("input_cost_per_token", Class::Input),
    ("output_cost_per_token", Class::Output),
];

/// (class, threshold in tokens, tier) of a price key, `None` for keys that
/// are not per-token prices of the six classes.
fn parse_price_key(key: &str) -> Option<PriceKey> {
    CLASS_KEYS.iter().find_map(|(prefix, class)| {
        let rest = key.strip_prefix(prefix)?;
        let (rest, tier) = [
            ("_batches", ServiceTier::Batch),
            ("_flex", ServiceTier::Flex),
            ("_priority", ServiceTier::Priority),
        ]
        .iter()
        .find_map(|(suffix, tier)| rest.strip_suffix(suffix).map(|r| (r, *tier)))
        .unwrap_or((rest, ServiceTier::Standard));
        if rest.is_empty() {
            return Some((*class, None, tier));
        }
        let thousands = rest.strip_prefix("_above_")?.strip_suffix("k_tokens")?;
        if thousands.is_empty() || thousands.len() > 9 || !thousands.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((*class, Some(thousands.parse::<i64>().ok()? * 1000), tier))
    })
}

/// A JSON number's text as an exact Decimal: `0.0000025`, `2.5e-06`, `1E3`,
/// `-0.5`. Refuses text that is not a JSON number and values no Decimal
/// holds exactly (more than 28 decimals, more than 96 bits).
pub fn parse_json_decimal(text: &str) -> Result<Decimal, String> {
    let bad = || format!("{text:?} is not a JSON number");
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa_text, exponent) = match body.find(['e', 'E']) {
        Some(at) => {
            let exp = &body[at + 1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let digits = digits.trim_start_matches('0');
            if digits.len() > 4 {
                return Err(format!("{text}: exponent out of range"));
            }
            let value: i64 = if digits.is_empty() {
                0
            } else {
                digits.parse().map_err(|_| bad())?
            };
            (&body[..at], if exp.starts_with('-') { -value } else { value })
        }
        None => (body, 0),
    };
    let (whole, fraction) = match mantissa_text.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return Err(bad()),
        None => (mantissa_text, ""),
    };
    let json_int = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (whole == "0" || !whole.starts_with('0'));
    if !json_int || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // value = digits × 10^(exponent − fraction.len())
    let mut digits: String = format!("{whole}{fraction}").trim_start_matches('0').to_string();
    let mut scale = fraction.len() as i64 - exponent;
    while digits.ends_with('0') {
        digits.pop();
        scale -= 1;
    }
    if digits.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let too_big = || format!("{text} does not fit an exact 28-digit decimal");
    if digits.len() > 29 {
        return Err(too_big());
    }
    let mut mantissa: i128 = digits.parse().map_err(|_| bad())?;
    if scale < 0 {
        let factor = 10i128.checked_pow(u32::try_from(-scale).map_err(|_| too_big())?);
        mantissa = factor.and_then(|f| mantissa.checked_mul(f)).ok_or_else(too_big)?;
        scale = 0;
    }
    let scale = u32::try_from(scale).map_err(|_| too_big())?;
    if negative {
        mantissa = -mantissa;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| too_big())
}

/// USD per token → USD per 1,000 tokens, exactly.
pub fn per_token_to_per_1k(per_token: Decimal) -> Option<Decimal> {
    let (mantissa, scale) = (per_token.mantissa(), per_token.scale());
    if scale >= 3 {
        Decimal::try_from_i128_with_scale(mantissa, scale - 3).ok()
    } else {
        let m = mantissa.checked_mul(10i128.pow(3 - scale))?;
        Decimal::try_from_i128_with_scale(m, 0).ok()
    }
    .map(|d| d.normalize())
}

fn string_field(
    entry: &BTreeMap<String, Box<RawValue>>,
    key: &str,
    field: &str,
) -> Result<Option<String>, CatalogError> {
    match entry.get(field) {
        None => Ok(None),
        Some(raw) => match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(serde_json::Value::String(s)) => Ok(Some(s)),
            Ok(serde_json::Value::Null) => Ok(None),
            _ => Err(refuse(format!("{key}.{field}"), "must be a string")),
        },
    }
}

/// Parses a LiteLLM catalog (see the module docs).
pub fn parse_litellm(text: &str) -> Result<CatalogImport, CatalogError> {
    let document: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text)
        .map_err(|e| refuse("", format!("must be a JSON object of model entries ({e})")))?;
    let mut skipped = Vec::new();
    // (provider, model) → (key, has provider prefix, rows)
    let mut chosen: BTreeMap<(String, String), (String, bool, Vec<PriceRow>)> = BTreeMap::new();
    for (key, raw) in &document {
        let entry: BTreeMap<String, Box<RawValue>> = serde_json::from_str(raw.get())
            .map_err(|_| refuse(key.as_str(), "the entry must be a JSON object"))?;
        let litellm_provider = string_field(&entry, key, "litellm_provider")?;
        let mode = string_field(&entry, key, "mode")?;
        let mut skip = |reason: String| {
            skipped.push(Skipped {
                key: key.clone(),
                tier: None,
                reason,
            })
        };
        let Some(litellm_provider) = litellm_provider.map(|p| p.trim().to_lowercase()) else {
            skip("no litellm_provider".into());
            continue;
        };
        let Some(&(_, provider)) = IMPORTED_PROVIDERS.iter().find(|(p, _)| *p == litellm_provider) else {
            skip(format!("provider {litellm_provider:?} is not imported"));
            continue;
        };
        let mode = mode.unwrap_or_default();
        if !IMPORTED_MODES.contains(&mode.as_str()) {
            skip(format!("mode {mode:?} is not priced per token"));
            continue;
        }
        let lowered = key.trim().to_lowercase();
        let prefix = format!("{litellm_provider}/");
        let prefixed = lowered.starts_with(&prefix);
        let model = lowered.strip_prefix(&prefix).unwrap_or(&lowered).to_string();
        if model.is_empty() || model.contains('/') {
            skip(format!(
                "model id {model:?} names a model resold through {litellm_provider}"
            ));
            continue;
        }
        let rates = match entry_rates(key, &entry)? {
            Ok(rates) => rates,
            Err(reason) => {
                skip(reason);
                continue;
            }
        };
        let mut rows = Vec::new();
        for (tier, result) in rates {
            match result {
                Ok(rates) => rows.push(PriceRow {
                    provider: provider.to_string(),
                    model: model.clone(),
                    service_tier: tier,
                    rates,
                }),
                Err(reason) => skipped.push(Skipped {
                    key: key.clone(),
                    tier: Some(tier),
                    reason,
                }),
            }
        }
        let slot = (provider.to_string(), model.clone());
        match chosen.get(&slot) {
            None => {
                chosen.insert(slot, (key.clone(), prefixed, rows));
            }
            Some((other_key, other_prefixed, other_rows)) => {
                let same = *other_rows == rows;
                let (winner, loser_key) = if prefixed && !other_prefixed {
                    (key.clone(), other_key.clone())
                } else {
                    (other_key.clone(), key.clone())
                };
                let reason = if same {
                    format!("duplicate of {winner:?} ({provider}/{model}) with the same prices")
                } else {
                    format!(
                        "duplicate of {winner:?} ({provider}/{model}) with different prices; the \
                         provider-prefixed entry wins"
                    )
                };
                skipped.push(Skipped {
                    key: loser_key,
                    tier: None,
                    reason,
                });
                if winner == *key {
                    chosen.insert(slot, (key.clone(), prefixed, rows));
                }
            }
        }
    }
    let mut rows: Vec<PriceRow> = chosen.into_values().flat_map(|(_, _, rows)| rows).collect();
    rows.sort_by(|a, b| {
        (&a.provider, &a.model, a.service_tier).cmp(&(&b.provider, &b.model, b.service_tier))
    });
    skipped.sort_by(|a, b| (&a.key, a.tier).cmp(&(&b.key, b.tier)));
    Ok(CatalogImport { rows, skipped })
}

type TierRates = Vec<(ServiceTier, Result<ModelRates, String>)>;

/// The rates of one entry per tier. Outer error: the document is refused;
/// middle error: the entry is skipped; inner error: that tier is skipped.
fn entry_rates(
    key: &str,
    entry: &BTreeMap<String, Box<RawValue>>,
) -> Result<Result<TierRates, String>, CatalogError> {
    let mut prices: BTreeMap<(ServiceTier, Option<i64>, Class), Decimal> = BTreeMap::new();
    let mut thresholds = BTreeSet::new();
    for (field, raw) in entry {
        let Some((class, threshold, tier)) = parse_price_key(field) else {
            continue;
        };
        let per_token = parse_json_decimal(raw.get().trim())
            .map_err(|e| refuse(format!("{key}.{field}"), format!("must be a number: {e}")))?;
        let Some(per_1k) = per_token_to_per_1k(per_token) else {
            return Ok(Err(format!(
                "{field} {per_token} per token has no exact price per 1K tokens"
            )));
        };
        if let Err(e) = validate_price(&per_1k) {
            return Ok(Err(format!("{field}: {e} (per 1K tokens)")));
        }
        if let Some(t) = threshold {
            thresholds.insert(t);
        }
        prices.insert((tier, threshold, class), per_1k);
    }
    if thresholds.len() > 1 {
        return Ok(Err(format!(
            "several context thresholds ({}) are not supported",
            thresholds
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let threshold = thresholds.first().copied();
    let get = |tier, above: bool, class| {
        prices
            .get(&(tier, if above { threshold } else { None }, class))
            .copied()
            .filter(|_| !above || threshold.is_some())
    };
    if get(ServiceTier::Standard, false, Class::Input).is_none()
        || get(ServiceTier::Standard, false, Class::Output).is_none()
    {
        return Ok(Err("no input_cost_per_token and output_cost_per_token".into()));
    }
    let mut tiers = Vec::new();
    for tier in ServiceTier::ALL {
        let (input, output) = (get(tier, false, Class::Input), get(tier, false, Class::Output));
        let rates = match (input, output) {
            (None, None) => continue,
            (Some(input), Some(output)) => {
                let above = ClassPriceOverrides {
                    input: get(tier, true, Class::Input),
                    output: get(tier, true, Class::Output),
                    cache_read: get(tier, true, Class::CacheRead),
                    cache_write: get(tier, true, Class::CacheWrite),
                    cache_write_1h: get(tier, true, Class::CacheWrite1h),
                    reasoning: get(tier, true, Class::Reasoning),
                };
                Ok(ModelRates {
                    base: ClassPrices {
                        input,
                        output,
                        cache_read: get(tier, false, Class::CacheRead),
                        cache_write: get(tier, false, Class::CacheWrite),
                        cache_write_1h: get(tier, false, Class::CacheWrite1h),
                        reasoning: get(tier, false, Class::Reasoning),
                    },
                    context: threshold
                        .filter(|_| !above.is_empty())
                        .map(|threshold_tokens| ContextTier {
                            threshold_tokens,
                            above,
                        }),
                })
            }
            (Some(_), None) => Err(format!("{tier} tier has an input price but no output price")),
            (None, Some(_)) => Err(format!("{tier} tier has an output price but no input price")),
        };
        tiers.push((tier, rates));
    }
    Ok(Ok(tiers))
}

/// How an import changes one model's prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// No price in force for this (provider, model) at any tier.
    Added,
    /// Some tier's prices differ, a tier is new, or a tier in force is not
    /// in the import.
    Changed,
    Unchanged,
}

/// One imported model, compared with the prices in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDiff {
    pub provider: String,
    pub model: String,
    pub change: Change,
    /// The imported rows of this model, one per tier. For `Added` and
    /// `Changed`, the extension inserts all of them from `effective_from`.
    pub rows: Vec<PriceRow>,
    /// Tiers in force that the import no longer prices: for `Changed`, the
    /// extension ends their rows at `effective_from` (else the old tier
    /// price would stay in force).
    pub retired_tiers: Vec<ServiceTier>,
}

/// The per-model comparison of an import with the prices in force. Models
/// in force that the import does not mention are left alone and not listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogDiff {
    pub models: Vec<ModelDiff>,
}

impl CatalogDiff {
    pub fn count(&self, change: Change) -> usize {
        self.models.iter().filter(|m| m.change == change).count()
    }

    /// `{"added": n, "changed": n, "unchanged": n, "skipped": n}`, with
    /// `skipped` = `CatalogImport::skipped_entries()`.
    pub fn summary_json(&self, skipped: usize) -> serde_json::Value {
        serde_json::json!({
            "added": self.count(Change::Added),
            "changed": self.count(Change::Changed),
            "unchanged": self.count(Change::Unchanged),
            "skipped": skipped,
        })
    }
}

/// Classifies each imported model as added, changed or unchanged against
/// the rows in force (`PriceBook::rows_in_force(effective_from)`). Providers
/// and models compare case-insensitively, prices by value (`0.50` = `0.5`).
pub fn classify(in_force: &[PriceRow], imported: &[PriceRow]) -> CatalogDiff {
    type Tiers = BTreeMap<ServiceTier, ModelRates>;
    let key = |row: &PriceRow| {
        (
            row.provider.trim().to_lowercase(),
            row.model.trim().to_lowercase(),
        )
    };
    let mut current: BTreeMap<(String, String), Tiers> = BTreeMap::new();
    for row in in_force {
        current
            .entry(key(row))
            .or_default()
            .insert(row.service_tier, row.rates.clone());
    }
    let mut incoming: BTreeMap<(String, String), Vec<PriceRow>> = BTreeMap::new();
    for row in imported {
        incoming.entry(key(row)).or_default().push(row.clone());
    }
    let models = incoming
        .into_iter()
        .map(|((provider, model), rows)| {
            let new: Tiers = rows.iter().map(|r| (r.service_tier, r.rates.clone())).collect();
            let (change, retired_tiers) = match current.get(&(provider.clone(), model.clone())) {
                None => (Change::Added, Vec::new()),
                Some(old) => {
                    let retired: Vec<ServiceTier> =
                        old.keys().filter(|t| !new.contains_key(t)).copied().collect();
                    if *old == new {
                        (Change::Unchanged, retired)
                    } else {
                        (Change::Changed, retired)
                    }
                }
            };
            ModelDiff {
                provider,
                model,
                change,
                rows,
                retired_tiers,
            }
        })
        .collect();
    CatalogDiff { models }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn json_numbers_are_read_exactly() {
        for (text, expected) in [
            ("0", "0"),
            ("-0", "0"),
            ("0.0", "0"),
            ("2.5e-06", "0.0000025"),
            ("2.5E-06", "0.0000025"),
            ("1.5e-06", "0.0000015"),
            ("6.25e-08", "0.0000000625"),
            ("3e-07", "0.0000003"),
            ("1e3", "1000"),
            ("1E+3", "1000"),
            ("0.000000125", "0.000000125"),
            ("-0.5", "-0.5"),
            ("12", "12"),
            ("1.0000000000000000000000000001", "1.0000000000000000000000000001"),
            ("1.23456789012345678e-10", "0.000000000123456789012345678"),
        ] {
            assert_eq!(parse_json_decimal(text), Ok(dec(expected)), "{text}");
        }
        // What going through f64 would do to one of them.
        let through_f64: f64 = "1.23456789012345678e-10".parse().unwrap();
        assert_ne!(
            Decimal::from_f64_retain(through_f64),
            Some(dec("0.000000000123456789012345678"))
        );
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "\"1\"", "1 ", "true", "null",
        ] {
            assert!(
                parse_json_decimal(bad).unwrap_err().contains("not a JSON number"),
                "{bad}"
            );
        }
        for inexact in [
            "1e-29",
            "1e99999",
            "123456789012345678901234567890",
            "1.00000000000000000000000000001",
        ] {
            assert!(parse_json_decimal(inexact).is_err(), "{inexact}");
        }
    }

    #[test]
    fn per_token_prices_become_per_1k() {
        assert_eq!(per_token_to_per_1k(dec("0.0000025")), Some(dec("0.0025")));
        assert_eq!(per_token_to_per_1k(dec("2")), Some(dec("2000")));
        assert_eq!(per_token_to_per_1k(dec("0.5")), Some(dec("500")));
        assert_eq!(per_token_to_per_1k(Decimal::ZERO), Some(Decimal::ZERO));
        assert_eq!(per_token_to_per_1k(Decimal::MAX), None);
    }

    #[test]
    fn price_keys() {
        use Class::*;
        use ServiceTier::*;
        let cases: &[(&str, Option<PriceKey>)] = &[
            ("input_cost_per_token", Some((Input, None, Standard))),
            ("output_cost_per_token_batches", Some((Output, None, Batch))),
            (
                "input_cost_per_token_above_200k_tokens",
                Some((Input, Some(200_000), Standard)),
            ),
            (
                "input_cost_per_token_above_272k_tokens_priority",
                Some((Input, Some(272_000), Priority)),
            ),
            ("cache_read_input_token_cost_flex", Some((CacheRead, None, Flex))),
            (
                "cache_creation_input_token_cost",
                Some((CacheWrite, None, Standard)),
            ),
            (
                "cache_creation_input_token_cost_above_1hr",
                Some((CacheWrite1h, None, Standard)),
            ),
            (
                "cache_creation_input_token_cost_above_1hr_above_100k_tokens",
                Some((CacheWrite1h, Some(100_000), Standard)),
            ),
            (
                "output_cost_per_reasoning_token",
                Some((Reasoning, None, Standard)),
            ),
            ("cache_creation_input_token_cost_above_12hr", None),
            ("input_cost_per_token_cache_hit", None),
            ("input_cost_per_token_ultrafast", None),
            ("input_cost_per_token_decisions", None),
            ("input_cost_per_audio_token", None),
            ("input_cost_per_token_above_k_tokens", None),
            ("input_cost_per_token_above_1m_tokens", None),
            ("output_cost_per_token_batches_flex", None),
        ];
        for (key, expected) in cases {
            assert_eq!(parse_price_key(key), *expected, "{key}");
        }
    }

    const SMALL: &str = r#"{
        "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                        "litellm_provider": "one of https://docs.litellm.ai/docs/providers", "mode": "one of: chat"},
        "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
                  "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06,
                  "input_cost_per_token_batches": 1.25e-06, "output_cost_per_token_batches": 5e-06,
                  "input_cost_per_token_flex": 1e-06,
                  "search_context_cost_per_query": {"search_context_size_low": 0.01}},
        "gemini/gem-pro": {"litellm_provider": "gemini", "mode": "chat",
                  "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                  "input_cost_per_token_above_200k_tokens": 2.5e-06,
                  "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
                  "output_cost_per_token_above_200k_tokens_priority": 2.7e-05,
                  "input_cost_per_token_priority": 2.25e-06, "output_cost_per_token_priority": 1.8e-05},
        "gem-pro": {"litellm_provider": "vertex_ai-language-models", "mode": "chat",
                  "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05},
        "text-embedding-x": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08,
                  "output_cost_per_token": 0.0},
        "deepseek-chat": {"litellm_provider": "deepseek", "mode": "chat",
                  "input_cost_per_token": 2.8e-07, "output_cost_per_token": 4.2e-07},
        "deepseek/deepseek-chat": {"litellm_provider": "deepseek", "mode": "chat",
                  "input_cost_per_token": 2.8e-07, "output_cost_per_token": 4.1e-07},
        "perplexity/openai/gpt-x": {"litellm_provider": "perplexity", "mode": "responses",
                  "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
        "xai/grok-z": {"litellm_provider": "xai", "mode": "chat", "input_cost_per_token": -1e-06,
                  "output_cost_per_token": 1e-06},
        "mistral/m-tiny": {"litellm_provider": "mistral", "mode": "chat", "input_cost_per_token": 1e-18,
                  "output_cost_per_token": 1e-06},
        "anthropic-nocost": {"litellm_provider": "anthropic", "mode": "chat"},
        "Claude-Q": {"litellm_provider": "Anthropic", "mode": "chat", "input_cost_per_token": 3e-06,
                  "output_cost_per_token": 1.5e-05, "cache_creation_input_token_cost": 3.75e-06,
                  "cache_creation_input_token_cost_above_1hr": 6e-06, "cache_read_input_token_cost": 3e-07},
        "two-thresholds": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06,
                  "output_cost_per_token": 1e-06, "input_cost_per_token_above_128k_tokens": 2e-06,
                  "output_cost_per_token_above_200k_tokens": 2e-06}
    }"#;

    fn row<'a>(import: &'a CatalogImport, provider: &str, model: &str, tier: ServiceTier) -> &'a PriceRow {
        import
            .rows
            .iter()
            .find(|r| r.provider == provider && r.model == model && r.service_tier == tier)
            .unwrap_or_else(|| panic!("no row {provider}/{model}/{tier}"))
    }

    fn reason<'a>(import: &'a CatalogImport, key: &str, tier: Option<ServiceTier>) -> &'a str {
        &import
            .skipped
            .iter()
            .find(|s| s.key == key && s.tier == tier)
            .unwrap_or_else(|| panic!("{key} not skipped: {:?}", import.skipped))
            .reason
    }

    #[test]
    fn parses_a_small_catalog() {
        let import = parse_litellm(SMALL).unwrap();
        let gpt = row(&import, "openai", "gpt-x", ServiceTier::Standard);
        assert_eq!(gpt.rates.base.input, dec("0.0025"));
        assert_eq!(gpt.rates.base.output, dec("0.01"));
        assert_eq!(gpt.rates.base.cache_read, Some(dec("0.00125")));
        assert_eq!(gpt.rates.context, None);
        let batch = row(&import, "openai", "gpt-x", ServiceTier::Batch);
        assert_eq!(batch.rates.base.input, dec("0.00125"));
        assert_eq!(batch.rates.base.cache_read, None);
        assert!(reason(&import, "gpt-x", Some(ServiceTier::Flex)).contains("no output price"));

        let gem = row(&import, "google", "gem-pro", ServiceTier::Standard);
        let context = gem.rates.context.as_ref().unwrap();
        assert_eq!(context.threshold_tokens, 200_000);
        assert_eq!(context.above.input, Some(dec("0.0025")));
        assert_eq!(context.above.cache_read, Some(dec("0.00025")));
        assert_eq!(context.above.output, None);
        let gem_priority = row(&import, "google", "gem-pro", ServiceTier::Priority);
        assert_eq!(
            gem_priority.rates.context.as_ref().unwrap().above,
            ClassPriceOverrides {
                output: Some(dec("0.027")),
                ..ClassPriceOverrides::default()
            }
        );

        let claude = row(&import, "anthropic", "claude-q", ServiceTier::Standard);
        assert_eq!(claude.rates.base.cache_write, Some(dec("0.00375")));
        assert_eq!(claude.rates.base.cache_write_1h, Some(dec("0.006")));

        // The provider-prefixed duplicate wins.
        let ds = row(&import, "deepseek", "deepseek-chat", ServiceTier::Standard);
        assert_eq!(ds.rates.base.output, dec("0.00041"));
        assert!(reason(&import, "deepseek-chat", None).contains("different prices"));

        assert!(reason(&import, "sample_spec", None).contains("not imported"));
        assert!(reason(&import, "gem-pro", None).contains("vertex_ai-language-models"));
        assert!(reason(&import, "text-embedding-x", None).contains("mode \"embedding\""));
        assert!(reason(&import, "perplexity/openai/gpt-x", None).contains("resold"));
        assert!(reason(&import, "xai/grok-z", None).contains("negative"));
        assert!(reason(&import, "mistral/m-tiny", None).contains("decimal places"));
        assert!(reason(&import, "anthropic-nocost", None).contains("no input_cost_per_token"));
        assert!(reason(&import, "two-thresholds", None).contains("several context thresholds"));
        assert_eq!(import.rows.len(), 6, "{:#?}", import.rows);
        assert_eq!(import.skipped_entries(), 9);
        for r in &import.rows {
            r.rates.validate().unwrap();
        }
    }

    #[test]
    fn malformed_documents_are_refused_whole() {
        for (doc, key, problem) in [
            ("[]", "", "must be a JSON object"),
            ("{", "", "must be a JSON object"),
            (r#"{"a": 1}"#, "a", "must be a JSON object"),
            (r#"{"a": {"mode": 3}}"#, "a.mode", "must be a string"),
            (
                r#"{"a": {"litellm_provider": ["openai"]}}"#,
                "a.litellm_provider",
                "must be a string",
            ),
            (
                r#"{"a": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": "0.1",
                   "output_cost_per_token": 1}}"#,
                "a.input_cost_per_token",
                "must be a number",
            ),
            (
                r#"{"a": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1,
                   "output_cost_per_token_flex": null}}"#,
                "a.output_cost_per_token_flex",
                "must be a number",
            ),
        ] {
            let e = parse_litellm(doc).unwrap_err();
            assert_eq!(e.key, key, "{doc}");
            assert!(e.message.contains(problem), "{doc}: {e}");
        }
        // Junk in entries that are not imported does not matter.
        let ok = r#"{"a": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": "x"}}"#;
        assert_eq!(parse_litellm(ok).unwrap().skipped_entries(), 1);
    }

    #[test]
    fn classify_compares_with_the_rows_in_force() {
        let import = parse_litellm(SMALL).unwrap();
        let mut in_force: Vec<PriceRow> = import
            .rows
            .iter()
            .filter(|r| r.model == "gpt-x" || r.model == "claude-q")
            .cloned()
            .collect();
        // claude-q: same prices written differently.
        for r in &mut in_force {
            if r.model == "claude-q" {
                r.model = "Claude-Q".into();
                r.rates.base.input = dec("0.00300");
            }
        }
        // gpt-x had a priority price the catalog no longer has.
        in_force.push(PriceRow {
            provider: "openai".into(),
            model: "gpt-x".into(),
            service_tier: ServiceTier::Priority,
            rates: ModelRates::input_output(dec("1"), dec("2")),
        });
        // gem-pro's price changed.
        let mut old_gem = row(&import, "google", "gem-pro", ServiceTier::Standard).clone();
        old_gem.rates.context = None;
        in_force.push(old_gem);
        let diff = classify(&in_force, &import.rows);
        let change = |model: &str| diff.models.iter().find(|m| m.model == model).unwrap();
        assert_eq!(change("claude-q").change, Change::Unchanged);
        assert_eq!(change("gpt-x").change, Change::Changed);
        assert_eq!(change("gpt-x").retired_tiers, vec![ServiceTier::Priority]);
        assert_eq!(change("gem-pro").change, Change::Changed);
        assert_eq!(change("gem-pro").rows.len(), 2);
        assert_eq!(change("deepseek-chat").change, Change::Added);
        assert_eq!(
            diff.summary_json(import.skipped_entries()),
            serde_json::json!({"added": 1, "changed": 2, "unchanged": 1, "skipped": 9})
        );
    }
}

/// Tests on a trimmed copy of the real catalog (LiteLLM 1.110.2's
/// `model_prices_and_context_window_backup.json`, numbers as written there).
#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::pricing::{PriceBook, PricePoint, TieredPricePoint};
    use crate::usage::normalize_usage;
    use serde_json::json;
    use std::str::FromStr;

    const SAMPLE: &str = include_str!("../tests/fixtures/litellm_sample.json");

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn book(import: &CatalogImport) -> PriceBook {
        let mut book = PriceBook::default();
        for row in &import.rows {
            book.add_tiered_price(
                &row.provider,
                &row.model,
                TieredPricePoint {
                    effective_from: 0,
                    effective_to: None,
                    service_tier: row.service_tier,
                    rates: row.rates.clone(),
                },
            );
        }
        book
    }

    #[test]
    fn imports_the_sample() {
        let import = parse_litellm(SAMPLE).unwrap();
        let models: BTreeSet<(String, String)> = import
            .rows
            .iter()
            .map(|r| (r.provider.clone(), r.model.clone()))
            .collect();
        for (provider, model) in [
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-2024-05-13"),
            ("openai", "gpt-4.1"),
            ("openai", "gpt-5"),
            ("openai", "o3"),
            ("openai", "ft:gpt-4o-mini-2024-07-18"),
            ("openai", "gpt-3.5-turbo-instruct"),
            ("anthropic", "claude-sonnet-4-5"),
            ("anthropic", "claude-opus-4-5"),
            ("google", "gemini-2.5-pro"),
            ("google", "gemini-2.5-flash"),
            ("mistral", "mistral-large-latest"),
            ("mistral", "mistral-medium-3.5"),
            ("mistral", "mistral-medium-3-5"),
            ("deepseek", "deepseek-chat"),
            ("deepseek", "deepseek-reasoner"),
            ("xai", "grok-4.20"),
            ("perplexity", "sonar"),
            ("perplexity", "sonar-pro"),
        ] {
            assert!(
                models.contains(&(provider.into(), model.into())),
                "{provider}/{model}"
            );
        }
        let skipped: BTreeMap<&str, &str> = import
            .skipped
            .iter()
            .filter(|s| s.tier.is_none())
            .map(|s| (s.key.as_str(), s.reason.as_str()))
            .collect();
        assert!(skipped["text-embedding-3-small"].contains("embedding"));
        assert!(skipped["mistral/mistral-embed"].contains("embedding"));
        assert!(skipped["azure/gpt-4o"].contains("\"azure\" is not imported"));
        assert!(skipped["gemini-2.5-pro"].contains("vertex_ai-language-models"));
        assert!(skipped["perplexity/openai/gpt-5"].contains("resold"));
        assert!(skipped["deepseek-chat"].contains("duplicate of \"deepseek/deepseek-chat\""));
        assert!(skipped["sample_spec"].contains("not imported"));
        for row in &import.rows {
            row.rates.validate().unwrap_or_else(|e| panic!("{row:?}: {e}"));
        }

        let gpt4o: BTreeMap<ServiceTier, &ModelRates> = import
            .rows
            .iter()
            .filter(|r| r.model == "gpt-4o")
            .map(|r| (r.service_tier, &r.rates))
            .collect();
        assert_eq!(
            gpt4o.keys().copied().collect::<Vec<_>>(),
            [ServiceTier::Standard, ServiceTier::Batch, ServiceTier::Priority]
        );
        let standard = &gpt4o[&ServiceTier::Standard].base;
        assert_eq!(
            (standard.input, standard.output, standard.cache_read),
            (dec("0.0025"), dec("0.01"), Some(dec("0.00125")))
        );
        let priority = &gpt4o[&ServiceTier::Priority].base;
        assert_eq!(
            (priority.input, priority.output, priority.cache_read),
            (dec("0.00425"), dec("0.017"), Some(dec("0.002125")))
        );
        let pro = import
            .rows
            .iter()
            .find(|r| r.model == "gemini-2.5-pro" && r.service_tier == ServiceTier::Standard)
            .unwrap();
        let context = pro.rates.context.as_ref().unwrap();
        assert_eq!(context.threshold_tokens, 200_000);
        assert_eq!(context.above.input, Some(dec("0.0025")));
        assert_eq!(context.above.output, Some(dec("0.015")));
        assert_eq!(context.above.cache_read, Some(dec("0.00025")));
    }

    #[test]
    fn resolves_against_the_catalog() {
        let book = book(&parse_litellm(SAMPLE).unwrap());
        let cases: &[(&str, Option<&str>)] = &[
            ("gpt-4o", Some("gpt-4o")),
            ("GPT-4o", Some("gpt-4o")),
            ("openai/gpt-4o", Some("gpt-4o")),
            ("gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
            ("gpt-4o-2024-08-06", Some("gpt-4o")),
            ("gpt-4o-mini-2024-07-18", Some("gpt-4o-mini-2024-07-18")),
            ("gpt-4o-mini-2025-01-01", Some("gpt-4o-mini")),
            ("gpt-4.1", Some("gpt-4.1")),
            ("gpt-4.1-2025-04-14", Some("gpt-4.1-2025-04-14")),
            ("gpt-4.1-2026-01-01", Some("gpt-4.1")),
            ("gpt-4", Some("gpt-4")),
            ("gpt-4-0613", Some("gpt-4")),
            ("gpt-4.5", None),
            ("gpt-4-5", None),
            ("gpt-4.1-mini", None),
            ("gpt-5-2025-08-07", Some("gpt-5")),
            ("gpt-5.1", None),
            (
                "ft:gpt-4o-mini-2024-07-18:acme::abc123",
                Some("ft:gpt-4o-mini-2024-07-18"),
            ),
            (
                "ft:gpt-4o-2024-08-06:acme:custom:xyz",
                Some("ft:gpt-4o-2024-08-06"),
            ),
            ("ft:gpt-4o-mini:acme::abc123", None),
            ("ft:gpt-4.1-2025-04-14:acme::abc", None),
            ("claude-sonnet-4-5", Some("claude-sonnet-4-5")),
            ("claude-sonnet-4-5-20250929", Some("claude-sonnet-4-5-20250929")),
            ("claude-sonnet-4-5-20991231", Some("claude-sonnet-4-5")),
            ("anthropic/claude-opus-4-5", Some("claude-opus-4-5")),
            ("claude-opus-4-1", None),
            ("claude-opus-4", None),
            ("models/gemini-2.5-pro", Some("gemini-2.5-pro")),
            ("gemini/gemini-2.5-flash", Some("gemini-2.5-flash")),
            ("gemini-2.5-flash-001", Some("gemini-2.5-flash")),
            ("gemini-2.5-flash-lite", None),
            ("mistral-medium-3.5", Some("mistral-medium-3.5")),
            ("mistral-medium-3-5", Some("mistral-medium-3-5")),
            ("xai/grok-4.20", Some("grok-4.20")),
            ("grok-4.20-0309", Some("grok-4.20")),
            ("grok-4.20-reasoning-latest", Some("grok-4.20-reasoning-latest")),
            ("grok-4", None),
            ("sonar", Some("sonar")),
            ("perplexity/sonar-pro", Some("sonar-pro")),
            ("deepseek-chat", Some("deepseek-chat")),
            ("text-embedding-3-small", None),
        ];
        for (model, expected) in cases {
            assert_eq!(book.resolve(Some("openai"), Some(model)), *expected, "{model}");
        }
    }

    #[test]
    fn prices_real_requests_exactly() {
        let book = book(&parse_litellm(SAMPLE).unwrap());
        let cost = |provider: &str, model: &str, usage: serde_json::Value, tier: ServiceTier| {
            let usage = normalize_usage(Some(provider), &usage).unwrap();
            book.cost_usage(Some(provider), Some(model), &usage, 0, tier)
                .unwrap()
                .map(|c| c.to_string())
        };
        let claude = json!({"input_tokens": 100, "cache_read_input_tokens": 500,
                            "cache_creation_input_tokens": 400, "output_tokens": 50,
                            "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 100}});
        // 100×3e-6 + 500×3e-7 + 300×3.75e-6 + 100×6e-6 + 50×1.5e-5
        assert_eq!(
            cost(
                "anthropic",
                "claude-sonnet-4-5-20250929",
                claude.clone(),
                ServiceTier::Standard
            )
            .as_deref(),
            Some("0.002925")
        );
        // Batch: no 1-hour batch price, so those writes cost the batch input price.
        // 100×1.5e-6 + 500×1.5e-7 + 300×1.875e-6 + 100×1.5e-6 + 50×7.5e-6
        assert_eq!(
            cost(
                "anthropic",
                "claude-sonnet-4-5",
                claude.clone(),
                ServiceTier::Batch
            )
            .as_deref(),
            Some("0.0013125")
        );
        assert_eq!(
            cost("anthropic", "claude-sonnet-4-5", claude, ServiceTier::Flex),
            None
        );

        // Gemini 2.5 Pro at exactly 200k input: base prices; thoughts at the output price.
        let at_threshold = json!({"promptTokenCount": 200000, "cachedContentTokenCount": 100000,
                                  "candidatesTokenCount": 600, "thoughtsTokenCount": 400});
        // 100000×1.25e-6 + 100000×1.25e-7 + 1000×1e-5
        assert_eq!(
            cost(
                "google",
                "models/gemini-2.5-pro",
                at_threshold,
                ServiceTier::Standard
            )
            .as_deref(),
            Some("0.1475")
        );
        let above = json!({"promptTokenCount": 250000, "cachedContentTokenCount": 100000,
                           "candidatesTokenCount": 600, "thoughtsTokenCount": 400});
        // 150000×2.5e-6 + 100000×2.5e-7 + 1000×1.5e-5
        assert_eq!(
            cost("google", "gemini-2.5-pro", above.clone(), ServiceTier::Standard).as_deref(),
            Some("0.415")
        );
        // Flex above 200k: 150000×1.25e-6 + 100000×2.5e-7 + 1000×7.5e-6
        assert_eq!(
            cost("google", "gemini-2.5-pro", above, ServiceTier::Flex).as_deref(),
            Some("0.22")
        );

        // gpt-5 flex with cached input and reasoning (Responses API):
        // 2000×6.25e-7 + 8000×6.25e-8 + 3000×5e-6
        let responses = json!({"input_tokens": 10000, "input_tokens_details": {"cached_tokens": 8000},
                               "output_tokens": 3000, "output_tokens_details": {"reasoning_tokens": 2500}});
        assert_eq!(
            cost("openai", "gpt-5-2025-08-07", responses, ServiceTier::Flex).as_deref(),
            Some("0.01675")
        );
        // The 0.1 API is unchanged for a catalog model.
        assert_eq!(
            book.cost(Some("openai"), Some("gpt-4o"), 1000, 1000, 0),
            Ok(Some(dec("0.0125")))
        );
        // A 0.1 row and a catalog row side by side.
        let mut book = book;
        book.add_price(
            "perplexity",
            "llama-3.1-sonar-small-128k-online",
            PricePoint {
                effective_from: 0,
                effective_to: None,
                input_usd_per_1k: dec("0.0002"),
                output_usd_per_1k: dec("0.0002"),
            },
        );
        assert_eq!(
            book.cost(
                Some("perplexity"),
                Some("llama-3-1-sonar-small-128k-online"),
                500,
                500,
                0
            ),
            Ok(Some(dec("0.0002")))
        );
    }

    #[test]
    fn reimporting_the_same_catalog_changes_nothing() {
        let import = parse_litellm(SAMPLE).unwrap();
        let book = book(&import);
        let diff = classify(&book.rows_in_force(0), &import.rows);
        assert_eq!(diff.count(Change::Added), 0);
        assert_eq!(diff.count(Change::Changed), 0);
        assert!(diff.count(Change::Unchanged) > 20);
        let fresh = classify(&[], &import.rows);
        assert_eq!(fresh.count(Change::Added), diff.count(Change::Unchanged));
    }

    /// `LITELLM_CATALOG=/path/model_prices_and_context_window_backup.json
    /// cargo test -p usage-analytics-core full_catalog -- --ignored --nocapture`
    /// imports a whole catalog and prints what it holds.
    #[test]
    #[ignore]
    fn full_catalog() {
        let Ok(path) = std::env::var("LITELLM_CATALOG") else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap();
        let import = parse_litellm(&text).unwrap();
        let mut per: BTreeMap<(String, ServiceTier), usize> = BTreeMap::new();
        for row in &import.rows {
            *per.entry((row.provider.clone(), row.service_tier)).or_default() += 1;
        }
        let models: BTreeSet<(&str, &str)> = import
            .rows
            .iter()
            .map(|r| (r.provider.as_str(), r.model.as_str()))
            .collect();
        let mut per_model: BTreeMap<&str, usize> = BTreeMap::new();
        for (provider, _) in &models {
            *per_model.entry(provider).or_default() += 1;
        }
        println!("rows {} models {} {per_model:?}", import.rows.len(), models.len());
        println!("rows per (provider, tier) {per:?}");
        let context = import.rows.iter().filter(|r| r.rates.context.is_some()).count();
        println!("rows with a context tier {context}");
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for s in &import.skipped {
            let reason = if s.reason.starts_with("provider ") {
                "provider not imported".to_string()
            } else if s.reason.starts_with("mode ") {
                s.reason.clone()
            } else {
                println!("skipped {} {:?}: {}", s.key, s.tier, s.reason);
                s.reason.split(':').next().unwrap_or("").to_string()
            };
            *reasons.entry(reason).or_default() += 1;
        }
        println!("skipped entries {} {reasons:?}", import.skipped_entries());
        let book = book(&import);
        println!(
            "{}",
            classify(&book.rows_in_force(0), &import.rows).summary_json(import.skipped_entries())
        );
    }
}
