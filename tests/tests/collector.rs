//! The OTLP collector (issue 17) end to end: real OpenTelemetry Python SDK batches (each
//! sent twice), OTLP JSON, gzip, malformed bodies, wrong content types, oversized bodies,
//! rejected spans, and a database stopped under the collector, against the installed
//! extension. Rows and costs are compared with what was sent.

use std::collections::HashMap;
use std::time::Duration;

use integration_tests::{
    cluster, gzip, prepare_collector_db, send_genai_spans, Cluster, Collector, Exposition,
};
use postgres::Client;
use serde_json::Value;

const ROLE: &str = "collector_it";
const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");
const GZIP: (&str, &str) = ("Content-Encoding", "gzip");

/// The documented namespace of user ids (collector --help).
const USER_NAMESPACE: &str = "7c0f4b7e-5a3c-5b8e-9d1a-6f2e8c4b1d30";

fn setup(c: &Cluster, name: &str) -> (String, Client) {
    let db = c.fresh_db(name);
    let mut client = c.connect(&db);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\"")
        .unwrap();
    prepare_collector_db(&mut client, ROLE);
    (c.url(&db, ROLE), client)
}

fn counter(m: &Exposition, name: &str) -> f64 {
    m.value(name).unwrap_or_else(|| panic!("{name} missing"))
}

