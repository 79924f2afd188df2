//! Spans and attributes the mapping's tests build rows from.

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, Span};

use super::columns::{map_span, Context, Outcome, UsageRow};

pub fn kv(key: &str, v: AnyValueKind) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
pub fn s(v: &str) -> AnyValueKind {
    AnyValueKind::StringValue(v.into())
}
pub fn i(v: i64) -> AnyValueKind {
    AnyValueKind::IntValue(v)
}

pub fn span(attrs: Vec<KeyValue>) -> Span {
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

pub fn ctx<'a>(span: &'a Span, resource: &'a [KeyValue]) -> Context<'a> {
    Context {
        span,
        resource,
        scope_name: "opentelemetry.instrumentation.openai_v2",
        scope_version: "2.0b0",
    }
}

pub fn row(span: &Span, resource: &[KeyValue]) -> UsageRow {
    match map_span(&ctx(span, resource)) {
        Outcome::Row(r) => *r,
        other => panic!("{other:?}"),
    }
}
