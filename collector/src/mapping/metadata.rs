//! request_metadata: the span's ids, names and other attributes as JSON, bounded in size
//! and depth as the extension's input limits require.

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::span;
use serde_json::{Map, Value};
use usage_analytics_core::validate::{self, MAX_METADATA_BYTES, MAX_METADATA_DEPTH};

use super::columns::{as_text, find, Context, IN_COLUMNS};
use super::text::{hex, meta_text};

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
pub(super) fn to_json(v: &AnyValueKind, depth_left: usize) -> Option<Value> {
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
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    use super::*;
    use crate::mapping::fixtures::{i, kv, row, s, span};

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
}
