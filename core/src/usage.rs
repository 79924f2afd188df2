//! Token usage in the canonical classes (OpenTelemetry GenAI semantics), and
//! the normalization of what providers and SDKs report into them.
//!
//! Canonical classes, as in the `agent_usage_detailed` columns:
//! * `input_tokens` counts every input token, cached ones included;
//! * `cache_read_tokens`, `cache_write_tokens` (5-minute / default cache
//!   writes) and `cache_write_1h_tokens` are parts of `input_tokens`;
//! * `output_tokens` counts every output token, reasoning included;
//! * `reasoning_tokens` is a part of `output_tokens`.
//!
//! So `cache_read + cache_write + cache_write_1h <= input` and
//! `reasoning <= output` ([`TokenUsage::validate`]).
//!
//! # Shapes recognised by [`normalize_usage`]
//! The shape of a document is decided by its keys alone; the signature keys
//! of different shapes never mix (a document with keys of two shapes is an
//! error naming both). A document whose only keys are `input_tokens` and
//! `output_tokens` means the same in the canonical, OpenAI Responses and
//! Anthropic shapes, and is read as canonical.
//!
//! | shape | signature keys |
//! |---|---|
//! | canonical | `cache_read_tokens`, `cache_write_tokens`, `cache_write_1h_tokens`, `reasoning_tokens` (and the shared `input_tokens`, `output_tokens`) |
//! | OpenAI Chat Completions | `prompt_tokens`, `completion_tokens`, `prompt_tokens_details`, `completion_tokens_details`, `prompt_cache_hit_tokens`, `prompt_cache_miss_tokens` |
//! | OpenAI Responses | `input_tokens_details`, `output_tokens_details` |
//! | Anthropic Messages | `cache_read_input_tokens`, `cache_creation_input_tokens`, `cache_creation`, `server_tool_use`, `service_tier` |
//! | Gemini `usageMetadata` | `promptTokenCount`, `candidatesTokenCount`, `cachedContentTokenCount`, `thoughtsTokenCount`, `toolUsePromptTokenCount`, `totalTokenCount`, `promptTokensDetails`, `candidatesTokensDetails`, `cacheTokensDetails`, `toolUsePromptTokensDetails`, `trafficType` |
//! | OTel attributes | any key starting with `gen_ai.usage.` |
//!
//! `total_tokens` belongs to both OpenAI shapes. An empty document `{}` is the
//! canonical zero usage.
//!
//! # Strictness
//! * The canonical shape is ours, so it is strict: a key that is not one of
//!   the six canonical keys is an error naming it (a typo such as
//!   `cache_reads_tokens` must not silently cost nothing).
//! * Provider shapes are open: providers add fields (`server_tool_use`,
//!   `audio_tokens`, `trafficType`, …), so keys the shape does not price are
//!   ignored, and totals (`total_tokens`, `totalTokenCount`) are not checked.
//!   For OTel, every key not starting with `gen_ai.usage.` is ignored (a
//!   span's whole attribute map may be passed), and so are unknown
//!   `gen_ai.usage.*` keys.
//! * A document with no key of any shape (`{"foo": 1}`), or that is not a
//!   JSON object, is an error.
//!
//! # Values
//! A token count is a JSON number with an integer value (`12`, also `12.0`
//! and `1.2e1`), from 0 to [`MAX_TOKENS`] (2^31 − 1, a Postgres `integer`),
//! and so is every derived class (Anthropic's input + cache reads + cache
//! writes, Gemini's candidates + thoughts). `null` is the same as a missing
//! key: 0. Anything else (`1.5`, `-1`, `"12"`, `true`, objects where a count
//! belongs) is an error naming the key, as is an inconsistent document
//! (cached > prompt, reasoning > completion, a 5m/1h split that disagrees
//! with its total, …). Errors name the key as written in the document, with
//! nested keys joined by `.` (`prompt_tokens_details.cached_tokens`).

use crate::validate::json_kind;
use serde_json::{Map, Value};
use std::fmt;

/// The largest token count in any class: a Postgres `integer`.
pub const MAX_TOKENS: i64 = i32::MAX as i64;

/// One request's tokens in the canonical classes.
///
/// Fields are `i64` so that the 0.1 `bigint` API (`calculate_cost(…, bigint,
/// bigint)`) fits; [`normalize_usage`] only produces values in
/// `0..=MAX_TOKENS`, and [`TokenUsage::validate`] checks only signs and the
/// class invariants (pricing accepts any non-negative `i64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub reasoning_tokens: i64,
}

