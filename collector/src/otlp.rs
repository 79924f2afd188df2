//! OTLP/HTTP framing: content types, gzip, size limits, decoding the request
//! (prost / serde types of `opentelemetry-proto`), encoding the response and the
//! error `Status`.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub const PROTOBUF: &'static str = "application/x-protobuf";
    pub const JSON: &'static str = "application/json";

    /// From a Content-Type header value (parameters such as charset ignored).
    pub fn from_content_type(value: Option<&str>) -> Option<Encoding> {
        let media = value?.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            Self::PROTOBUF => Some(Encoding::Protobuf),
            Self::JSON => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => Self::PROTOBUF,
            Encoding::Json => Self::JSON,
        }
    }
}

/// Why a body could not be turned into a request.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the size limit (compressed or decompressed): 413.
    TooLarge(usize),
    /// Not gzip, or not the encoding's message: 400.
    Malformed(String),
    /// A Content-Encoding other than gzip / identity: 415.
    UnsupportedEncoding(String),
}

/// Whether the Content-Encoding says gzip (true), nothing (false), or something else.
pub fn is_gzip(content_encoding: Option<&str>) -> Result<bool, BodyError> {
    match content_encoding.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v.is_empty() || v == "identity" => Ok(false),
        Some(v) if v == "gzip" || v == "x-gzip" => Ok(true),
        Some(v) => Err(BodyError::UnsupportedEncoding(v)),
    }
}

/// Decompresses at most `limit` bytes; more is [`BodyError::TooLarge`].
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Malformed(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(out)
}

/// Decodes an ExportTraceServiceRequest.
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, BodyError> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)
            .map_err(|e| BodyError::Malformed(format!("invalid OTLP protobuf: {e}"))),
        Encoding::Json => {
            serde_json::from_slice(body).map_err(|e| BodyError::Malformed(format!("invalid OTLP JSON: {e}")))
        }
    }
}

/// The success answer: `partial_success` set when spans were rejected (or with a warning).
pub fn response(encoding: Encoding, rejected: u64, message: &str) -> Vec<u8> {
    let partial = (rejected > 0 || !message.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected.min(i64::MAX as u64) as i64,
        error_message: message.to_string(),
    });
    match encoding {
        Encoding::Protobuf => ExportTraceServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        Encoding::Json => {
            let body = match partial {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
            };
            body.to_string().into_bytes()
        }
    }
}

/// google.rpc.Status, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC codes used in error answers.
pub const INVALID_ARGUMENT: i32 = 3;
pub const RESOURCE_EXHAUSTED: i32 = 8;
pub const UNAVAILABLE: i32 = 14;
pub const DEADLINE_EXCEEDED: i32 = 4;

/// An error answer's body in the request's encoding.
pub fn status(encoding: Encoding, code: i32, message: &str) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => RpcStatus {
            code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": code, "message": message})
            .to_string()
            .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type(Some("application/x-protobuf")),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type(Some("Application/JSON; charset=utf-8")),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type(Some("text/plain")), None);
        assert_eq!(Encoding::from_content_type(None), None);
        assert_eq!(is_gzip(None), Ok(false));
        assert_eq!(is_gzip(Some("GZIP")), Ok(true));
        assert_eq!(is_gzip(Some("identity")), Ok(false));
        assert!(matches!(
            is_gzip(Some("br")),
            Err(BodyError::UnsupportedEncoding(_))
        ));
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_is_bounded() {
        let data = vec![b'a'; 100_000];
        assert_eq!(gunzip(&gz(&data), 100_000).unwrap(), data);
        // A small bomb: 100 kB of zeros from a few hundred bytes.
        assert_eq!(gunzip(&gz(&data), 99_999), Err(BodyError::TooLarge(99_999)));
        assert!(matches!(gunzip(b"not gzip", 1000), Err(BodyError::Malformed(_))));
    }

    fn request() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0xcd; 8],
                        name: "chat".into(),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn protobuf_round_trip_and_garbage() {
        let req = request();
        assert_eq!(decode(Encoding::Protobuf, &req.encode_to_vec()).unwrap(), req);
        assert!(matches!(
            decode(Encoding::Protobuf, b"\xff\xff\xff garbage"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decode(Encoding::Json, b"{not json"),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn otlp_json_with_hex_ids_and_string_integers() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"chat","kind":3,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
            "attributes":[{"key":"gen_ai.usage.input_tokens","value":{"intValue":"42"}},
                          {"key":"gen_ai.usage.output_tokens","value":{"intValue":7}}],
            "status":{"code":2,"message":"boom"}}]}]}]}"#;
        let req = decode(Encoding::Json, json).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id, vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.kind, 3);
        assert_eq!(
            span.attributes[0].value.as_ref().unwrap().value,
            Some(AnyValueKind::IntValue(42))
        );
        assert_eq!(
            span.attributes[1].value.as_ref().unwrap().value,
            Some(AnyValueKind::IntValue(7))
        );
        assert_eq!(span.status.as_ref().unwrap().code, 2);
    }

    #[test]
    fn responses() {
        let ok = response(Encoding::Protobuf, 0, "");
        assert_eq!(
            ExportTraceServiceResponse::decode(ok.as_slice()).unwrap(),
            ExportTraceServiceResponse {
                partial_success: None
            }
        );
        let partial = response(Encoding::Protobuf, 2, "bad tokens");
        let decoded = ExportTraceServiceResponse::decode(partial.as_slice()).unwrap();
        let p = decoded.partial_success.unwrap();
        assert_eq!((p.rejected_spans, p.error_message.as_str()), (2, "bad tokens"));
        assert_eq!(response(Encoding::Json, 0, ""), b"{}");
        let v: serde_json::Value = serde_json::from_slice(&response(Encoding::Json, 3, "x")).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedSpans"], "3");
        assert_eq!(v["partialSuccess"]["errorMessage"], "x");
        let st = RpcStatus::decode(status(Encoding::Protobuf, UNAVAILABLE, "down").as_slice()).unwrap();
        assert_eq!((st.code, st.message.as_str()), (14, "down"));
    }
}
