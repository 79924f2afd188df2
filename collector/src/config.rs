//! Command-line flags (each with an environment-variable fallback).

use std::time::Duration;

use clap::Parser;
use usage_analytics_service::flags::{
    parse_duration, parse_positive_duration, DatabaseArgs, Help, HttpArgs, ServiceFlags, TlsArgs,
};

/// OTLP/HTTP trace receiver for the pg_usage_analytics PostgreSQL extension.
///
/// Receives OpenTelemetry traces (POST /v1/traces, OTLP/HTTP protobuf or JSON,
/// optionally gzip-compressed) and records every GenAI span (a span with at
/// least one gen_ai.usage.* attribute) as one row of
/// usage_analytics.agent_usage_detailed, priced by the extension. A request is
/// answered 200 only after its rows are committed; a span sent again is
/// recorded once. Every flag can also be given as the environment variable
/// shown next to it; a flag on the command line wins. Durations accept
/// humantime ("800ms", "2s", "1m 30s") or a bare number of milliseconds; sizes
/// accept a number of bytes or KiB/MiB ("4MiB", "512KiB").
#[derive(Debug, Clone, Parser)]
#[command(name = "usage-analytics-collector", version, about, long_about, after_long_help = AFTER_HELP)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs<CollectorFlags>,

    /// Address (host:port) the HTTP server listens on.
    ///
    /// Endpoints: POST /v1/traces, /health and /metrics. An IPv6 address is
    /// written in brackets ([::1]:4318). The endpoints have no authentication
    /// and no TLS: anyone who can reach the port can record usage. Keep a
    /// loopback address, or restrict who can reach the port.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_LISTEN",
        hide_env_values = true,
        default_value = "127.0.0.1:4318",
        value_name = "ADDR"
    )]
    pub listen: String,

    /// Largest request body accepted, compressed and decompressed (bytes).
    ///
    /// A body longer than this (as sent, or after gzip decompression) is
    /// answered 413 without being decoded; decompression stops at the limit,
    /// so a gzip bomb costs at most this much memory. Memory for bodies is
    /// bounded by this times --max-connections. 1 KiB to 256 MiB.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_MAX_BODY_SIZE",
        hide_env_values = true,
        default_value = "8MiB",
        value_parser = parse_body_size,
        value_name = "BYTES"
    )]
    pub max_body_size: usize,

    /// Most spans accepted in one export request (1 to 1000000).
    ///
    /// An export request carrying more spans (GenAI or not) is answered 413
    /// and nothing of it is recorded: split the batch (the OpenTelemetry SDKs'
    /// batch span processor sends 512 spans per request by default).
    #[arg(
        long,
        env = "USAGE_COLLECTOR_MAX_SPANS_PER_REQUEST",
        hide_env_values = true,
        default_value_t = 20_000,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        value_name = "N"
    )]
    pub max_spans_per_request: u32,

    /// Most usage rows written in one database transaction (1 to 100000).
    ///
    /// Rows of the requests waiting for the database are written together,
    /// in one multi-row INSERT per transaction, up to this many (a request's
    /// rows are never split: a request with more rows is written alone).
    #[arg(
        long,
        env = "USAGE_COLLECTOR_WRITE_BATCH_ROWS",
        hide_env_values = true,
        default_value_t = 5_000,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        value_name = "N"
    )]
    pub write_batch_rows: u32,

    /// How long a batch that is not full waits for more rows before it is written.
    ///
    /// Counted from the arrival of the batch's first request. Requests that
    /// arrive while every writer is busy join the next batch anyway, so the
    /// default 0 (write at once) already batches under load; a few
    /// milliseconds give fewer, larger transactions at the cost of as much
    /// latency.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_FLUSH_INTERVAL",
        hide_env_values = true,
        default_value = "0",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub flush_interval: Duration,

    /// Most spans accepted but not yet committed, over all requests (1 to 10000000).
    ///
    /// Bounds the in-flight queue (and its memory). A request that would
    /// exceed it is answered 503 with Retry-After at once, and the OTLP
    /// exporter retries it later.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_MAX_QUEUED_SPANS",
        hide_env_values = true,
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u32).range(1..=10_000_000),
        value_name = "N"
    )]
    pub max_queued_spans: u32,

    /// Number of database connections writing batches at once (1 to 64).
    ///
    /// One more connection serves /health. Each writer writes one batch (one
    /// transaction) at a time.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_WRITERS",
        hide_env_values = true,
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=64),
        value_name = "N"
    )]
    pub writers: u16,

    /// Time budget of one batch write (connect, queries and commit).
    ///
    /// Also the server-side statement_timeout of the batch. When it runs out,
    /// or the database cannot be reached, the batch is rolled back and its
    /// requests are answered 503 with Retry-After: OTLP exporters retry, and a
    /// span of a batch that did commit after all is not recorded twice.
    /// Must be greater than 0.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_WRITE_TIMEOUT",
        hide_env_values = true,
        default_value = "10s",
        value_parser = parse_positive_duration,
        value_name = "DURATION"
    )]
    pub write_timeout: Duration,

    /// Seconds sent in Retry-After with 503 answers (1 to 3600).
    ///
    /// The delay an OTLP exporter is asked to wait before retrying when the
    /// database is down or slow, or the queue is full.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_RETRY_AFTER",
        hide_env_values = true,
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=3600),
        value_name = "SECONDS"
    )]
    pub retry_after: u32,

    /// Time budget of a /health check's SELECT 1 (connect included).
    ///
    /// /health answers 503 when the database does not answer within it. Must
    /// be greater than 0.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_HEALTH_TIMEOUT",
        hide_env_values = true,
        default_value = "1s",
        value_parser = parse_positive_duration,
        value_name = "DURATION"
    )]
    pub health_timeout: Duration,

    /// Time a client has to send a request body, once its header arrived.
    ///
    /// A body not complete by then is answered 408 and nothing of it is
    /// recorded. Must be greater than 0.
    #[arg(
        long,
        env = "USAGE_COLLECTOR_HTTP_BODY_TIMEOUT",
        hide_env_values = true,
        default_value = "30s",
        value_parser = parse_positive_duration,
        value_name = "DURATION"
    )]
    pub http_body_timeout: Duration,

    #[command(flatten)]
    pub http: HttpArgs<CollectorFlags>,

    #[command(flatten)]
    pub tls: TlsArgs<CollectorFlags>,
}