/// The canonical keys, in column order.
pub const CANONICAL_KEYS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
];

/// Why a usage document (or a [`TokenUsage`]) was refused. `key` names the
/// offending key (nested keys joined by `.`); the extension raises SQLSTATE
/// 22023 with the `Display` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    pub key: String,
    pub message: String,
}

impl UsageError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> UsageError {
        UsageError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "usage: {}", self.message)
        } else {
            write!(f, "usage key \"{}\": {}", self.key, self.message)
        }
    }
}

impl std::error::Error for UsageError {}

/// The shapes [`normalize_usage`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UsageShape {
    Canonical,
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    Gemini,
    OTel,
}

impl UsageShape {
    pub fn name(self) -> &'static str {
        match self {
            UsageShape::Canonical => "canonical",
            UsageShape::OpenAiChat => "OpenAI Chat Completions",
            UsageShape::OpenAiResponses => "OpenAI Responses",
            UsageShape::Anthropic => "Anthropic Messages",
            UsageShape::Gemini => "Gemini usageMetadata",
            UsageShape::OTel => "OpenTelemetry gen_ai.usage",
        }
    }
}

const SIGNATURES: &[(UsageShape, &[&str])] = &[
    (
        UsageShape::Canonical,
        &[
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "reasoning_tokens",
        ],
    ),
    (
        UsageShape::OpenAiChat,
        &[
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
            "prompt_cache_hit_tokens",
            "prompt_cache_miss_tokens",
        ],
    ),
    (
        UsageShape::OpenAiResponses,
        &["input_tokens_details", "output_tokens_details"],
    ),
    (
        UsageShape::Anthropic,
        &[
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation",
            "server_tool_use",
            "service_tier",
        ],
    ),
    (
        UsageShape::Gemini,
        &[
            "promptTokenCount",
            "candidatesTokenCount",
            "cachedContentTokenCount",
            "thoughtsTokenCount",
            "toolUsePromptTokenCount",
            "totalTokenCount",
            "promptTokensDetails",
            "candidatesTokensDetails",
            "cacheTokensDetails",
            "toolUsePromptTokensDetails",
            "trafficType",
        ],
    ),
];

const OTEL_PREFIX: &str = "gen_ai.usage.";

fn shape_of_key(key: &str) -> Option<UsageShape> {
    if key.starts_with(OTEL_PREFIX) {
        return Some(UsageShape::OTel);
    }
    SIGNATURES
        .iter()
        .find(|(_, keys)| keys.contains(&key))
        .map(|(shape, _)| *shape)
}

