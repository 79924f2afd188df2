//! One span to one row: which attribute (the span's, else the resource's) feeds which
//! column, the token classes, and what makes a span ignored or rejected.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{status, Span};
use serde_json::{Map, Value};
use usage_analytics_core::usage::{self, TokenUsage};
use usage_analytics_core::validate::{self, MAX_IDENTIFIER_CHARS};
use uuid::Uuid;

use super::ids::{row_id, user_id};
use super::metadata::{metadata, to_json};
use super::text::{free_text, meta_text};

/// agent_id when a span has neither gen_ai.agent.id, gen_ai.agent.name nor service.name
/// (the OpenTelemetry SDKs' own default service name).
pub const UNKNOWN_AGENT: &str = "unknown_service";

/// One usage row, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub id: Uuid,
    pub timestamp: SystemTime,
    pub user_id: Uuid,
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub framework: Option<String>,
    pub provider: Option<String>,
    pub message_type: Option<String>,
    pub model: Option<String>,
    /// OpenTelemetry GenAI semantics: input includes the cache reads and writes, output
    /// includes reasoning.
    pub tokens: TokenUsage,
    /// standard, batch, flex or priority.
    pub service_tier: &'static str,
    pub response_time_ms: Option<i32>,
    pub success: bool,
    pub error_message: Option<String>,
    pub metadata: Value,
}

/// A span and what surrounds it.
pub struct Context<'a> {
    pub span: &'a Span,
    pub resource: &'a [KeyValue],
    pub scope_name: &'a str,
    pub scope_version: &'a str,
}

impl Context<'_> {
    /// The span's attribute, else the resource's.
    fn attr(&self, key: &str) -> Option<&AnyValueKind> {
        find(&self.span.attributes, key).or_else(|| find(self.resource, key))
    }

    pub(super) fn text(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(as_text).filter(|s| !s.trim().is_empty())
    }
}

