//! From OTLP spans to usage rows: which attribute feeds which column, the token
//! classes, the row id (the dedupe key), the user id, and the bounded metadata.
//!
//! Pure: no I/O. Each span becomes a row, is ignored (no `gen_ai.usage.*`
//! attribute), or is rejected with a reason (reported in `partial_success`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use serde_json::{Map, Value};
use usage_analytics_core::usage::{self, TokenUsage};
use usage_analytics_core::validate::{self, MAX_IDENTIFIER_CHARS, MAX_METADATA_BYTES, MAX_METADATA_DEPTH};
use uuid::Uuid;

/// Namespace of the row ids: id = UUIDv5(SPAN_NAMESPACE, trace_id (16 bytes) || span_id (8 bytes)).
pub const SPAN_NAMESPACE: Uuid = Uuid::from_u128(0x1b671a64_40d5_491e_99b0_da01ff1f3341);
/// Namespace of user ids made from a `user.id` / `enduser.id` that is not a UUID:
/// user_id = UUIDv5(USER_NAMESPACE, the attribute's UTF-8 text, trimmed).
pub const USER_NAMESPACE: Uuid = Uuid::from_u128(0x7c0f4b7e_5a3c_5b8e_9d1a_6f2e8c4b1d30);
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

/// What became of the spans of one export request.
#[derive(Debug, Default)]
pub struct Mapped {
    pub rows: Vec<UsageRow>,
    /// Every span of the request.
    pub spans: u64,
    /// Spans without a gen_ai.usage.* attribute.
    pub ignored: u64,
    /// GenAI spans refused, and the first few reasons.
    pub rejected: u64,
    pub reasons: Vec<String>,
}

/// How many rejection reasons are kept per request (the count is exact).
const MAX_REASONS: usize = 5;

impl Mapped {
    pub fn reject(&mut self, reason: String) {
        self.rejected += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason);
        }
    }

    /// The partial_success error message: the reasons, "; "-separated.
    pub fn error_message(&self) -> String {
        let mut msg = self.reasons.join("; ");
        if self.rejected as usize > self.reasons.len() {
            msg.push_str(&format!(
                " (and {} more)",
                self.rejected as usize - self.reasons.len()
            ));
        }
        msg
    }
}