/// The shape of a usage document, from its keys (see the module docs).
pub fn detect_shape(usage: &Value) -> Result<UsageShape, UsageError> {
    let object = usage
        .as_object()
        .ok_or_else(|| UsageError::new("", format!("must be a JSON object, got {}", json_kind(usage))))?;
    let mut found: Option<(UsageShape, &str)> = None;
    for key in object.keys() {
        let Some(shape) = shape_of_key(key) else {
            continue;
        };
        match found {
            None => found = Some((shape, key)),
            Some((seen, first)) if seen != shape => {
                return Err(UsageError::new(
                    key.as_str(),
                    format!(
                        "is a {} key, but \"{first}\" is a {} key: one document cannot mix shapes",
                        shape.name(),
                        seen.name()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let shared = ["input_tokens", "output_tokens", "total_tokens"];
    if let Some((shape, first)) = found {
        // input_tokens/output_tokens belong to the canonical, Responses and
        // Anthropic shapes: beside another shape's keys they are a second,
        // conflicting count, never to be silently dropped.
        let own_shared = matches!(
            shape,
            UsageShape::Canonical | UsageShape::OpenAiResponses | UsageShape::Anthropic
        );
        if let Some(key) = object
            .keys()
            .find(|k| !own_shared && shared[..2].contains(&k.as_str()))
        {
            return Err(UsageError::new(
                key.as_str(),
                format!(
                    "is not a {} key, but \"{first}\" is: one document cannot mix shapes",
                    shape.name()
                ),
            ));
        }
        return Ok(shape);
    }
    if object.keys().all(|k| shared.contains(&k.as_str())) {
        if object.contains_key("total_tokens") {
            return Ok(UsageShape::OpenAiResponses);
        }
        return Ok(UsageShape::Canonical);
    }
    let key = object
        .keys()
        .find(|k| !shared.contains(&k.as_str()))
        .cloned()
        .unwrap_or_default();
    Err(UsageError::new(
        key,
        "is not a key of any known usage shape (canonical, OpenAI Chat Completions, OpenAI Responses, \
         Anthropic Messages, Gemini usageMetadata, OpenTelemetry gen_ai.usage.*)",
    ))
}

/// A token count at `object[key]`: 0 when missing or null.
fn count(object: &Map<String, Value>, key: &str, path: &str) -> Result<i64, UsageError> {
    Ok(optional_count(object, key, path)?.unwrap_or(0))
}

/// A token count at `object[key]`: `None` when missing or null.
fn optional_count(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, UsageError> {
    let name = || {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let value = if let Some(i) = n.as_i64() {
                Some(i)
            } else if n.is_u64() {
                return Err(UsageError::new(
                    name(),
                    format!("{n} exceeds the limit of {MAX_TOKENS} tokens"),
                ));
            } else {
                // A float: accepted only when its value is an integer.
                n.as_f64()
                    .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            };
            let Some(value) = value else {
                return Err(UsageError::new(name(), format!("must be an integer, got {n}")));
            };
            if value < 0 {
                return Err(UsageError::new(name(), format!("must be >= 0, got {value}")));
            }
            if value > MAX_TOKENS {
                return Err(UsageError::new(
                    name(),
                    format!("{value} exceeds the limit of {MAX_TOKENS} tokens"),
                ));
            }
            Ok(Some(value))
        }
        Some(other) => Err(UsageError::new(
            name(),
            format!("must be an integer, got {}", json_kind(other)),
        )),
    }
}

/// The object at `object[key]`, if any (null counts as missing).
fn nested<'a>(
    object: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, UsageError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(other) => Err(UsageError::new(
            key,
            format!("must be an object, got {}", json_kind(other)),
        )),
    }
}

/// `a + b + …` as a class total, refused past `MAX_TOKENS`.
fn sum(parts: &[i64], key: &str, what: &str) -> Result<i64, UsageError> {
    let total: i64 = parts.iter().sum();
    if total > MAX_TOKENS {
        return Err(UsageError::new(
            key,
            format!("{what} is {total} tokens, beyond the limit of {MAX_TOKENS}"),
        ));
    }
    Ok(total)
}

/// Two spellings of the same count must agree; the present one wins.
fn agree(a: Option<i64>, a_key: &str, b: Option<i64>, b_key: &str) -> Result<i64, UsageError> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(UsageError::new(
            b_key,
            format!("is {y} but \"{a_key}\" is {x}; they count the same tokens"),
        )),
        (x, y) => Ok(x.or(y).unwrap_or(0)),
    }
}

/// Normalizes a usage document in any recognised shape (see the module
/// docs) into canonical token classes, validated. `provider` is not needed
/// to tell the shapes apart (their keys never overlap in meaning) and is
/// used only in error messages; it is accepted so that a later shape whose
/// keys collide can be told apart by provider without changing callers.
pub fn normalize_usage(provider: Option<&str>, usage: &Value) -> Result<TokenUsage, UsageError> {
    let shape = detect_shape(usage)?;
    let object = usage.as_object().expect("detect_shape checked the object");
    let result = match shape {
        UsageShape::Canonical => canonical(object),
        UsageShape::OpenAiChat => openai_chat(object),
        UsageShape::OpenAiResponses => openai_responses(object),
        UsageShape::Anthropic => anthropic(object),
        UsageShape::Gemini => gemini(object),
        UsageShape::OTel => otel(object),
    };
    result.map_err(|mut e| {
        let provider = provider.map(str::trim).filter(|p| !p.is_empty());
        e.message = match provider {
            Some(p) => format!("{} (read as {} usage of provider {p})", e.message, shape.name()),
            None => format!("{} (read as {} usage)", e.message, shape.name()),
        };
        e
    })
}

fn canonical(object: &Map<String, Value>) -> Result<TokenUsage, UsageError> {
    if let Some(unknown) = object.keys().find(|k| !CANONICAL_KEYS.contains(&k.as_str())) {
        return Err(UsageError::new(
            unknown.as_str(),
            format!("is not a canonical usage key ({})", CANONICAL_KEYS.join(", ")),
        ));
    }
    let usage = TokenUsage {
        input_tokens: count(object, "input_tokens", "")?,
        output_tokens: count(object, "output_tokens", "")?,
        cache_read_tokens: count(object, "cache_read_tokens", "")?,
        cache_write_tokens: count(object, "cache_write_tokens", "")?,
        cache_write_1h_tokens: count(object, "cache_write_1h_tokens", "")?,
        reasoning_tokens: count(object, "reasoning_tokens", "")?,
    };
    usage.validate()?;
    Ok(usage)
}

fn openai_chat(object: &Map<String, Value>) -> Result<TokenUsage, UsageError> {
    let input = count(object, "prompt_tokens", "")?;
    let output = count(object, "completion_tokens", "")?;
    let cached = match nested(object, "prompt_tokens_details")? {
        Some(details) => optional_count(details, "cached_tokens", "prompt_tokens_details")?,
        None => None,
    };
    // DeepSeek reports its cache hits at the top level as well.
    let hits = optional_count(object, "prompt_cache_hit_tokens", "")?;
    let cached = agree(
        cached,
        "prompt_tokens_details.cached_tokens",
        hits,
        "prompt_cache_hit_tokens",
    )?;
    if let Some(misses) = optional_count(object, "prompt_cache_miss_tokens", "")? {
        if object.contains_key("prompt_tokens") && cached + misses != input {
            return Err(UsageError::new(
                "prompt_cache_miss_tokens",
                format!("{misses} misses + {cached} hits is not prompt_tokens ({input})"),
            ));
        }
    }
    let reasoning = match nested(object, "completion_tokens_details")? {
        Some(details) => count(details, "reasoning_tokens", "completion_tokens_details")?,
        None => 0,
    };
    let usage = TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cached,
        reasoning_tokens: reasoning,
        ..TokenUsage::default()
    };
    check(
        cached <= input,
        if hits.is_some() {
            "prompt_cache_hit_tokens"
        } else {
            "prompt_tokens_details.cached_tokens"
        },
        || format!("{cached} cached tokens exceed prompt_tokens ({input})"),
    )?;
    check(
        reasoning <= output,
        "completion_tokens_details.reasoning_tokens",
        || format!("{reasoning} reasoning tokens exceed completion_tokens ({output})"),
    )?;
    Ok(usage)
}

fn openai_responses(object: &Map<String, Value>) -> Result<TokenUsage, UsageError> {
    let input = count(object, "input_tokens", "")?;
    let output = count(object, "output_tokens", "")?;
    let cached = match nested(object, "input_tokens_details")? {
        Some(details) => count(details, "cached_tokens", "input_tokens_details")?,
        None => 0,
    };
    let reasoning = match nested(object, "output_tokens_details")? {
        Some(details) => count(details, "reasoning_tokens", "output_tokens_details")?,
        None => 0,
    };
    check(cached <= input, "input_tokens_details.cached_tokens", || {
        format!("{cached} cached tokens exceed input_tokens ({input})")
    })?;
    check(
        reasoning <= output,
        "output_tokens_details.reasoning_tokens",
        || format!("{reasoning} reasoning tokens exceed output_tokens ({output})"),
    )?;
    Ok(TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cached,
        reasoning_tokens: reasoning,
        ..TokenUsage::default()
    })
}

