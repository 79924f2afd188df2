//! Which provider shape a usage document is in ([`detect_shape`]), decided
//! by its keys alone: each shape's signature keys, and the refusal of
//! documents that mix shapes or match none.

use super::UsageError;
use crate::validate::json_kind;
use serde_json::Value;

/// The shapes [`normalize_usage`](super::normalize_usage) recognises.
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

pub(super) const OTEL_PREFIX: &str = "gen_ai.usage.";

fn shape_of_key(key: &str) -> Option<UsageShape> {
    if key.starts_with(OTEL_PREFIX) {
        return Some(UsageShape::OTel);
    }
    SIGNATURES
        .iter()
        .find(|(_, keys)| keys.contains(&key))
        .map(|(shape, _)| *shape)
}

/// The shape of a usage document, from its keys (see the [`usage`](super)
/// module docs).
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

#[cfg(test)]
mod tests {
    use crate::usage::test_fixtures::err;
    use serde_json::json;

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
}
