//! The collector's own metrics, rendered in the Prometheus text format 0.0.4.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the batch-write latency histogram.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// HTTP answers counted per status code.
const CODES: &[u16] = &[200, 400, 404, 405, 408, 413, 415, 503];

#[derive(Default)]
pub struct Metrics {
    pub spans_received: AtomicU64,
    pub spans_recorded: AtomicU64,
    pub spans_rejected: AtomicU64,
    pub spans_duplicate: AtomicU64,
    pub spans_ignored: AtomicU64,
    pub spans_unavailable: AtomicU64,
    pub batch_errors: AtomicU64,
    pub queued_spans: AtomicU64,
    requests: [AtomicU64; CODES.len()],
    batch_seconds: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        add(counter, n);
    }

    pub fn request(&self, code: u16) {
        if let Some(i) = CODES.iter().position(|&c| c == code) {
            add(&self.requests[i], 1);
        }
    }

    pub fn observe_batch(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut h = self.batch_seconds.lock().unwrap_or_else(|e| e.into_inner());
        for (i, &le) in BUCKETS.iter().enumerate() {
            if secs <= le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters: [(&str, &str, &AtomicU64); 7] = [
            (
                "usage_collector_spans_received_total",
                "Spans received in export requests that decoded (GenAI or not).",
                &self.spans_received,
            ),
            (
                "usage_collector_spans_recorded_total",
                "GenAI spans recorded as new usage rows (committed).",
                &self.spans_recorded,
            ),
            (
                "usage_collector_spans_rejected_total",
                "GenAI spans refused (invalid tokens, ids or identifiers), reported in partial_success.",
                &self.spans_rejected,
            ),
            (
                "usage_collector_spans_duplicate_total",
                "GenAI spans not recorded because they were recorded before (a resent batch).",
                &self.spans_duplicate,
            ),
            (
                "usage_collector_spans_ignored_total",
                "Spans without any gen_ai.usage.* attribute, not recorded.",
                &self.spans_ignored,
            ),
            (
                "usage_collector_spans_unavailable_total",
                "GenAI spans answered 503 (database down or slow, or queue full); the sender retries them.",
                &self.spans_unavailable,
            ),
            (
                "usage_collector_batch_write_errors_total",
                "Batch writes that failed and were rolled back.",
                &self.batch_errors,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        let name = "usage_collector_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Answers to POST /v1/traces by HTTP status code.\n# TYPE {name} counter"
        );
        for (code, c) in CODES.iter().zip(&self.requests) {
            let _ = writeln!(out, "{name}{{code=\"{code}\"}} {}", get(c));
        }
        let name = "usage_collector_queued_spans";
        let _ = writeln!(
            out,
            "# HELP {name} GenAI spans accepted and waiting for their batch to commit.\n# TYPE {name} gauge\n{name} {}",
            get(&self.queued_spans)
        );
        let name = "usage_collector_batch_write_duration_seconds";
        let h = self.batch_seconds.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP {name} Time to write one batch: connection, claim, insert and commit.\n# TYPE {name} histogram"
        );
        for (le, n) in BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}", h.sum);
        let _ = writeln!(out, "{name}_count {}", h.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.add(&m.spans_received, 5);
        m.add(&m.spans_recorded, 3);
        m.request(200);
        m.request(200);
        m.request(503);
        m.request(999);
        m.observe_batch(Duration::from_millis(3));
        m.observe_batch(Duration::from_secs(20));
        let text = m.render();
        assert!(
            text.contains("usage_collector_spans_received_total 5\n"),
            "{text}"
        );
        assert!(
            text.contains("usage_collector_spans_recorded_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("usage_collector_requests_total{code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("usage_collector_requests_total{code=\"503\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE usage_collector_batch_write_duration_seconds histogram\n"));
        assert!(text.contains("usage_collector_batch_write_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("usage_collector_batch_write_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("usage_collector_batch_write_duration_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("usage_collector_batch_write_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("usage_collector_batch_write_duration_seconds_count 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("usage_collector_"), "{line}");
        }
    }
}