fn anthropic(object: &Map<String, Value>) -> Result<TokenUsage, UsageError> {
    // Anthropic's input_tokens excludes cache reads and writes.
    let uncached = count(object, "input_tokens", "")?;
    let output = count(object, "output_tokens", "")?;
    let read = count(object, "cache_read_input_tokens", "")?;
    let creation = optional_count(object, "cache_creation_input_tokens", "")?;
    let (write_5m, write_1h) = match nested(object, "cache_creation")? {
        Some(split) => {
            let five = count(split, "ephemeral_5m_input_tokens", "cache_creation")?;
            let hour = count(split, "ephemeral_1h_input_tokens", "cache_creation")?;
            let both = sum(&[five, hour], "cache_creation", "the 5m + 1h cache writes")?;
            if let Some(total) = creation {
                if total != both {
                    return Err(UsageError::new(
                        "cache_creation",
                        format!(
                            "ephemeral_5m_input_tokens ({five}) + ephemeral_1h_input_tokens ({hour}) \
                             is not cache_creation_input_tokens ({total})"
                        ),
                    ));
                }
            }
            (five, hour)
        }
        None => (creation.unwrap_or(0), 0),
    };
    let input = sum(
        &[uncached, read, write_5m, write_1h],
        "input_tokens",
        "input_tokens + cache_read_input_tokens + cache_creation_input_tokens",
    )?;
    Ok(TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: read,
        cache_write_tokens: write_5m,
        cache_write_1h_tokens: write_1h,
        reasoning_tokens: 0,
    })
}