pub(super) fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValueKind> {
    attrs
        .iter()
        .rev() // the last of duplicate keys wins, as in the SDKs' attribute maps
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// A scalar attribute as text (strings as they are, numbers and booleans printed).
pub(super) fn as_text(v: &AnyValueKind) -> Option<String> {
    match v {
        AnyValueKind::StringValue(s) => Some(s.clone()),
        AnyValueKind::IntValue(i) => Some(i.to_string()),
        AnyValueKind::DoubleValue(d) => Some(d.to_string()),
        AnyValueKind::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What one span becomes.
#[derive(Debug)]
pub enum Outcome {
    Row(Box<UsageRow>),
    Ignored,
    Rejected(String),
}

/// Span attributes stored in columns and so left out of request_metadata.attributes.
pub(super) const IN_COLUMNS: &[&str] = &[
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.response.model",
    "gen_ai.operation.name",
    "gen_ai.agent.id",
    "gen_ai.agent.name",
    "gen_ai.framework",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
];

/// Service-tier attributes (the response's, which says what was applied, first).
const SERVICE_TIER_KEYS: &[&str] = &[
    "openai.response.service_tier",
    "gen_ai.openai.response.service_tier",
    "gen_ai.response.service_tier",
    "openai.request.service_tier",
    "gen_ai.openai.request.service_tier",
    "gen_ai.request.service_tier",
];

pub fn map_span(ctx: &Context<'_>) -> Outcome {
    let span = ctx.span;
    if !span
        .attributes
        .iter()
        .any(|kv| kv.key.starts_with("gen_ai.usage."))
    {
        return Outcome::Ignored;
    }
    match build_row(ctx) {
        Ok(row) => Outcome::Row(Box::new(row)),
        Err(why) => Outcome::Rejected(why),
    }
}

fn build_row(ctx: &Context<'_>) -> Result<UsageRow, String> {
    let span = ctx.span;
    let id = row_id(&span.trace_id, &span.span_id)?;
    if span.start_time_unix_nano == 0 {
        return Err("start_time_unix_nano is 0".into());
    }
    let timestamp = UNIX_EPOCH + Duration::from_nanos(span.start_time_unix_nano);
    let tokens = tokens(ctx)?;

    let provider = ctx
        .text("gen_ai.provider.name")
        .or_else(|| ctx.text("gen_ai.system"))
        .map(|p| provider_name(&p));
    let model = ctx
        .text("gen_ai.response.model")
        .or_else(|| ctx.text("gen_ai.request.model"));
    let agent_name = ctx.text("gen_ai.agent.name");
    let agent_id = ctx
        .text("gen_ai.agent.id")
        .or_else(|| agent_name.clone())
        .or_else(|| find(ctx.resource, "service.name").and_then(as_text))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| UNKNOWN_AGENT.to_string());
    let message_type = ctx.text("gen_ai.operation.name");
    let framework = ctx.text("gen_ai.framework");
    for (column, value) in [
        ("agent_id", Some(&agent_id)),
        ("provider", provider.as_ref()),
        ("model", model.as_ref()),
        ("message_type", message_type.as_ref()),
        ("framework", framework.as_ref()),
    ] {
        validate::usage_row_text(column, value.map(String::as_str), MAX_IDENTIFIER_CHARS)
            .map_err(|e| e.to_string())?;
    }
    let agent_name = agent_name.map(|n| free_text(&n, validate::MAX_AGENT_NAME_CHARS));

    let status = span.status.as_ref();
    let status_error = status.is_some_and(|s| s.code == status::StatusCode::Error as i32);
    let error_type = ctx.attr("error.type").and_then(as_text).filter(|s| !s.is_empty());
    let success = !status_error && error_type.is_none();
    let error_message = if success {
        None
    } else {
        status
            .map(|s| s.message.clone())
            .filter(|m| !m.trim().is_empty())
            .or(error_type)
            .or_else(|| Some("error".to_string()))
            .map(|m| free_text(&m, validate::MAX_ERROR_MESSAGE_CHARS))
    };

    let response_time_ms = span
        .end_time_unix_nano
        .checked_sub(span.start_time_unix_nano)
        .filter(|_| span.end_time_unix_nano != 0)
        .map(|ns| ((ns + 500_000) / 1_000_000).min(i32::MAX as u64) as i32);

    let user_id = user_id(ctx);
    let service_tier = SERVICE_TIER_KEYS
        .iter()
        .find_map(|k| ctx.attr(k).and_then(as_text))
        .and_then(|t| service_tier(&t));

    let metadata = metadata(ctx, service_tier);
    Ok(UsageRow {
        id,
        timestamp,
        user_id,
        agent_id,
        agent_name,
        framework,
        provider,
        message_type,
        model,
        tokens,
        service_tier: service_tier.unwrap_or("standard"),
        response_time_ms,
        success,
        error_message,
        metadata,
    })
}

/// The extension's provider name for an OTel `gen_ai.provider.name` / `gen_ai.system` value:
/// trimmed, lower-cased, Google's names (gcp.gemini, gcp.vertex_ai, gcp.gen_ai, and the older
/// vertex_ai and gemini) → google.
pub fn provider_name(raw: &str) -> String {
    let p = raw.trim().to_lowercase();
    match p.as_str() {
        "gcp.gemini" | "gcp.vertex_ai" | "gcp.gen_ai" | "vertex_ai" | "gemini" => "google".to_string(),
        _ => p,
    }
}

/// The extension's service tier for a provider's tier name (OpenAI: auto, default, flex,
/// scale, priority); None for a name it does not know (the row keeps `standard`).
pub fn service_tier(raw: &str) -> Option<&'static str> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "standard" | "default" | "auto" | "on_demand" => Some("standard"),
        "batch" => Some("batch"),
        "flex" => Some("flex"),
        "priority" | "scale" => Some("priority"),
        _ => None,
    }
}