/// Every usage row, keyed by request_metadata span_id.
fn rows(client: &mut Client) -> HashMap<String, postgres::Row> {
    client
        .query(
            "SELECT request_metadata->>'span_id' AS span_id, request_metadata->>'trace_id' AS trace_id,
                    id::text AS id, user_id::text AS user_id, agent_id, agent_name, framework, provider,
                    message_type, requested_model, input_tokens, output_tokens, response_time_ms, success,
                    error_message, cost_usd::text AS cost, request_metadata,
                    (extract(epoch FROM \"timestamp\") * 1000000)::bigint AS ts_us,
                    to_jsonb(u) AS whole
               FROM usage_analytics.agent_usage_detailed u",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<_, String>("span_id"), r))
        .collect()
}

/// Checks every sent GenAI span is exactly one row with the sent values and the catalog cost.
fn assert_rows_match(client: &mut Client, sent: &[Value]) {
    let got = rows(client);
    assert_eq!(got.len(), sent.len(), "one row per GenAI span");
    for s in sent {
        let span_id = s["span_id"].as_str().unwrap();
        let r = got
            .get(span_id)
            .unwrap_or_else(|| panic!("span {span_id} not recorded"));
        let text = |c: &str| r.get::<_, Option<String>>(c);
        let sent_text = |k: &str| s[k].as_str().map(str::to_string);
        assert_eq!(text("trace_id"), sent_text("trace_id"));
        assert_eq!(text("provider"), sent_text("provider"), "{s}");
        assert_eq!(text("requested_model"), sent_text("model"), "{s}");
        assert_eq!(text("message_type"), sent_text("message_type"));
        assert_eq!(text("agent_id"), sent_text("agent_id"));
        assert_eq!(text("agent_name"), sent_text("agent_name"));
        assert_eq!(text("framework"), sent_text("framework"));
        assert_eq!(text("error_message"), sent_text("error_message"));
        assert_eq!(r.get::<_, bool>("success"), s["success"].as_bool().unwrap());
        assert_eq!(
            i64::from(r.get::<_, i32>("input_tokens")),
            s["input_tokens"].as_i64().unwrap()
        );
        assert_eq!(
            i64::from(r.get::<_, i32>("output_tokens")),
            s["output_tokens"].as_i64().unwrap()
        );
        let rt = r.get::<_, Option<i32>>("response_time_ms").unwrap();
        assert!(
            (i64::from(rt) - s["response_time_ms"].as_i64().unwrap()).abs() <= 1,
            "{rt} {s}"
        );
        assert_eq!(
            r.get::<_, i64>("ts_us"),
            s["start_ns"].as_i64().unwrap() / 1000,
            "timestamp = span start"
        );
        let whole: Value = r.get("whole");
        assert_eq!(whole["cache_read_tokens"], s["cache_read_tokens"], "{s}");
        assert_eq!(whole["reasoning_tokens"], s["reasoning_tokens"], "{s}");
        // The user id from the documented namespace.
        let expected: String = client
            .query_one(
                "SELECT CASE WHEN $1::text IS NULL THEN '00000000-0000-0000-0000-000000000000'
                             WHEN $1 ~* '^[0-9a-f-]{36}$' THEN $1
                             ELSE uuid_generate_v5($2::text::uuid, $1)::text END",
                &[&s["user"].as_str(), &USER_NAMESPACE],
            )
            .unwrap()
            .get(0);
        assert_eq!(text("user_id").unwrap(), expected, "{s}");
        let meta: Value = r.get("request_metadata");
        assert_eq!(
            meta["span_name"].as_str().unwrap().split(' ').next(),
            s["message_type"].as_str()
        );
        assert!(
            meta["attributes"].get("gen_ai.request.temperature").is_some(),
            "{meta}"
        );
    }
    // The row id is the claimed span id.
    let unclaimed: i64 = client
        .query_one(
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed u
              WHERE NOT EXISTS (SELECT 1 FROM usage_analytics.collector_spans s
                                 WHERE s.id = u.id AND s.\"timestamp\" = u.\"timestamp\")",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(unclaimed, 0);
    // Costs: each row's cost is the catalog price of the sent tokens at the span's start.
    let mismatched: i64 = client
        .query_one(
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed u
              WHERE u.cost_usd IS DISTINCT FROM usage_analytics.calculate_cost(
                        u.provider, u.requested_model,
                        jsonb_build_object('input_tokens', u.input_tokens, 'output_tokens', u.output_tokens,
                                           'cache_read_tokens', u.cache_read_tokens,
                                           'cache_write_tokens', u.cache_write_tokens,
                                           'cache_write_1h_tokens', u.cache_write_1h_tokens,
                                           'reasoning_tokens', u.reasoning_tokens),
                        u.\"timestamp\", u.service_tier)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mismatched, 0, "rows whose cost differs from calculate_cost");
    let (priced, unknown): (i64, i64) = client
        .query_one(
            "SELECT count(*) FILTER (WHERE cost_usd IS NOT NULL),
                    count(*) FILTER (WHERE provider = 'acme' AND cost_usd IS NOT NULL)
               FROM usage_analytics.agent_usage_detailed",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    let known = sent.iter().filter(|s| s["provider"] != "acme").count() as i64;
    assert_eq!(priced, known, "every known model priced");
    assert_eq!(unknown, 0, "an unknown model stays unpriced");
}

#[test]
fn sdk_batches_sent_twice_are_recorded_once_with_their_costs() {
    let c = cluster();
    let (url, mut client) = setup(c, "collector_sdk");
    let collector = Collector::start(&url, &["--write-batch-rows=300"]);
    let endpoint = collector.endpoint();
    let mut sent = send_genai_spans(&[&endpoint, "--spans=700", "--batch=128", "--repeat=2", "--seed=3"]);
    let first = sent.len();
    sent.extend(send_genai_spans(&[
        &endpoint,
        "--spans=300",
        "--batch=100",
        "--repeat=2",
        "--seed=4",
        "--gzip",
    ]));
    assert_rows_match(&mut client, &sent);
    let plain = 1000.0 - sent.len() as f64;

    let m = collector.metrics();
    assert_eq!(counter(&m, "usage_collector_spans_received_total"), 2000.0);
    assert_eq!(
        counter(&m, "usage_collector_spans_recorded_total"),
        sent.len() as f64
    );
    assert_eq!(
        counter(&m, "usage_collector_spans_duplicate_total"),
        sent.len() as f64
    );
    assert_eq!(counter(&m, "usage_collector_spans_ignored_total"), 2.0 * plain);
    assert_eq!(counter(&m, "usage_collector_spans_rejected_total"), 0.0);
    assert!(counter(&m, "usage_collector_batch_write_duration_seconds_count") >= 1.0);
    assert_eq!(m.sum("usage_collector_requests_total", &[("code", "200")]), 18.0);

    // The same batches from a second collector (e.g. after a restart): still once.
    drop(collector);
    let again = Collector::start(&url, &[]);
    send_genai_spans(&[
        &again.endpoint(),
        "--spans=700",
        "--batch=128",
        "--repeat=1",
        "--seed=3",
    ]);
    assert_rows_match(&mut client, &sent);
    let m = again.metrics();
    assert_eq!(counter(&m, "usage_collector_spans_recorded_total"), 0.0);
    assert_eq!(counter(&m, "usage_collector_spans_duplicate_total"), first as f64);
}

/// An OTLP JSON request of the given spans (each a JSON span object).
fn json_request(spans: &[Value]) -> Vec<u8> {
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "it"}, "spans": spans}]
    }]})
    .to_string()
    .into_bytes()
}

fn json_span(span_id: &str, input: i64, output: i64) -> Value {
    serde_json::json!({
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": span_id,
        "name": "chat gpt-4o-mini",
        "kind": 3,
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225600250000000",
        "attributes": [
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": input.to_string()}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": output}},
            {"key": "user.id", "value": {"stringValue": "json-user"}}
        ],
        "status": {}
    })
}