fn gemini(object: &Map<String, Value>) -> Result<TokenUsage, UsageError> {
    let prompt = count(object, "promptTokenCount", "")?;
    let tool_prompt = count(object, "toolUsePromptTokenCount", "")?;
    let cached = count(object, "cachedContentTokenCount", "")?;
    let candidates = count(object, "candidatesTokenCount", "")?;
    let thoughts = count(object, "thoughtsTokenCount", "")?;
    check(cached <= prompt, "cachedContentTokenCount", || {
        format!("{cached} cached tokens exceed promptTokenCount ({prompt})")
    })?;
    Ok(TokenUsage {
        input_tokens: sum(
            &[prompt, tool_prompt],
            "toolUsePromptTokenCount",
            "promptTokenCount + toolUsePromptTokenCount",
        )?,
        // Thoughts are not part of candidatesTokenCount and are billed as output.
        output_tokens: sum(
            &[candidates, thoughts],
            "thoughtsTokenCount",
            "candidatesTokenCount + thoughtsTokenCount",
        )?,
        cache_read_tokens: cached,
        reasoning_tokens: thoughts,
        ..TokenUsage::default()
    })
}

fn otel(object: &Map<String, Value>) -> Result<TokenUsage, UsageError> {
    let get = |suffix: &str| optional_count(object, &format!("{OTEL_PREFIX}{suffix}"), "");
    let key = |suffix: &str| format!("{OTEL_PREFIX}{suffix}");
    // The deprecated prompt_tokens/completion_tokens names are the same counts.
    let input = agree(
        get("input_tokens")?,
        &key("input_tokens"),
        get("prompt_tokens")?,
        &key("prompt_tokens"),
    )?;
    let output = agree(
        get("output_tokens")?,
        &key("output_tokens"),
        get("completion_tokens")?,
        &key("completion_tokens"),
    )?;
    let read = get("cache_read.input_tokens")?.unwrap_or(0);
    let write = agree(
        get("cache_creation.input_tokens")?,
        &key("cache_creation.input_tokens"),
        get("cache_write.input_tokens")?,
        &key("cache_write.input_tokens"),
    )?;
    let reasoning = get("reasoning.output_tokens")?.unwrap_or(0);
    let usage = TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: read,
        cache_write_tokens: write,
        cache_write_1h_tokens: 0,
        reasoning_tokens: reasoning,
    };
    check(read + write <= input, &key("cache_read.input_tokens"), || {
        format!("{read} cache reads + {write} cache writes exceed gen_ai.usage.input_tokens ({input})")
    })?;
    check(reasoning <= output, &key("reasoning.output_tokens"), || {
        format!("{reasoning} reasoning tokens exceed gen_ai.usage.output_tokens ({output})")
    })?;
    Ok(usage)
}

fn check(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), UsageError> {
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(key, message()))
    }
}

impl TokenUsage {
    /// Only input and output tokens (the 0.1 model).
    pub fn input_output(input_tokens: i64, output_tokens: i64) -> TokenUsage {
        TokenUsage {
            input_tokens,
            output_tokens,
            ..TokenUsage::default()
        }
    }