/// The span's gen_ai.usage.* attributes, read by the extension's own OTel usage reader
/// (core::usage), so a span and a usage document with the same attributes get the same
/// classes and the same refusals. Decimal strings are counts too (some SDKs send them).
fn tokens(ctx: &Context<'_>) -> Result<TokenUsage, String> {
    let mut attributes = Map::new();
    for kv in &ctx.span.attributes {
        if !kv.key.starts_with("gen_ai.usage.") {
            continue;
        }
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AnyValueKind::StringValue(s)) => s
                .trim()
                .parse::<i64>()
                .map_or_else(|_| Value::String(meta_text(s, 64)), Value::from),
            Some(v) => to_json(v, 0).unwrap_or_else(|| Value::String("a nested value".into())),
            None => Value::Null,
        };
        attributes.insert(kv.key.clone(), value);
    }
    let t = usage::normalize_usage(None, &Value::Object(attributes)).map_err(|e| e.to_string())?;
    // The table's total_tokens is an integer.
    if t.input_tokens + t.output_tokens > i64::from(i32::MAX) {
        return Err(format!(
            "input_tokens + output_tokens = {} exceeds {}",
            t.input_tokens + t.output_tokens,
            i32::MAX
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::Status;

    use super::*;
    use crate::mapping::fixtures::{ctx, i, kv, row, s, span};
    use crate::mapping::ids::{SPAN_NAMESPACE, USER_NAMESPACE};

    fn rejected(span: &Span) -> String {
        match map_span(&ctx(span, &[])) {
            Outcome::Rejected(why) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_genai_span_maps_to_every_column() {
        let sp = span(vec![
            kv("gen_ai.provider.name", s("OpenAI")),
            kv("gen_ai.system", s("ignored")),
            kv("gen_ai.request.model", s("gpt-4o")),
            kv("gen_ai.response.model", s("gpt-4o-2024-08-06")),
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.agent.id", s("agent-7")),
            kv("gen_ai.agent.name", s("Support bot")),
            kv("gen_ai.framework", s("langchain")),
            kv("gen_ai.usage.input_tokens", i(1200)),
            kv("gen_ai.usage.output_tokens", i(300)),
            kv("gen_ai.usage.cache_read.input_tokens", i(1000)),
            kv("gen_ai.usage.cache_creation.input_tokens", i(100)),
            kv("gen_ai.usage.reasoning.output_tokens", i(120)),
            kv("gen_ai.openai.response.service_tier", s("flex")),
            kv("user.id", s("alice@example.com")),
            kv("gen_ai.request.temperature", AnyValueKind::DoubleValue(0.5)),
        ]);
        let resource = [kv("service.name", s("svc"))];
        let r = row(&sp, &resource);
        assert_eq!(r.provider.as_deref(), Some("openai"));
        assert_eq!(r.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(r.agent_id, "agent-7");
        assert_eq!(r.agent_name.as_deref(), Some("Support bot"));
        assert_eq!(r.message_type.as_deref(), Some("chat"));
        assert_eq!(r.framework.as_deref(), Some("langchain"));
        assert_eq!(
            r.tokens,
            TokenUsage {
                input_tokens: 1200,
                output_tokens: 300,
                cache_read_tokens: 1000,
                cache_write_tokens: 100,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 120
            }
        );
        assert_eq!(r.service_tier, "flex");
        assert_eq!(r.response_time_ms, Some(1250));
        assert!(r.success);
        assert_eq!(r.error_message, None);
        assert_eq!(r.user_id, Uuid::new_v5(&USER_NAMESPACE, b"alice@example.com"));
        assert_eq!(
            r.timestamp,
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789)
        );
        let mut key = Vec::from_iter(1..=16u8);
        key.extend(1..=8u8);
        assert_eq!(r.id, Uuid::new_v5(&SPAN_NAMESPACE, &key));
        let m = &r.metadata;
        assert_eq!(m["trace_id"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(m["span_id"], "0102030405060708");
        assert_eq!(m["span_name"], "chat gpt-4o");
        assert_eq!(m["span_kind"], "client");
        assert_eq!(m["service_name"], "svc");
        assert_eq!(m["service_tier"], "flex");
        assert_eq!(m["scope_name"], "opentelemetry.instrumentation.openai_v2");
        assert_eq!(m["attributes"]["gen_ai.request.temperature"], 0.5);
        assert_eq!(m["attributes"]["gen_ai.request.model"], "gpt-4o");
        assert_eq!(m["attributes"]["user.id"], "alice@example.com");
        assert!(m["attributes"].get("gen_ai.usage.input_tokens").is_none());
        assert!(m["attributes"].get("gen_ai.provider.name").is_none());
    }

    #[test]
    fn fallbacks_system_request_model_agent_name_service_name() {
        let sp = span(vec![
            kv("gen_ai.system", s("gcp.gemini")),
            kv("gen_ai.request.model", s("gemini-1.5-flash")),
            kv("gen_ai.usage.prompt_tokens", i(10)),
            kv("gen_ai.usage.completion_tokens", i(5)),
            kv("gen_ai.usage.cache_write.input_tokens", i(4)),
        ]);
        let resource = [kv("service.name", s("billing-svc")), kv("enduser.id", s("bob"))];
        let r = row(&sp, &resource);
        assert_eq!(r.provider.as_deref(), Some("google"));
        assert_eq!(r.model.as_deref(), Some("gemini-1.5-flash"));
        assert_eq!(r.agent_id, "billing-svc");
        assert_eq!(r.agent_name, None);
        assert_eq!(
            (
                r.tokens.input_tokens,
                r.tokens.output_tokens,
                r.tokens.cache_write_tokens
            ),
            (10, 5, 4)
        );
        assert_eq!(r.user_id, Uuid::new_v5(&USER_NAMESPACE, b"bob"));
        assert_eq!(r.service_tier, "standard");

        let sp = span(vec![
            kv("gen_ai.agent.name", s("Planner")),
            kv("gen_ai.usage.output_tokens", i(1)),
        ]);
        let r = row(&sp, &[]);
        assert_eq!(r.agent_id, "Planner");
        assert_eq!(r.provider, None);
        assert_eq!(r.model, None);
        assert_eq!(r.user_id, Uuid::nil());
        let r = row(&span(vec![kv("gen_ai.usage.output_tokens", i(1))]), &[]);
        assert_eq!(r.agent_id, UNKNOWN_AGENT);
    }

    #[test]
    fn failures_from_status_or_error_type() {
        let mut sp = span(vec![kv("gen_ai.usage.input_tokens", i(1))]);
        sp.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "rate limited\0 now".into(),
        });
        let r = row(&sp, &[]);
        assert!(!r.success);
        assert_eq!(r.error_message.as_deref(), Some("rate limited  now"));

        let sp = span(vec![
            kv("gen_ai.usage.input_tokens", i(1)),
            kv("error.type", s("timeout")),
        ]);
        let r = row(&sp, &[]);
        assert!(!r.success);
        assert_eq!(r.error_message.as_deref(), Some("timeout"));
        assert_eq!(r.metadata["attributes"]["error.type"], "timeout");

        let mut sp = span(vec![kv("gen_ai.usage.input_tokens", i(1))]);
        sp.status = Some(Status {
            code: status::StatusCode::Ok as i32,
            message: String::new(),
        });
        assert!(row(&sp, &[]).success);
    }

    #[test]
    fn spans_without_usage_are_ignored() {
        let sp = span(vec![
            kv("gen_ai.provider.name", s("openai")),
            kv("http.method", s("GET")),
        ]);
        assert!(matches!(map_span(&ctx(&sp, &[])), Outcome::Ignored));
    }

    #[test]
    fn bad_tokens_and_ids_are_rejected_with_a_reason() {
        let why = rejected(&span(vec![kv("gen_ai.usage.input_tokens", i(-5))]));
        assert!(
            why.contains("\"gen_ai.usage.input_tokens\": must be >= 0, got -5"),
            "{why}"
        );
        let why = rejected(&span(vec![kv("gen_ai.usage.output_tokens", s("many"))]));
        assert!(why.contains("must be an integer"), "{why}");
        let why = rejected(&span(vec![kv(
            "gen_ai.usage.output_tokens",
            AnyValueKind::DoubleValue(1.5),
        )]));
        assert!(why.contains("must be an integer"), "{why}");
        let why = rejected(&span(vec![kv("gen_ai.usage.input_tokens", i(1 << 31))]));
        assert!(why.contains("exceeds"), "{why}");
        let why = rejected(&span(vec![
            kv("gen_ai.usage.input_tokens", i(10)),
            kv("gen_ai.usage.cache_read.input_tokens", i(11)),
        ]));
        assert!(why.contains("cache reads + 0 cache writes exceed"), "{why}");
        let why = rejected(&span(vec![
            kv("gen_ai.usage.output_tokens", i(10)),
            kv("gen_ai.usage.reasoning.output_tokens", i(11)),
        ]));
        assert!(why.contains("reasoning"), "{why}");
        let why = rejected(&span(vec![
            kv("gen_ai.usage.input_tokens", i(i32::MAX.into())),
            kv("gen_ai.usage.output_tokens", i(1)),
        ]));
        assert!(why.contains("exceeds"), "{why}");
        // Two spellings of one count must agree, as in a usage document.
        let why = rejected(&span(vec![
            kv("gen_ai.usage.input_tokens", i(5)),
            kv("gen_ai.usage.prompt_tokens", i(6)),
        ]));
        assert!(why.contains("they count the same tokens"), "{why}");
        // Integral doubles and decimal strings are counts.
        let r = row(
            &span(vec![
                kv("gen_ai.usage.input_tokens", AnyValueKind::DoubleValue(7.0)),
                kv("gen_ai.usage.output_tokens", s(" 3 ")),
            ]),
            &[],
        );
        assert_eq!((r.tokens.input_tokens, r.tokens.output_tokens), (7, 3));

        let mut sp = span(vec![kv("gen_ai.usage.input_tokens", i(1))]);
        sp.trace_id = vec![0; 16];
        assert!(rejected(&sp).contains("invalid trace_id"));
        sp.trace_id = vec![1; 15];
        assert!(rejected(&sp).contains("invalid trace_id"));
        let mut sp = span(vec![kv("gen_ai.usage.input_tokens", i(1))]);
        sp.span_id = vec![];
        assert!(rejected(&sp).contains("invalid span_id"));
        let mut sp = span(vec![kv("gen_ai.usage.input_tokens", i(1))]);
        sp.start_time_unix_nano = 0;
        assert!(rejected(&sp).contains("start_time"));
        let sp = span(vec![
            kv("gen_ai.usage.input_tokens", i(1)),
            kv("gen_ai.agent.id", s(&"x".repeat(201))),
        ]);
        assert!(rejected(&sp).contains("agent_id"));
        let sp = span(vec![
            kv("gen_ai.usage.input_tokens", i(1)),
            kv("gen_ai.request.model", s("gpt\n4o")),
        ]);
        assert!(rejected(&sp).contains("model"));
    }

    #[test]
    fn a_span_ending_before_it_starts_has_no_response_time() {
        let mut sp = span(vec![kv("gen_ai.usage.input_tokens", i(1))]);
        sp.end_time_unix_nano = sp.start_time_unix_nano - 1;
        assert_eq!(row(&sp, &[]).response_time_ms, None);
        sp.end_time_unix_nano = 0;
        assert_eq!(row(&sp, &[]).response_time_ms, None);
    }

    #[test]
    fn provider_and_tier_names() {
        assert_eq!(provider_name(" Anthropic "), "anthropic");
        assert_eq!(provider_name("gcp.vertex_ai"), "google");
        assert_eq!(provider_name("aws.bedrock"), "aws.bedrock");
        assert_eq!(service_tier("default"), Some("standard"));
        assert_eq!(service_tier("scale"), Some("priority"));
        assert_eq!(service_tier("flex"), Some("flex"));
        assert_eq!(service_tier("weird"), None);
    }
}