/// How the collector words and sets the flags it shares with the other service.
#[derive(Debug, Clone)]
pub struct CollectorFlags;

impl ServiceFlags for CollectorFlags {
    const HTTP_HEADER_TIMEOUT_ENV: &'static str = "USAGE_COLLECTOR_HTTP_HEADER_TIMEOUT";
    const HTTP_HEADER_TIMEOUT_DEFAULT: &'static str = "10s";
    const MAX_CONNECTIONS_ENV: &'static str = "USAGE_COLLECTOR_MAX_CONNECTIONS";
    const SSL_ROOT_CERT_ENV: &'static str = "USAGE_COLLECTOR_SSL_ROOT_CERT";
    const SSL_ACCEPT_INVALID_CERTS_ENV: &'static str = "USAGE_COLLECTOR_SSL_ACCEPT_INVALID_CERTS";

    const DATABASE_URL: Help = Help {
        summary: "PostgreSQL connection string (URL or key=value)",
        details: "As a URL (postgres://user:pass@host:5432/db?sslmode=require) or as \
                  libpq-style key=value pairs (host=db user=collector dbname=app). The role \
                  needs usage_analytics_writer (INSERT on the usage table and EXECUTE on \
                  usage_analytics.collector_claim_spans). sslmode absent or `disable`: plain \
                  TCP. `prefer`: TLS when the server offers it. `require`, `verify-ca`, \
                  `verify-full`: TLS is mandatory and the server certificate is verified, \
                  host name included, like libpq's `verify-full` (stricter than libpq's \
                  `require`; see --ssl-accept-invalid-certs): against the Mozilla roots and \
                  the system's trust store, or, when a CA file is given, against that file \
                  only (see --ssl-root-cert). In URL form `sslrootcert=FILE` is honoured as \
                  well (--ssl-root-cert wins over it). Prefer the environment variable over \
                  the flag so the password does not show up in `ps`.",
    };
    const HTTP_HEADER_TIMEOUT: Help = Help {
        summary: "Time a client has to send a complete HTTP request header",
        details: "Counted from the moment the connection is accepted (and, on a kept-alive \
                  connection, from the end of the previous response). A connection that has \
                  not delivered a whole header by then is closed without an answer; this \
                  also closes keep-alive connections left idle for that long. Must be \
                  greater than 0.",
    };
    const MAX_CONNECTIONS: Help = Help {
        summary: "Maximum number of HTTP connections open at once (1 to 10000)",
        details: "When that many are open the collector stops accepting: further connections \
                  wait in the kernel's listen backlog and are accepted in arrival order as \
                  open ones close.",
    };
    const SSL_ROOT_CERT: Help = Help {
        summary: "PEM file of the only CA certificates trusted for the database's TLS",
        details: "As with libpq's sslrootcert, these certificates are then the ONLY ones \
                  trusted: the Mozilla roots and the system trust store are not consulted. \
                  Without it (or with the value \"system\") the Mozilla roots and the system \
                  trust store are used. Overrides `sslrootcert=` in --database-url. Only \
                  used when the connection string asks for TLS. An unreadable file, or one \
                  without a PEM certificate, stops the collector at start-up.",
    };
}