#[test]
fn json_gzip_malformed_bodies_content_types_sizes_and_partial_success() {
    let c = cluster();
    let (url, mut client) = setup(c, "collector_http");
    let collector = Collector::start(&url, &["--max-body-size=64KiB", "--max-spans-per-request=50"]);
    let count = |client: &mut Client| -> i64 {
        client
            .query_one("SELECT count(*) FROM usage_analytics.agent_usage_detailed", &[])
            .unwrap()
            .get(0)
    };

    // JSON, then the same body gzip-compressed: one row.
    let body = json_request(&[json_span("eee19b7ec3c1b174", 1000, 100)]);
    let r = collector.post(&[JSON], &body);
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let r = collector.post(&[JSON, GZIP], &gzip(&body));
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    assert_eq!(count(&mut client), 1);
    let (cost, expected): (String, String) = client
        .query_one(
            "SELECT cost_usd::text, usage_analytics.calculate_cost('openai', 'gpt-4o-mini', 1000, 100, \"timestamp\")::text
               FROM usage_analytics.agent_usage_detailed",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(cost, expected);

    // A span with negative tokens is rejected, its neighbour recorded.
    let body = json_request(&[
        json_span("0000000000000001", -5, 10),
        json_span("0000000000000002", 5, 10),
    ]);
    let r = collector.post(&[JSON], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("0000000000000001") && msg.contains("must be >= 0"),
        "{msg}"
    );
    assert_eq!(count(&mut client), 2);

    // Protobuf: the answer is an ExportTraceServiceResponse whose partial_success carries
    // the message (protobuf strings are their UTF-8 bytes).
    let garbage = collector.post(&[PROTOBUF], b"\x0a\xff\xff\xff\xff\x0f garbage");
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    assert_eq!(collector.post(&[JSON], b"{\"resourceSpans\": [").status, 400);
    assert_eq!(collector.post(&[JSON, GZIP], b"not gzip at all").status, 400);

    // Content types and encodings.
    for (headers, status) in [
        (vec![("Content-Type", "text/plain")], 415),
        (vec![("Content-Type", "application/grpc")], 415),
        (vec![JSON, ("Content-Encoding", "br")], 415),
    ] {
        assert_eq!(collector.post(&headers, &body).status, status, "{headers:?}");
    }

    // Too large: as sent, after decompression (a small gzip bomb), or too many spans.
    let big = vec![b' '; 70 * 1024];
    assert_eq!(collector.post(&[JSON], &big).status, 413);
    let bomb = gzip(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(collector.post(&[JSON, GZIP], &bomb).status, 413);
    let many: Vec<Value> = (0..51)
        .map(|i| json_span(&format!("{:016x}", 1000 + i), 1, 1))
        .collect();
    let r = collector.post(&[JSON], &json_request(&many));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(count(&mut client), 2, "refused requests record nothing");

    let m = collector.metrics();
    assert_eq!(counter(&m, "usage_collector_spans_rejected_total"), 1.0);
    assert_eq!(m.sum("usage_collector_requests_total", &[("code", "415")]), 3.0);
    assert_eq!(m.sum("usage_collector_requests_total", &[("code", "413")]), 3.0);
    assert_eq!(m.sum("usage_collector_requests_total", &[("code", "400")]), 3.0);
    let (status, body) = collector.get("/health");
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[test]
fn database_stopped_answers_503_with_retry_after_then_recovers_without_loss() {
    let own = Cluster::init("collector_down");
    own.pg_ctl_start();
    let (url, client) = setup(&own, "collector_down");
    drop(client);
    let collector = Collector::start(
        &url,
        &["--write-timeout=2s", "--retry-after=1", "--health-timeout=500ms"],
    );
    let endpoint = collector.endpoint();
    let mut sent = send_genai_spans(&[&endpoint, "--spans=50", "--batch=25", "--repeat=1", "--seed=7"]);

    own.pg_ctl_stop("fast");
    let body = json_request(&[json_span("00000000000000aa", 10, 10)]);
    let r = collector.post(&[JSON], &body);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    let (status, _) = collector.get("/health");
    assert_eq!(status, 503);

    // The SDK exporter retries (honouring Retry-After) while the database comes back.
    let sender = std::thread::spawn({
        let endpoint = endpoint.clone();
        move || {
            send_genai_spans(&[
                &endpoint,
                "--spans=60",
                "--batch=20",
                "--repeat=2",
                "--seed=8",
                "--timeout=60",
            ])
        }
    });
    std::thread::sleep(Duration::from_millis(2500));
    own.pg_ctl_start();
    sent.extend(sender.join().unwrap());
    let r = collector.post(&[JSON], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, _) = collector.get("/health");
    assert_eq!(status, 200);

    let mut client = own.connect(&url_db(&url));
    let json_rows: i64 = client
        .query_one(
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'json-svc'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(json_rows, 1);
    client
        .batch_execute("DELETE FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'json-svc'")
        .unwrap();
    assert_rows_match(&mut client, &sent);
    let m = collector.metrics();
    assert!(counter(&m, "usage_collector_spans_unavailable_total") >= 1.0);
    assert!(counter(&m, "usage_collector_batch_write_errors_total") >= 1.0);
    assert!(m.sum("usage_collector_requests_total", &[("code", "503")]) >= 1.0);
}

/// The database name of a key=value URL.
fn url_db(url: &str) -> String {
    url.split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap()
        .to_string()
}