    /// The classes as (canonical key, value), in column order.
    pub fn classes(&self) -> [(&'static str, i64); 6] {
        [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cache_read_tokens", self.cache_read_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("cache_write_1h_tokens", self.cache_write_1h_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
        ]
    }

    /// Every class non-negative, cache reads and writes within the input and
    /// reasoning within the output (the table's CHECKs). No upper bound: the
    /// 0.1 `bigint` cost API takes any `i64` (see [`MAX_TOKENS`] for the
    /// columns' bound, which `normalize_usage` enforces).
    pub fn validate(&self) -> Result<(), UsageError> {
        for (key, value) in self.classes() {
            if value < 0 {
                return Err(UsageError::new(key, format!("must be >= 0, got {value}")));
            }
        }
        let cached = i128::from(self.cache_read_tokens)
            + i128::from(self.cache_write_tokens)
            + i128::from(self.cache_write_1h_tokens);
        if cached > i128::from(self.input_tokens) {
            return Err(UsageError::new(
                "cache_read_tokens",
                format!(
                    "cache_read_tokens ({}) + cache_write_tokens ({}) + cache_write_1h_tokens ({}) \
                     exceed input_tokens ({})",
                    self.cache_read_tokens,
                    self.cache_write_tokens,
                    self.cache_write_1h_tokens,
                    self.input_tokens
                ),
            ));
        }
        if self.reasoning_tokens > self.output_tokens {
            return Err(UsageError::new(
                "reasoning_tokens",
                format!(
                    "{} reasoning tokens exceed output_tokens ({})",
                    self.reasoning_tokens, self.output_tokens
                ),
            ));
        }
        Ok(())
    }

    /// The canonical document: all six keys, always present (0 included).
    pub fn to_canonical_json(&self) -> Value {
        Value::Object(
            self.classes()
                .into_iter()
                .map(|(key, value)| (key.to_string(), Value::from(value)))
                .collect(),
        )
    }
}

impl fmt::Display for TokenUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} input tokens ({} cache reads, {} cache writes, {} 1-hour cache writes) and {} output \
             tokens ({} reasoning)",
            self.input_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.output_tokens,
            self.reasoning_tokens
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usage(i: i64, o: i64, cr: i64, cw: i64, cw1h: i64, r: i64) -> TokenUsage {
        TokenUsage {
            input_tokens: i,
            output_tokens: o,
            cache_read_tokens: cr,
            cache_write_tokens: cw,
            cache_write_1h_tokens: cw1h,
            reasoning_tokens: r,
        }
    }

    fn ok(provider: &str, doc: Value) -> TokenUsage {
        normalize_usage(Some(provider), &doc).unwrap_or_else(|e| panic!("{doc}: {e}"))
    }

    fn err(doc: Value) -> UsageError {
        match normalize_usage(None, &doc) {
            Ok(u) => panic!("{doc} was accepted as {u:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn canonical_documents() {
        assert_eq!(ok("x", json!({})), TokenUsage::default());
        assert_eq!(
            ok("x", json!({"input_tokens": 10, "output_tokens": 5})),
            usage(10, 5, 0, 0, 0, 0)
        );
        let full = usage(100, 50, 10, 20, 30, 40);
        assert_eq!(ok("x", full.to_canonical_json()), full);
        assert_eq!(
            full.to_canonical_json().to_string(),
            "{\"cache_read_tokens\":10,\"cache_write_1h_tokens\":30,\"cache_write_tokens\":20,\
             \"input_tokens\":100,\"output_tokens\":50,\"reasoning_tokens\":40}"
        );
        assert_eq!(ok("x", json!({"reasoning_tokens": null})), TokenUsage::default());
        assert_eq!(ok("x", json!({"input_tokens": 12.0})), usage(12, 0, 0, 0, 0, 0));
        assert_eq!(
            ok(
                "x",
                json!({"input_tokens": 2147483647, "cache_read_tokens": 2147483647})
            ),
            usage(MAX_TOKENS, 0, MAX_TOKENS, 0, 0, 0)
        );
    }

    #[test]
    fn canonical_is_strict() {
        let e = err(json!({"input_tokens": 1, "cache_reads_tokens": 1}));
        assert_eq!(e.key, "cache_reads_tokens");
        let e = err(json!({"cache_read_tokens": 5, "input_tokens": 4}));
        assert_eq!(e.key, "cache_read_tokens");
        assert!(e.to_string().contains("exceed input_tokens (4)"), "{e}");
        let e = err(json!({"cache_write_1h_tokens": 5, "cache_write_tokens": 1, "input_tokens": 5}));
        assert_eq!(e.key, "cache_read_tokens");
        let e = err(json!({"reasoning_tokens": 2, "output_tokens": 1}));
        assert_eq!(e.key, "reasoning_tokens");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (value, problem) in [
            (json!(-1), "must be >= 0"),
            (json!(1.5), "must be an integer"),
            (json!("12"), "must be an integer, got a string"),
            (json!(true), "must be an integer, got a boolean"),
            (json!([1]), "must be an integer, got an array"),
            (json!({}), "must be an integer, got an object"),
            (json!(2147483648u64), "exceeds the limit of 2147483647"),
            (json!(u64::MAX), "exceeds the limit"),
            (json!(1e300), "must be an integer"),
        ] {
            for doc in [
                json!({"input_tokens": value.clone()}),
                json!({"prompt_tokens": value.clone()}),
                json!({"promptTokenCount": value.clone(), "candidatesTokenCount": 1}),
                json!({"gen_ai.usage.input_tokens": value.clone()}),
            ] {
                let e = err(doc.clone());
                assert!(e.message.contains(problem), "{doc}: {e}");
                let key = doc.as_object().unwrap().keys().next().unwrap().clone();
                let key = if key == "candidatesTokenCount" {
                    "promptTokenCount".to_string()
                } else {
                    key
                };
                assert_eq!(e.key, key, "{doc}");
            }
        }
        let e = err(json!({"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": -3}}));
        assert_eq!(e.key, "prompt_tokens_details.cached_tokens");
        let e = err(json!({"prompt_tokens": 1, "prompt_tokens_details": 4}));
        assert_eq!(e.key, "prompt_tokens_details");
        let e = err(json!({"cache_creation": {"ephemeral_1h_input_tokens": "3"}}));
        assert_eq!(e.key, "cache_creation.ephemeral_1h_input_tokens");
    }

    #[test]
    fn unrecognised_and_mixed_documents_are_refused() {
        for doc in [json!([]), json!(3), json!(null), json!("usage")] {
            assert!(err(doc).message.contains("must be a JSON object"));
        }
        let e = err(json!({"tokens": 3}));
        assert_eq!(e.key, "tokens");
        assert!(e.message.contains("not a key of any known usage shape"), "{e}");
        let e = err(json!({"prompt_tokens": 3, "cache_read_input_tokens": 1}));
        assert!(e.message.contains("cannot mix shapes"), "{e}");
        let e = err(json!({"promptTokenCount": 3, "gen_ai.usage.input_tokens": 1}));
        assert!(e.message.contains("cannot mix shapes"), "{e}");
        let e = err(json!({"cache_read_tokens": 1, "input_tokens_details": {}}));
        assert!(e.message.contains("cannot mix shapes"), "{e}");
        // A shared key beside a shape that does not use it is a second count.
        for doc in [
            json!({"prompt_tokens": 10, "input_tokens": 20}),
            json!({"promptTokenCount": 20, "input_tokens": 10}),
            json!({"gen_ai.usage.input_tokens": 10, "output_tokens": 20}),
        ] {
            let e = err(doc);
            assert!(e.key == "input_tokens" || e.key == "output_tokens", "{e}");
            assert!(e.message.contains("cannot mix shapes"), "{e}");
        }
    }

    #[test]
    fn openai_chat_completions() {
        let doc = json!({
            "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        });
        assert_eq!(ok("openai", doc), usage(2006, 300, 1920, 0, 0, 128));
        assert_eq!(
            ok(
                "openai",
                json!({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21})
            ),
            usage(9, 12, 0, 0, 0, 0)
        );
        // DeepSeek
        let doc = json!({"prompt_tokens": 100, "completion_tokens": 10, "prompt_cache_hit_tokens": 60,
                         "prompt_cache_miss_tokens": 40,
                         "completion_tokens_details": {"reasoning_tokens": 4}});
        assert_eq!(ok("deepseek", doc), usage(100, 10, 60, 0, 0, 4));
        let e =
            err(json!({"prompt_tokens": 100, "prompt_cache_hit_tokens": 60, "prompt_cache_miss_tokens": 30}));
        assert_eq!(e.key, "prompt_cache_miss_tokens");
        let e = err(json!({"prompt_tokens": 100, "prompt_cache_hit_tokens": 60,
                           "prompt_tokens_details": {"cached_tokens": 50}}));
        assert_eq!(e.key, "prompt_cache_hit_tokens");
        let e = err(json!({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}));
        assert_eq!(e.key, "prompt_tokens_details.cached_tokens");
        assert!(e.message.contains("exceed prompt_tokens (10)"), "{e}");
        let e = err(json!({"completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 11}}));
        assert_eq!(e.key, "completion_tokens_details.reasoning_tokens");
    }

    #[test]
    fn openai_responses() {
        let doc = json!({"input_tokens": 328, "input_tokens_details": {"cached_tokens": 256},
                         "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 20},
                         "total_tokens": 380});
        assert_eq!(ok("openai", doc), usage(328, 52, 256, 0, 0, 20));
        assert_eq!(
            ok(
                "openai",
                json!({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7})
            ),
            usage(3, 4, 0, 0, 0, 0)
        );
        let e = err(json!({"input_tokens": 3, "input_tokens_details": {"cached_tokens": 4}}));
        assert_eq!(e.key, "input_tokens_details.cached_tokens");
        let e = err(json!({"output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 4}}));
        assert_eq!(e.key, "output_tokens_details.reasoning_tokens");
    }

    #[test]
    fn anthropic_messages() {
        // input_tokens excludes cache reads and writes.
        let doc = json!({"input_tokens": 50, "cache_read_input_tokens": 1000,
                         "cache_creation_input_tokens": 200, "output_tokens": 75,
                         "service_tier": "standard", "server_tool_use": {"web_search_requests": 1}});
        assert_eq!(ok("anthropic", doc), usage(1250, 75, 1000, 200, 0, 0));
        let doc = json!({"input_tokens": 50, "cache_read_input_tokens": 1000,
                         "cache_creation_input_tokens": 200,
                         "cache_creation": {"ephemeral_5m_input_tokens": 150, "ephemeral_1h_input_tokens": 50},
                         "output_tokens": 75});
        assert_eq!(ok("anthropic", doc), usage(1250, 75, 1000, 150, 50, 0));
        // The split alone is enough.
        let doc = json!({"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 7}});
        assert_eq!(ok("anthropic", doc), usage(8, 0, 0, 0, 7, 0));
        let doc =
            json!({"input_tokens": 1, "cache_creation_input_tokens": null, "cache_read_input_tokens": null});
        assert_eq!(ok("anthropic", doc), usage(1, 0, 0, 0, 0, 0));
        let e = err(json!({"input_tokens": 1, "cache_creation_input_tokens": 10,
                           "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 5}}));
        assert_eq!(e.key, "cache_creation");
        let e = err(json!({"input_tokens": 2147483647, "cache_read_input_tokens": 1}));
        assert_eq!(e.key, "input_tokens");
        assert!(e.message.contains("beyond the limit"), "{e}");
    }

    #[test]
    fn gemini_usage_metadata() {
        let doc = json!({"promptTokenCount": 1200, "cachedContentTokenCount": 1000,
                         "candidatesTokenCount": 80, "thoughtsTokenCount": 400,
                         "toolUsePromptTokenCount": 30, "totalTokenCount": 1710,
                         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}],
                         "trafficType": "ON_DEMAND"});
        assert_eq!(ok("google", doc), usage(1230, 480, 1000, 0, 0, 400));
        assert_eq!(
            ok("google", json!({"promptTokenCount": 5, "totalTokenCount": 5})),
            usage(5, 0, 0, 0, 0, 0)
        );
        let e = err(json!({"promptTokenCount": 5, "cachedContentTokenCount": 6}));
        assert_eq!(e.key, "cachedContentTokenCount");
        let e = err(json!({"candidatesTokenCount": 2147483647, "thoughtsTokenCount": 1}));
        assert_eq!(e.key, "thoughtsTokenCount");
    }

    #[test]
    fn otel_attributes() {
        let doc = json!({"gen_ai.usage.input_tokens": 500, "gen_ai.usage.output_tokens": 60,
                         "gen_ai.usage.cache_read.input_tokens": 300,
                         "gen_ai.usage.cache_creation.input_tokens": 100,
                         "gen_ai.usage.reasoning.output_tokens": 20,
                         "gen_ai.request.model": "gpt-4o", "gen_ai.usage.unknown": "x"});
        assert_eq!(ok("openai", doc), usage(500, 60, 300, 100, 0, 20));
        let doc = json!({"gen_ai.usage.input_tokens": 500, "gen_ai.usage.cache_write.input_tokens": 100});
        assert_eq!(ok("anthropic", doc), usage(500, 0, 0, 100, 0, 0));
        let doc = json!({"gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.completion_tokens": 6});
        assert_eq!(ok("openai", doc), usage(5, 6, 0, 0, 0, 0));
        let e = err(json!({"gen_ai.usage.input_tokens": 5,
                           "gen_ai.usage.cache_creation.input_tokens": 3,
                           "gen_ai.usage.cache_write.input_tokens": 4}));
        assert_eq!(e.key, "gen_ai.usage.cache_write.input_tokens");
        let e = err(
            json!({"gen_ai.usage.input_tokens": 5, "gen_ai.usage.cache_read.input_tokens": 3,
                           "gen_ai.usage.cache_write.input_tokens": 3}),
        );
        assert_eq!(e.key, "gen_ai.usage.cache_read.input_tokens");
        let e = err(json!({"gen_ai.usage.output_tokens": 5, "gen_ai.usage.reasoning.output_tokens": 6}));
        assert_eq!(e.key, "gen_ai.usage.reasoning.output_tokens");
    }

    #[test]
    fn errors_mention_the_shape_and_provider() {
        let e = normalize_usage(Some("openai"), &json!({"prompt_tokens": -1})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "usage key \"prompt_tokens\": must be >= 0, got -1 (read as OpenAI Chat Completions usage of \
             provider openai)"
        );
    }

    #[test]
    fn validate_checks_every_class() {
        assert!(usage(1, 1, 0, 0, 0, 0).validate().is_ok());
        assert_eq!(
            usage(1, -1, 0, 0, 0, 0).validate().unwrap_err().key,
            "output_tokens"
        );
        assert_eq!(
            usage(1, 1, 0, 0, -1, 0).validate().unwrap_err().key,
            "cache_write_1h_tokens"
        );
        assert!(usage(i64::MAX, 0, i64::MAX, 0, 0, 0).validate().is_ok());
        assert!(usage(i64::MAX, 0, i64::MAX, 1, 0, 0).validate().is_err());
    }
}