const AFTER_HELP: &str = "\
Endpoints:
  POST /v1/traces  OTLP/HTTP traces: Content-Type application/x-protobuf or application/json,
                   Content-Encoding gzip or none. 200 with an ExportTraceServiceResponse in
                   the request's encoding once every recorded span is committed; its
                   partial_success counts the rejected GenAI spans (negative or inconsistent
                   token counts, an invalid trace or span id, an over-long identifier) and
                   says why. 400 for a body that does not decode, 413 for a body over
                   --max-body-size or more spans than --max-spans-per-request, 415 for
                   another content type or encoding, 408 for a body slower than
                   --http-body-timeout, 503 with Retry-After when the database is down or
                   slow or the queue is full (nothing of the request was committed then,
                   or what was will not be recorded twice).
  /health          200 \"ok\" when SELECT 1 succeeds within --health-timeout, 503 otherwise.
  /metrics         The collector's own metrics (usage_collector_*), Prometheus text format.

Mapping (span attribute, else resource attribute): provider gen_ai.provider.name, else
gen_ai.system (gcp.gemini, gcp.vertex_ai, gcp.gen_ai -> google; lower-cased); model
gen_ai.response.model, else gen_ai.request.model; tokens gen_ai.usage.input_tokens (also
prompt_tokens), output_tokens (also completion_tokens), cache_read.input_tokens,
cache_creation.input_tokens or cache_write.input_tokens, reasoning.output_tokens (OTel
semantics: input includes cached, output includes reasoning); response time = span duration;
success = status not ERROR and no error.type; agent_id gen_ai.agent.id, else
gen_ai.agent.name, else service.name; agent_name gen_ai.agent.name; message_type
gen_ai.operation.name; framework gen_ai.framework; user_id user.id, else enduser.id (a UUID
as is, another string -> UUIDv5 in namespace 7c0f4b7e-5a3c-5b8e-9d1a-6f2e8c4b1d30; none ->
the nil UUID); timestamp = span start; request_metadata = trace_id, span_id, parent_span_id,
span_name, span_kind, scope_name, service_name, and the other span attributes under
\"attributes\" (bounded to 64 KiB and depth 32: the largest attributes are dropped first and
listed in \"attributes_dropped\"). Spans without a gen_ai.usage.* attribute are ignored.

