//! Every span of an export request, and what became of them: rows, spans ignored, spans
//! rejected with their first few reasons.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::columns::{map_span, Context, Outcome, UsageRow};
use super::text::hex;

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

/// How many rejection reasons are kept per request (the count is exact), by
/// the mapping and by the writer alike.
pub const MAX_REASONS: usize = 5;

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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    use super::*;
    use crate::mapping::fixtures::{i, kv, s, span};

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
}
