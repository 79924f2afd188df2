//! [`normalize_usage`]: reads a document of each recognised shape into the
//! canonical classes, with the rules for a single count (integer, 0 to
//! [`MAX_TOKENS`], errors naming the key) that every shape shares.

use super::shapes::OTEL_PREFIX;
use super::{detect_shape, TokenUsage, UsageError, UsageShape, CANONICAL_KEYS, MAX_TOKENS};
use crate::validate::json_kind;
use serde_json::{Map, Value};

/// Normalizes a usage document in any recognised shape (see the
/// [`usage`](super) module docs) into canonical token classes, validated.
/// `provider` is not needed to tell the shapes apart (their keys never
/// overlap in meaning) and is used only in error messages; it is accepted
/// so that a later shape whose keys collide can be told apart by provider
/// without changing callers.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::test_fixtures::{err, ok, usage};
    use serde_json::json;

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
}