A span is recorded once, keyed by trace_id + span_id (the row id is UUIDv5 of both in
namespace 1b671a64-40d5-491e-99b0-da01ff1f3341), however often its batch is sent.

The database role needs usage_analytics_writer. Connections are opened lazily and re-opened
after errors, so the collector may start before the database. Logs go to stderr; set RUST_LOG
(e.g. debug, or usage_analytics_collector=debug) to change the level (default info). SIGINT
and SIGTERM stop it gracefully: it stops accepting connections, lets requests in progress
finish (waiting at most 10 s), writes what is queued and exits.

Exit status: 0 after a graceful stop; 1 when it cannot start (an invalid connection string,
an unreadable CA file, a listen address it cannot bind); 2 for an unknown flag, a missing
--database-url or a flag value out of range.";

/// Smallest and largest --max-body-size.
const BODY_SIZE_RANGE: (usize, usize) = (1024, 256 * 1024 * 1024);

/// Parses a size: bytes, or a number with KiB, MiB (or K, M, KB, MB, all binary).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}; use e.g. 4194304, 512KiB or 8MiB"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?}; use KiB or MiB")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn parse_body_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    let (lo, hi) = BODY_SIZE_RANGE;
    if !(lo..=hi).contains(&n) {
        return Err(format!("must be between {lo} and {hi} bytes"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use usage_analytics_service::flags::assert_documented;

    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("8 MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("2m").unwrap(), 2 << 20);
        assert!(parse_size("8GiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_body_size("100").is_err());
        assert!(parse_body_size("1024MiB").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn every_flag_has_a_summary_a_long_help_and_an_environment_variable() {
        assert_eq!(assert_documented(&Config::command(), "USAGE_COLLECTOR_"), 16);
        let help = Config::command().render_long_help().to_string();
        for needle in [
            "Exit status:",
            "SIGTERM",
            "/v1/traces",
            "/metrics",
            "/health",
            "Retry-After",
            "UUIDv5",
        ] {
            assert!(help.contains(needle), "{needle} missing from --help");
        }
    }

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(["x", "--database-url", "postgres://u@h/db"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:4318");
        assert_eq!(c.max_body_size, 8 << 20);
        assert_eq!(c.max_spans_per_request, 20_000);
        assert_eq!(c.write_batch_rows, 5_000);
        assert_eq!(c.flush_interval, Duration::ZERO);
        assert_eq!(c.max_queued_spans, 100_000);
        assert_eq!(c.writers, 2);
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.retry_after, 2);
        assert!(!c.tls.ssl_accept_invalid_certs);
    }

    #[test]
    fn flags() {
        let c = Config::try_parse_from([
            "x",
            "--database-url=postgres://u@h/db",
            "--listen=0.0.0.0:1",
            "--max-body-size=64KiB",
            "--max-spans-per-request=7",
            "--write-batch-rows=100",
            "--flush-interval=5ms",
            "--max-queued-spans=1000",
            "--writers=4",
            "--write-timeout=2s",
            "--retry-after=9",
        ])
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.max_body_size, 64 * 1024);
        assert_eq!(c.max_spans_per_request, 7);
        assert_eq!(c.write_batch_rows, 100);
        assert_eq!(c.flush_interval, Duration::from_millis(5));
        assert_eq!(c.max_queued_spans, 1000);
        assert_eq!(c.writers, 4);
        assert_eq!(c.write_timeout, Duration::from_secs(2));
        assert_eq!(c.retry_after, 9);
        for bad in [
            "--writers=0",
            "--write-timeout=0",
            "--retry-after=0",
            "--max-queued-spans=0",
            "--write-batch-rows=0",
        ] {
            assert!(
                Config::try_parse_from(["x", "--database-url=x", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