/// Number of spans in a request (before any mapping).
pub fn count_spans(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// Maps every span of the request.
pub fn map_request(req: &ExportTraceServiceRequest) -> Mapped {
    let mut out = Mapped::default();
    for rs in &req.resource_spans {
        let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref();
            let scope_name = scope.map_or("", |s| s.name.as_str());
            let scope_version = scope.map_or("", |s| s.version.as_str());
            for span in &ss.spans {
                out.spans += 1;
                let ctx = Context {
                    span,
                    resource,
                    scope_name,
                    scope_version,
                };
                match map_span(&ctx) {
                    Outcome::Row(row) => out.rows.push(*row),
                    Outcome::Ignored => out.ignored += 1,
                    Outcome::Rejected(why) => {
                        let id = hex(&span.span_id);
                        out.reject(format!("span {id}: {why}"));
                    }
                }
            }
        }
    }
    out
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

    fn text(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(as_text).filter(|s| !s.trim().is_empty())
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValueKind> {
    attrs
        .iter()
        .rev() // the last of duplicate keys wins, as in the SDKs' attribute maps
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// A scalar attribute as text (strings as they are, numbers and booleans printed).
fn as_text(v: &AnyValueKind) -> Option<String> {
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
const IN_COLUMNS: &[&str] = &[
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

/// The row id and dedupe key: UUIDv5(SPAN_NAMESPACE, trace_id || span_id).
pub fn row_id(trace_id: &[u8], span_id: &[u8]) -> Result<Uuid, String> {
    if trace_id.len() != 16 || trace_id.iter().all(|&b| b == 0) {
        return Err(format!(
            "invalid trace_id {:?} (16 bytes, not all zero)",
            hex(trace_id)
        ));
    }
    if span_id.len() != 8 || span_id.iter().all(|&b| b == 0) {
        return Err(format!(
            "invalid span_id {:?} (8 bytes, not all zero)",
            hex(span_id)
        ));
    }
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(trace_id);
    key[16..].copy_from_slice(span_id);
    Ok(Uuid::new_v5(&SPAN_NAMESPACE, &key))
}

/// user.id, else enduser.id (span, then resource): a UUID as is, another value → UUIDv5 in
/// USER_NAMESPACE of its trimmed text; none → the nil UUID.
pub fn user_id(ctx: &Context<'_>) -> Uuid {
    let raw = ctx.text("user.id").or_else(|| ctx.text("enduser.id"));
    match raw {
        None => Uuid::nil(),
        Some(s) => {
            let s = s.trim();
            Uuid::parse_str(s).unwrap_or_else(|_| Uuid::new_v5(&USER_NAMESPACE, s.as_bytes()))
        }
    }
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

/// Free text for a column: at most `max_chars` characters, control characters other than
/// tab, CR and LF replaced by a space (they would be refused), never NUL.
pub fn free_text(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Text for request_metadata: bounded, and without NUL (jsonb refuses \u0000).
fn meta_text(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn span_kind(kind: i32) -> &'static str {
    match span::SpanKind::try_from(kind) {
        Ok(span::SpanKind::Internal) => "internal",
        Ok(span::SpanKind::Server) => "server",
        Ok(span::SpanKind::Client) => "client",
        Ok(span::SpanKind::Producer) => "producer",
        Ok(span::SpanKind::Consumer) => "consumer",
        _ => "unspecified",
    }
}

/// Most keys listed in attributes_dropped (the count is exact).
const MAX_DROPPED_LISTED: usize = 50;
/// Room kept for attributes_dropped and its count.
const DROPPED_RESERVE: usize = MAX_DROPPED_LISTED * 110 + 100;
/// Longest span name, scope name, version and service name kept.
const MAX_NAME_CHARS: usize = 1000;
/// Depth left for an attribute's value: the metadata object is level 1, `attributes` level 2.
const MAX_VALUE_DEPTH: usize = MAX_METADATA_DEPTH - 2;

/// request_metadata: trace_id, span_id, parent_span_id, span_name, span_kind, scope_name,
/// scope_version, service_name, service_tier (when the span says), and the span's other
/// attributes under "attributes". At most MAX_METADATA_BYTES as JSON and MAX_METADATA_DEPTH
/// deep: attributes nested deeper are dropped, then the largest ones until it fits; their
/// keys are listed in "attributes_dropped" (at most 50) and counted in
/// "attributes_dropped_count".
pub fn metadata(ctx: &Context<'_>, service_tier: Option<&str>) -> Value {
    let span = ctx.span;
    let mut m = Map::new();
    m.insert("trace_id".into(), Value::String(hex(&span.trace_id)));
    m.insert("span_id".into(), Value::String(hex(&span.span_id)));
    if !span.parent_span_id.is_empty() {
        m.insert("parent_span_id".into(), Value::String(hex(&span.parent_span_id)));
    }
    m.insert(
        "span_name".into(),
        Value::String(meta_text(&span.name, MAX_NAME_CHARS)),
    );
    m.insert("span_kind".into(), Value::String(span_kind(span.kind).into()));
    if !ctx.scope_name.is_empty() {
        m.insert(
            "scope_name".into(),
            Value::String(meta_text(ctx.scope_name, MAX_NAME_CHARS)),
        );
    }
    if !ctx.scope_version.is_empty() {
        m.insert(
            "scope_version".into(),
            Value::String(meta_text(ctx.scope_version, MAX_NAME_CHARS)),
        );
    }
    if let Some(service) = find(ctx.resource, "service.name").and_then(as_text) {
        m.insert(
            "service_name".into(),
            Value::String(meta_text(&service, MAX_NAME_CHARS)),
        );
    }
    if let Some(tier) = service_tier {
        m.insert("service_tier".into(), Value::String(tier.into()));
    }

    let base = serde_json::to_string(&m).map_or(usize::MAX, |s| s.len());
    let mut kept: Vec<(String, Value, usize)> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for kv in &span.attributes {
        if IN_COLUMNS.contains(&kv.key.as_str()) {
            continue;
        }
        let key = meta_text(&kv.key, usize::MAX);
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            None => Some(Value::Null),
            Some(v) => to_json(v, MAX_VALUE_DEPTH),
        };
        match value {
            Some(value) => {
                // "key":value, — an upper bound of what the entry adds.
                let size = serde_json::to_string(&key).map_or(usize::MAX, |s| s.len())
                    + serde_json::to_string(&value).map_or(usize::MAX, |s| s.len())
                    + 2;
                kept.retain(|(k, _, _)| *k != key);
                kept.push((key, value, size));
            }
            None => dropped.push(key),
        }
    }
    let budget = MAX_METADATA_BYTES
        .saturating_sub(base)
        .saturating_sub(DROPPED_RESERVE + 20);
    let mut total: usize = kept.iter().map(|(_, _, s)| *s).fold(0, usize::saturating_add);
    if total > budget {
        // Drop the largest first: big prompt/completion texts go, small facts stay.
        let mut order: Vec<usize> = (0..kept.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(kept[i].2));
        let mut drop = vec![false; kept.len()];
        for i in order {
            if total <= budget {
                break;
            }
            drop[i] = true;
            total -= kept[i].2;
        }
        let mut i = 0;
        kept.retain(|(k, _, _)| {
            let d = drop[i];
            i += 1;
            if d {
                dropped.push(k.clone());
            }
            !d
        });
    }
    if !kept.is_empty() {
        let attrs: Map<String, Value> = kept.into_iter().map(|(k, v, _)| (k, v)).collect();
        m.insert("attributes".into(), Value::Object(attrs));
    }
    if !dropped.is_empty() {
        m.insert("attributes_dropped_count".into(), Value::from(dropped.len()));
        let listed: Vec<Value> = dropped
            .iter()
            .take(MAX_DROPPED_LISTED)
            .map(|k| Value::String(k.chars().take(100).collect()))
            .collect();
        m.insert("attributes_dropped".into(), Value::Array(listed));
    }
    let value = Value::Object(m);
    debug_assert!(validate::metadata(&value).is_ok());
    value
}

/// An attribute value as JSON; None when it nests deeper than `depth_left` levels of
/// arrays and key-value lists. Bytes become hex text; NaN and infinities text.
fn to_json(v: &AnyValueKind, depth_left: usize) -> Option<Value> {
    Some(match v {
        AnyValueKind::StringValue(s) => Value::String(meta_text(s, usize::MAX)),
        AnyValueKind::BoolValue(b) => Value::Bool(*b),
        AnyValueKind::IntValue(i) => Value::from(*i),
        AnyValueKind::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| Value::String(d.to_string()), Value::Number)
        }
        AnyValueKind::BytesValue(b) => Value::String(hex(b)),
        // A reference into a profiles string table, which traces do not have.
        AnyValueKind::StringValueStrindex(_) => Value::Null,
        AnyValueKind::ArrayValue(a) => {
            if depth_left == 0 {
                return None;
            }
            Value::Array(
                a.values
                    .iter()
                    .map(|v| any_to_json(v, depth_left - 1))
                    .collect::<Option<_>>()?,
            )
        }
        AnyValueKind::KvlistValue(kvs) => {
            if depth_left == 0 {
                return None;
            }
            let mut m = Map::new();
            for kv in &kvs.values {
                let v = match &kv.value {
                    Some(v) => any_to_json(v, depth_left - 1)?,
                    None => Value::Null,
                };
                m.insert(meta_text(&kv.key, usize::MAX), v);
            }
            Value::Object(m)
        }
    })
}

fn any_to_json(v: &AnyValue, depth_left: usize) -> Option<Value> {
    match &v.value {
        None => Some(Value::Null),
        Some(v) => to_json(v, depth_left),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    use super::*;

    pub fn kv(key: &str, v: AnyValueKind) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }
    fn s(v: &str) -> AnyValueKind {
        AnyValueKind::StringValue(v.into())
    }
    fn i(v: i64) -> AnyValueKind {
        AnyValueKind::IntValue(v)
    }

    fn span(attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            name: "chat gpt-4o".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_001_373_456_789,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn ctx<'a>(span: &'a Span, resource: &'a [KeyValue]) -> Context<'a> {
        Context {
            span,
            resource,
            scope_name: "opentelemetry.instrumentation.openai_v2",
            scope_version: "2.0b0",
        }
    }

    fn row(span: &Span, resource: &[KeyValue]) -> UsageRow {
        match map_span(&ctx(span, resource)) {
            Outcome::Row(r) => *r,
            other => panic!("{other:?}"),
        }
    }

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
    fn uuid_users_are_kept_as_they_are() {
        let u = "6f1c1d9e-8c1b-4c43-9d0e-6b7a3e2f1a00";
        let sp = span(vec![
            kv("user.id", s(&format!(" {u} "))),
            kv("enduser.id", s("ignored")),
            kv("gen_ai.usage.input_tokens", i(1)),
        ]);
        assert_eq!(row(&sp, &[]).user_id, Uuid::parse_str(u).unwrap());
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
    fn metadata_is_bounded_in_size_and_depth() {
        let big = "p".repeat(40_000);
        let mut nested = AnyValueKind::StringValue("leaf".into());
        for _ in 0..40 {
            nested = AnyValueKind::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(nested) }],
            });
        }
        let sp = span(vec![
            kv("gen_ai.usage.input_tokens", i(1)),
            kv("gen_ai.input.messages", s(&big)),
            kv("gen_ai.output.messages", s(&big)),
            kv("small", s("kept")),
            kv("deep", nested),
            kv(
                "map",
                AnyValueKind::KvlistValue(KeyValueList {
                    values: vec![kv("a", i(1)), kv("b\0", AnyValueKind::BytesValue(vec![0xab]))],
                }),
            ),
            kv("nan", AnyValueKind::DoubleValue(f64::NAN)),
        ]);
        let r = row(&sp, &[]);
        let m = &r.metadata;
        validate::metadata(m).unwrap();
        assert_eq!(m["attributes"]["small"], "kept");
        assert_eq!(m["attributes"]["map"]["a"], 1);
        assert_eq!(m["attributes"]["map"]["b\u{FFFD}"], "ab");
        assert_eq!(m["attributes"]["nan"], "NaN");
        // One of the two big texts fits, the other is dropped; the too-deep value too.
        let kept_big = ["gen_ai.input.messages", "gen_ai.output.messages"]
            .iter()
            .filter(|k| m["attributes"].get(**k).is_some())
            .count();
        assert_eq!(kept_big, 1);
        assert_eq!(m["attributes_dropped_count"], 2);
        let dropped = m["attributes_dropped"].as_array().unwrap();
        assert!(dropped.contains(&Value::from("deep")), "{dropped:?}");

        // Thousands of attributes: still within the limit.
        let mut attrs = vec![kv("gen_ai.usage.input_tokens", i(1))];
        for n in 0..5000 {
            attrs.push(kv(&format!("attribute.number.{n}"), s(&"v".repeat(50))));
        }
        let r = row(&span(attrs), &[]);
        validate::metadata(&r.metadata).unwrap();
        assert!(r.metadata["attributes_dropped_count"].as_u64().unwrap() > 3000);
        assert_eq!(r.metadata["attributes_dropped"].as_array().unwrap().len(), 50);
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

    #[test]
    fn a_request_counts_rows_ignored_and_rejected() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("svc"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "scope".into(),
                        ..Default::default()
                    }),
                    spans: vec![
                        span(vec![kv("gen_ai.usage.input_tokens", i(3))]),
                        span(vec![kv("http.route", s("/"))]),
                        span(vec![kv("gen_ai.usage.input_tokens", i(-1))]),
                        span(vec![kv("gen_ai.usage.output_tokens", i(-2))]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(count_spans(&req), 4);
        let m = map_request(&req);
        assert_eq!((m.spans, m.rows.len(), m.ignored, m.rejected), (4, 1, 1, 2));
        assert_eq!(m.rows[0].agent_id, "svc");
        assert_eq!(m.rows[0].metadata["scope_name"], "scope");
        let msg = m.error_message();
        assert!(
            msg.contains("span 0102030405060708: usage key \"gen_ai.usage.input_tokens\": must be >= 0"),
            "{msg}"
        );
        assert!(msg.contains("; "), "{msg}");
    }

    #[test]
    fn namespaces_are_the_documented_ones() {
        assert_eq!(SPAN_NAMESPACE.to_string(), "1b671a64-40d5-491e-99b0-da01ff1f3341");
        assert_eq!(USER_NAMESPACE.to_string(), "7c0f4b7e-5a3c-5b8e-9d1a-6f2e8c4b1d30");
    }
}
