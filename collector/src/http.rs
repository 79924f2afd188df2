//! HTTP endpoints: POST /v1/traces, /health and /metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use deadpool_postgres::Pool;

use crate::mapping::{self, Mapped};
use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::otlp::{self, BodyError, Encoding};
use crate::writer::{SubmitError, Writer};

/// The request limits (from the flags).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_size: usize,
    pub max_spans: u64,
    pub body_timeout: Duration,
    pub retry_after: u32,
    pub health_timeout: Duration,
}

#[derive(Clone)]
pub struct App {
    pub writer: Writer,
    pub pool: Pool,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(app)
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn metrics(State(app): State<App>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], app.metrics.render()).into_response()
}

async fn health(State(app): State<App>) -> Response {
    usage_analytics_service::server::health(crate::db::ping(&app.pool, app.limits.health_timeout).await)
}

async fn traces(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let response = export(&app, &headers, body).await;
    app.metrics.request(response.status().as_u16());
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{FFFD}"))
}

/// An OTLP error answer: a google.rpc.Status in the request's encoding.
fn failure(encoding: Encoding, status: StatusCode, code: i32, message: &str) -> Response {
    tracing::debug!(%status, message, "export refused");
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        otlp::status(encoding, code, message),
    )
        .into_response()
}

fn unavailable(app: &App, encoding: Encoding, message: &str) -> Response {
    let mut r = failure(
        encoding,
        StatusCode::SERVICE_UNAVAILABLE,
        otlp::UNAVAILABLE,
        message,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(app.limits.retry_after));
    r
}

fn body_failure(encoding: Encoding, e: BodyError) -> Response {
    match e {
        BodyError::TooLarge(limit) => failure(
            encoding,
            StatusCode::PAYLOAD_TOO_LARGE,
            otlp::RESOURCE_EXHAUSTED,
            &format!("request body larger than {limit} bytes (--max-body-size)"),
        ),
        BodyError::Malformed(msg) => failure(encoding, StatusCode::BAD_REQUEST, otlp::INVALID_ARGUMENT, &msg),
        BodyError::UnsupportedEncoding(enc) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONTENT_TYPE, TEXT)],
            format!("unsupported Content-Encoding {enc:?}: send gzip or no encoding"),
        )
            .into_response(),
    }
}

async fn export(app: &App, headers: &HeaderMap, body: Body) -> Response {
    let Some(encoding) = Encoding::from_content_type(header_str(headers, header::CONTENT_TYPE)) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONTENT_TYPE, TEXT)],
            "unsupported Content-Type: send application/x-protobuf or application/json",
        )
            .into_response();
    };
    let gzip = match otlp::is_gzip(header_str(headers, header::CONTENT_ENCODING)) {
        Ok(g) => g,
        Err(e) => return body_failure(encoding, e),
    };
    let limit = app.limits.max_body_size;
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return body_failure(encoding, BodyError::TooLarge(limit));
    }
    let raw: Bytes =
        match tokio::time::timeout(app.limits.body_timeout, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let chain = crate::db::error_chain(&e);
                return if chain.contains("length limit exceeded") {
                    body_failure(encoding, BodyError::TooLarge(limit))
                } else {
                    body_failure(
                        encoding,
                        BodyError::Malformed(format!("cannot read the body: {chain}")),
                    )
                };
            }
            Err(_) => {
                return failure(
                    encoding,
                    StatusCode::REQUEST_TIMEOUT,
                    otlp::DEADLINE_EXCEEDED,
                    "request body not received within --http-body-timeout",
                )
            }
        };

    // Decompressing, decoding and mapping are CPU work: off the async workers.
    let max_spans = app.limits.max_spans;
    let decoded = tokio::task::spawn_blocking(move || -> Result<Result<Mapped, u64>, BodyError> {
        let plain;
        let bytes: &[u8] = if gzip {
            plain = otlp::gunzip(&raw, limit)?;
            &plain
        } else {
            &raw
        };
        let request = otlp::decode(encoding, bytes)?;
        let spans = mapping::count_spans(&request);
        if spans > max_spans {
            return Ok(Err(spans));
        }
        Ok(Ok(mapping::map_request(&request)))
    })
    .await;
    let mapped = match decoded {
        Ok(Ok(Ok(m))) => m,
        Ok(Ok(Err(spans))) => {
            return failure(
                encoding,
                StatusCode::PAYLOAD_TOO_LARGE,
                otlp::RESOURCE_EXHAUSTED,
                &format!("{spans} spans in one request; at most {max_spans} (--max-spans-per-request)"),
            )
        }
        Ok(Err(e)) => return body_failure(encoding, e),
        Err(e) => {
            tracing::error!(error = %e, "decoding task failed");
            return failure(
                encoding,
                StatusCode::BAD_REQUEST,
                otlp::INVALID_ARGUMENT,
                "the request could not be decoded",
            );
        }
    };

    let m = &app.metrics;
    m.add(&m.spans_received, mapped.spans);
    m.add(&m.spans_ignored, mapped.ignored);
    m.add(&m.spans_rejected, mapped.rejected);
    let rows = mapped.rows.len() as u64;
    let (mut rejected, mut message) = (mapped.rejected, mapped.error_message());
    if rows > 0 {
        match app.writer.submit(mapped.rows).await {
            Ok(written) => {
                rejected += written.rejected;
                for reason in written.reasons {
                    if !message.is_empty() {
                        message.push_str("; ");
                    }
                    message.push_str(&reason);
                }
            }
            Err(e) => {
                m.add(&m.spans_unavailable, rows);
                let why = match e {
                    SubmitError::QueueFull => "queue full (--max-queued-spans): retry later".to_string(),
                    SubmitError::Unavailable(msg) => msg,
                };
                return unavailable(app, encoding, &why);
            }
        }
    }
    if rejected > 0 {
        tracing::info!(rejected, message = %message, "spans rejected");
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        otlp::response(encoding, rejected, &message),
    )
        .into_response()
}
