//! Turns one scrape's query results into Prometheus metric families and
//! renders them in the text format 0.0.4.
//!
//! Every scrape builds fresh families from the database's absolute values;
//! nothing is accumulated in the process except the exporter's own error
//! counters and the gauge cache.
//! Rendering (including label-value escaping of `\`, `"` and newlines) is
//! done by the `prometheus` crate's `TextEncoder`.

use std::collections::BTreeMap;

use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::model::{ExporterStatus, Gauges, Usage, UsageRow};

/// The content type of /metrics.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut lp = LabelPair::default();
            lp.set_name((*name).to_string());
            lp.set_value((*value).to_string());
            lp
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

/// A family, or nothing when it has no series (the text format has no empty families).
fn family(name: &str, help: &str, ty: MetricType, metrics: Vec<Metric>) -> Option<MetricFamily> {
    if metrics.is_empty() {
        return None;
    }
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(ty);
    f.set_metric(metrics);
    Some(f)
}

fn status(success: Option<bool>) -> &'static str {
    // NULL is "not known to have succeeded".
    if success == Some(true) {
        "success"
    } else {
        "error"
    }
}

/// One histogram series, summed over the rows that share (provider, framework).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSeries {
    pub count: u64,
    pub sum_seconds: f64,
    /// Cumulative counts, one per bound.
    pub buckets: Vec<u64>,
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Sums the rows' cumulative bucket arrays per (provider, framework). Errors (the histogram
/// is then left out, never half-shown) when the bounds are not strictly increasing finite
/// numbers or a row's array does not have one count per bound.
pub fn assemble_histograms(
    rows: &[UsageRow],
    bounds: &[f64],
) -> Result<BTreeMap<(String, String), HistogramSeries>, String> {
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "bucket bounds are not strictly increasing finite numbers: {bounds:?}"
        ));
    }
    let mut out: BTreeMap<(String, String), HistogramSeries> = BTreeMap::new();
    for row in rows {
        let zeros;
        let buckets: &[i64] = match &row.response_time_buckets {
            Some(b) => b,
            None => {
                zeros = vec![0; bounds.len()];
                &zeros
            }
        };
        if buckets.len() != bounds.len() {
            return Err(format!(
                "{} bucket counts for {} bounds (provider {:?}, framework {:?})",
                buckets.len(),
                bounds.len(),
                row.provider,
                row.framework
            ));
        }
        let series = out
            .entry((row.provider.clone(), row.framework.clone()))
            .or_insert_with(|| HistogramSeries {
                count: 0,
                sum_seconds: 0.0,
                buckets: vec![0; bounds.len()],
            });
        series.count = series.count.saturating_add(non_negative(row.response_time_count));
        series.sum_seconds += row.response_time_sum_seconds;
        for (acc, b) in series.buckets.iter_mut().zip(buckets) {
            *acc = acc.saturating_add(non_negative(*b));
        }
    }
    Ok(out)
}

const REQUESTS: &str = "ai_usage_requests_total";
const TOKENS: &str = "ai_usage_tokens_total";
const COST: &str = "ai_usage_cost_usd_total";
const UNPRICED: &str = "ai_usage_unpriced_requests_total";
const RESPONSE_TIME: &str = "ai_usage_response_time_seconds";
const ACTIVE_USERS: &str = "ai_usage_active_users";
const TOP_USER_COST: &str = "ai_usage_top_user_cost_usd";
const ROLLUP_LAST_SUCCESS: &str = "ai_usage_rollup_last_success_timestamp_seconds";
const UP: &str = "ai_usage_exporter_up";
const SCRAPE_DURATION: &str = "ai_usage_exporter_scrape_duration_seconds";
const SCRAPE_ERRORS: &str = "ai_usage_exporter_scrape_errors_total";
const GAUGE_REFRESH_ERRORS: &str = "ai_usage_exporter_cache_refresh_errors_total";
const GAUGES_STALE: &str = "ai_usage_exporter_cache_stale";
const GAUGES_AGE: &str = "ai_usage_exporter_cache_age_seconds";

/// Builds the metric families. `usage`/`gauges` are `None` when they could not be read (then
/// only the exporter's own metrics are produced). Returns problems that left a family out.
pub fn build_families(
    usage: Option<&Usage>,
    gauges: Option<&Gauges>,
    status_: &ExporterStatus,
) -> (Vec<MetricFamily>, Vec<String>) {
    let mut families = Vec::new();
    let mut warnings = Vec::new();

    if let Some(usage) = usage {
        usage_families(usage, &mut families, &mut warnings);
    }
    if let Some(g) = gauges {
        let active = g
            .active_users
            .iter()
            .map(|(window, users)| gauge(&[("window", window)], *users as f64))
            .collect();
        families.extend(family(
            ACTIVE_USERS,
            "Distinct users with at least one request in the window (1h, 24h, 30d). Refreshed at most every --gauge-refresh-interval.",
            MetricType::GAUGE,
            active,
        ));
        let top = g
            .top_users
            .iter()
            .map(|u| {
                gauge(
                    &[("user_id", &u.user_id), ("rank", &u.rank.to_string())],
                    u.cost_usd,
                )
            })
            .collect();
        families.extend(family(
            TOP_USER_COST,
            "Cost in USD today (UTC) of the top users by cost; rank 1 is the most expensive. Refreshed at most every --gauge-refresh-interval.",
            MetricType::GAUGE,
            top,
        ));
    }
    if let Some(ts) = usage.and_then(|u| u.rollup_last_success) {
        families.extend(family(
            ROLLUP_LAST_SUCCESS,
            "Unix time of the last successful daily rollup run. Absent while no rollup has ever run.",
            MetricType::GAUGE,
            vec![gauge(&[], ts)],
        ));
    }

    families.extend(family(
        UP,
        "1 when the last scrape's database queries succeeded, 0 otherwise (then no usage series are exported).",
        MetricType::GAUGE,
        vec![gauge(&[], if status_.up { 1.0 } else { 0.0 })],
    ));
    families.extend(family(
        SCRAPE_DURATION,
        "Time the last scrape spent reading the database, in seconds.",
        MetricType::GAUGE,
        vec![gauge(&[], status_.scrape_duration_seconds)],
    ));
    families.extend(family(
        SCRAPE_ERRORS,
        "Scrapes whose database work failed or timed out, since the exporter started.",
        MetricType::COUNTER,
        vec![counter(&[], status_.scrape_errors_total as f64)],
    ));
    families.extend(family(
        GAUGE_REFRESH_ERRORS,
        "Refreshes of the cached gauges (ai_usage_active_users, ai_usage_top_user_cost_usd) that failed or timed out, since the exporter started. A failed refresh keeps the last good values and is retried one --gauge-refresh-interval later.",
        MetricType::COUNTER,
        vec![counter(&[], status_.gauge_refresh_errors_total as f64)],
    ));
    families.extend(family(
        GAUGES_STALE,
        "1 when the last refresh of the cached gauges failed, so the ones served (if any) are the last good values; 0 otherwise.",
        MetricType::GAUGE,
        vec![gauge(&[], if status_.gauges_stale { 1.0 } else { 0.0 })],
    ));
    if let Some(age) = status_.gauges_age_seconds {
        families.extend(family(
            GAUGES_AGE,
            "Seconds since the served cached gauges were read (at the start of this scrape). Absent when none are served.",
            MetricType::GAUGE,
            vec![gauge(&[], age)],
        ));
    }
    (families, warnings)
}

type Key4 = (String, String, String, String);

fn usage_families(usage: &Usage, families: &mut Vec<MetricFamily>, warnings: &mut Vec<String>) {
    // Aggregate into ordered maps: deterministic output, one series per label set.
    let mut requests: BTreeMap<(Key4, String, &'static str), f64> = BTreeMap::new();
    let mut tokens: BTreeMap<Key4, (f64, f64)> = BTreeMap::new();
    let mut cost: BTreeMap<Key4, f64> = BTreeMap::new();
    let mut unpriced: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &usage.rows {
        let k4 = (
            r.provider.clone(),
            r.framework.clone(),
            r.agent_id.clone(),
            r.model.clone(),
        );
        *requests
            .entry((k4.clone(), r.message_type.clone(), status(r.success)))
            .or_default() += r.requests as f64;
        let t = tokens.entry(k4.clone()).or_default();
        t.0 += r.input_tokens;
        t.1 += r.output_tokens;
        *cost.entry(k4).or_default() += r.cost_usd;
        *unpriced.entry((r.provider.clone(), r.model.clone())).or_default() += r.unpriced_requests as f64;
    }

    let series = requests
        .iter()
        .map(|(((p, f, a, m), mt, st), v)| {
            counter(
                &[
                    ("provider", p),
                    ("framework", f),
                    ("agent_id", a),
                    ("model", m),
                    ("message_type", mt),
                    ("status", st),
                ],
                *v,
            )
        })
        .collect();
    families.extend(family(
        REQUESTS,
        "AI requests recorded, by outcome (status: success or error).",
        MetricType::COUNTER,
        series,
    ));

    let series = tokens
        .iter()
        .flat_map(|((p, f, a, m), (input, output))| {
            [("input", *input), ("output", *output)].map(|(dir, v)| {
                counter(
                    &[
                        ("provider", p),
                        ("framework", f),
                        ("agent_id", a),
                        ("model", m),
                        ("direction", dir),
                    ],
                    v,
                )
            })
        })
        .collect();
    families.extend(family(
        TOKENS,
        "Tokens processed, by direction (input or output).",
        MetricType::COUNTER,
        series,
    ));

    let series = cost
        .iter()
        .map(|((p, f, a, m), v)| {
            counter(
                &[("provider", p), ("framework", f), ("agent_id", a), ("model", m)],
                *v,
            )
        })
        .collect();
    families.extend(family(
        COST,
        "Cost of the recorded requests in USD (requests without a known price count 0).",
        MetricType::COUNTER,
        series,
    ));

    let series = unpriced
        .iter()
        .filter(|(_, v)| **v != 0.0)
        .map(|((p, m), v)| counter(&[("provider", p), ("model", m)], *v))
        .collect();
    families.extend(family(
        UNPRICED,
        "Requests whose cost is unknown because no price matched the provider and model.",
        MetricType::COUNTER,
        series,
    ));

    match assemble_histograms(&usage.rows, &usage.bucket_bounds) {
        Ok(hists) => {
            let series = hists
                .iter()
                .map(|((p, f), h)| {
                    let mut hist = Histogram::default();
                    hist.set_sample_count(h.count);
                    hist.set_sample_sum(h.sum_seconds);
                    hist.set_bucket(
                        usage
                            .bucket_bounds
                            .iter()
                            .zip(&h.buckets)
                            .map(|(bound, n)| {
                                let mut b = Bucket::default();
                                b.set_upper_bound(*bound);
                                b.set_cumulative_count(*n);
                                b
                            })
                            .collect(),
                    );
                    let mut m = Metric::from_label(labels(&[("provider", p), ("framework", f)]));
                    m.set_histogram(hist);
                    m
                })
                .collect();
            families.extend(family(
                RESPONSE_TIME,
                "Response time of the recorded requests in seconds.",
                MetricType::HISTOGRAM,
                series,
            ));
        }
        Err(e) => warnings.push(format!("{RESPONSE_TIME} left out: {e}")),
    }
}

/// Renders families in the text format 0.0.4.
pub fn encode(families: &[MetricFamily]) -> String {
    let mut buf = Vec::new();
    // Only fails for a family without series or name, which build_families never produces.
    if let Err(e) = TextEncoder::new().encode(families, &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Builds and renders one scrape's exposition.
pub fn render(
    usage: Option<&Usage>,
    gauges: Option<&Gauges>,
    status_: &ExporterStatus,
) -> (String, Vec<String>) {
    let (families, warnings) = build_families(usage, gauges, status_);
    (encode(&families), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TopUser;

    const BOUNDS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];

    fn row(provider: &str, framework: &str, agent: &str, success: bool) -> UsageRow {
        UsageRow {
            provider: provider.into(),
            framework: framework.into(),
            agent_id: agent.into(),
            model: "gpt-4o".into(),
            message_type: "chat".into(),
            success: Some(success),
            requests: 3,
            input_tokens: 100.0,
            output_tokens: 50.0,
            cost_usd: 0.25,
            unpriced_requests: 0,
            response_time_count: 3,
            response_time_sum_seconds: 1.5,
            response_time_buckets: Some(vec![0, 1, 2, 3, 3, 3, 3, 3, 3, 3]),
        }
    }

    fn up_status() -> ExporterStatus {
        ExporterStatus {
            up: true,
            scrape_duration_seconds: 0.012,
            scrape_errors_total: 2,
            gauge_refresh_errors_total: 0,
            gauges_stale: false,
            gauges_age_seconds: None,
        }
    }

    /// (name, labels, value) of one sample line.
    type Sample = (String, Vec<(String, String)>, String);

    /// Minimal parser of one sample line, for round-trip checks.
    fn parse_sample(line: &str) -> Sample {
        let mut chars = line.chars().peekable();
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '{' || c == ' ' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut labels = Vec::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let mut lname = String::new();
                for c in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    lname.push(c);
                }
                assert_eq!(chars.next(), Some('"'), "line: {line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        '\\' => match chars.next().expect("dangling backslash") {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("invalid escape \\{other} in {line}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline in label value"),
                        c => value.push(c),
                    }
                }
                labels.push((lname, value));
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("unexpected {other:?} in {line}"),
                }
            }
        }
        assert_eq!(chars.next(), Some(' '), "line: {line}");
        let value: String = chars.collect();
        assert!(!value.contains(' '), "timestamp or junk in {line}");
        (name, labels, value)
    }

    fn samples(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(parse_sample)
            .collect()
    }

    fn usage(rows: Vec<UsageRow>) -> Usage {
        Usage {
            rows,
            bucket_bounds: BOUNDS.to_vec(),
            rollup_last_success: Some(1_700_000_000.5),
        }
    }

    #[test]
    fn hostile_label_values_round_trip() {
        let long = "x".repeat(10_000);
        let hostile = [
            "back\\slash",
            "quo\"te",
            "new\nline",
            "\\n literal",
            "trailing\\",
            "\"",
            "ünïcödé ✓ 日本語 🚀",
            "tab\tcr\r",
            "} , = {",
            "",
            long.as_str(),
        ];
        let rows: Vec<UsageRow> = hostile
            .iter()
            .map(|a| row("openai", "langchain", a, true))
            .collect();
        let (text, warnings) = render(Some(&usage(rows)), None, &up_status());
        assert!(warnings.is_empty(), "{warnings:?}");
        let parsed = samples(&text);
        for agent in hostile {
            let hits = parsed
                .iter()
                .filter(|(name, labels, _)| {
                    name == "ai_usage_requests_total"
                        && labels.iter().any(|(k, v)| k == "agent_id" && v == agent)
                })
                .count();
            assert_eq!(hits, 1, "agent_id {agent:?} not found exactly once");
        }
        // Every line is a comment or a sample: no raw newline leaked from a value.
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("ai_usage_")
            );
        }
    }

    #[test]
    fn escaping_is_exact() {
        let (text, _) = render(
            Some(&usage(vec![row("a\"b", "c\\d", "e\nf", true)])),
            None,
            &up_status(),
        );
        assert!(
            text.contains(r#"ai_usage_cost_usd_total{provider="a\"b",framework="c\\d",agent_id="e\nf",model="gpt-4o"} 0.25"#),
            "{text}"
        );
    }

    #[test]
    fn counters_and_labels() {
        let mut r2 = row("openai", "langchain", "agent-1", false);
        r2.requests = 1;
        r2.cost_usd = 0.0;
        r2.unpriced_requests = 1;
        let mut r3 = row("openai", "langchain", "agent-1", true);
        r3.message_type = "tool_execution".into();
        let rows = vec![row("openai", "langchain", "agent-1", true), r2, r3];
        let (text, _) = render(Some(&usage(rows)), None, &up_status());
        let expect = [
            r#"ai_usage_requests_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",message_type="chat",status="error"} 1"#,
            r#"ai_usage_requests_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",message_type="chat",status="success"} 3"#,
            r#"ai_usage_requests_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",message_type="tool_execution",status="success"} 3"#,
            r#"ai_usage_tokens_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",direction="input"} 300"#,
            r#"ai_usage_tokens_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",direction="output"} 150"#,
            r#"ai_usage_cost_usd_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o"} 0.5"#,
            r#"ai_usage_unpriced_requests_total{provider="openai",model="gpt-4o"} 1"#,
            "ai_usage_rollup_last_success_timestamp_seconds 1700000000.5",
            "ai_usage_exporter_up 1",
            "ai_usage_exporter_scrape_duration_seconds 0.012",
            "ai_usage_exporter_scrape_errors_total 2",
            "# TYPE ai_usage_requests_total counter",
            "# TYPE ai_usage_response_time_seconds histogram",
            "# TYPE ai_usage_exporter_up gauge",
        ];
        for line in expect {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every family has HELP and TYPE exactly once.
        for f in build_families(Some(&usage(vec![row("p", "f", "a", true)])), None, &up_status()).0 {
            assert!(!f.help().is_empty());
            assert_eq!(text.matches(&format!("# TYPE {} ", f.name())).count(), 1);
        }
    }

    #[test]
    fn zero_unpriced_series_are_left_out() {
        let (text, _) = render(
            Some(&usage(vec![row("openai", "x", "a", true)])),
            None,
            &up_status(),
        );
        assert!(!text.contains("ai_usage_unpriced_requests_total"), "{text}");
    }

    #[test]
    fn histogram_sums_label_sets() {
        let mut a = row("openai", "langchain", "a1", true);
        a.response_time_buckets = Some(vec![1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
        a.response_time_count = 2;
        a.response_time_sum_seconds = 2.05;
        let mut b = row("openai", "langchain", "a2", false);
        b.response_time_buckets = Some(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.response_time_count = 2; // one request above 60 s
        b.response_time_sum_seconds = 150.0;
        let mut c = row("anthropic", "autogen", "a1", true);
        c.response_time_buckets = None;
        c.response_time_count = 0;
        c.response_time_sum_seconds = 0.0;
        let h = assemble_histograms(&[a.clone(), b.clone(), c.clone()], &BOUNDS).unwrap();
        assert_eq!(h.len(), 2);
        let oa = &h[&("openai".to_string(), "langchain".to_string())];
        assert_eq!(oa.count, 4);
        assert!((oa.sum_seconds - 152.05).abs() < 1e-9);
        assert_eq!(oa.buckets, vec![1, 1, 1, 1, 2, 2, 2, 2, 2, 3]);
        assert_eq!(
            h[&("anthropic".to_string(), "autogen".to_string())].buckets,
            vec![0; 10]
        );

        let (text, _) = render(Some(&usage(vec![a, b, c])), None, &up_status());
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("provider=\"openai\",framework=\"langchain\"}")
                    || l.contains("provider=\"openai\",framework=\"langchain\",le=")
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="0.1"} 1"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="0.25"} 1"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="0.5"} 1"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="1"} 1"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="2.5"} 2"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="5"} 2"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="10"} 2"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="20"} 2"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="30"} 2"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="60"} 3"#,
                r#"ai_usage_response_time_seconds_bucket{provider="openai",framework="langchain",le="+Inf"} 4"#,
                r#"ai_usage_response_time_seconds_sum{provider="openai",framework="langchain"} 152.05"#,
                r#"ai_usage_response_time_seconds_count{provider="openai",framework="langchain"} 4"#,
            ]
        );
    }

    #[test]
    fn bad_histogram_input_is_left_out_with_a_warning() {
        let mut r = row("openai", "x", "a", true);
        r.response_time_buckets = Some(vec![1, 2, 3]);
        assert!(assemble_histograms(std::slice::from_ref(&r), &BOUNDS).is_err());
        assert!(assemble_histograms(&[], &[1.0, 0.5]).is_err());
        assert!(assemble_histograms(&[], &[1.0, f64::INFINITY]).is_err());
        let (text, warnings) = render(Some(&usage(vec![r])), None, &up_status());
        assert_eq!(warnings.len(), 1);
        assert!(!text.contains("ai_usage_response_time_seconds"));
        assert!(text.contains("ai_usage_requests_total{"));
    }

    #[test]
    fn down_scrape_has_only_exporter_metrics() {
        let status = ExporterStatus {
            up: false,
            scrape_duration_seconds: 0.8,
            scrape_errors_total: 5,
            gauge_refresh_errors_total: 1,
            gauges_stale: true,
            gauges_age_seconds: None,
        };
        let (text, _) = render(None, None, &status);
        let names: Vec<String> = samples(&text).into_iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            vec![
                "ai_usage_exporter_up",
                "ai_usage_exporter_scrape_duration_seconds",
                "ai_usage_exporter_scrape_errors_total",
                "ai_usage_exporter_cache_refresh_errors_total",
                "ai_usage_exporter_cache_stale",
            ]
        );
        assert!(text.contains("ai_usage_exporter_up 0\n"));
        assert!(text.contains("ai_usage_exporter_cache_refresh_errors_total 1\n"));
        assert!(text.contains("ai_usage_exporter_cache_stale 1\n"));
        assert!(text.contains("ai_usage_exporter_scrape_errors_total 5\n"));
    }

    #[test]
    fn null_rollup_is_omitted() {
        let mut u = usage(vec![]);
        u.rollup_last_success = None;
        let (text, _) = render(Some(&u), None, &up_status());
        assert!(!text.contains("ai_usage_rollup_last_success_timestamp_seconds"));
        // Empty usage: no usage families at all, but valid output.
        assert!(!text.contains("ai_usage_requests_total"));
        assert!(text.contains("ai_usage_exporter_up 1"));
    }

    #[test]
    fn gauges() {
        let g = Gauges {
            active_users: vec![("1h".into(), 2), ("24h".into(), 5), ("30d".into(), 9)],
            top_users: vec![TopUser {
                rank: 1,
                user_id: "00000000-0000-0000-0000-000000000001".into(),
                cost_usd: 1.25,
            }],
        };
        let (text, _) = render(Some(&usage(vec![])), Some(&g), &up_status());
        for line in [
            r#"ai_usage_active_users{window="1h"} 2"#,
            r#"ai_usage_active_users{window="30d"} 9"#,
            r#"ai_usage_top_user_cost_usd{user_id="00000000-0000-0000-0000-000000000001",rank="1"} 1.25"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn stale_gauges_are_served_with_their_age() {
        let g = Gauges {
            active_users: vec![("24h".into(), 4)],
            top_users: vec![],
        };
        let status = ExporterStatus {
            gauge_refresh_errors_total: 3,
            gauges_stale: true,
            gauges_age_seconds: Some(95.5),
            ..up_status()
        };
        let (text, _) = render(Some(&usage(vec![])), Some(&g), &status);
        for line in [
            r#"ai_usage_active_users{window="24h"} 4"#,
            "ai_usage_exporter_up 1",
            "ai_usage_exporter_cache_refresh_errors_total 3",
            "ai_usage_exporter_cache_stale 1",
            "ai_usage_exporter_cache_age_seconds 95.5",
            "# TYPE ai_usage_exporter_cache_refresh_errors_total counter",
            "# TYPE ai_usage_exporter_cache_stale gauge",
            "# TYPE ai_usage_exporter_cache_age_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        let (text, _) = render(Some(&usage(vec![])), None, &up_status());
        assert!(text.contains("ai_usage_exporter_cache_stale 0\n"), "{text}");
        assert!(!text.contains("ai_usage_exporter_cache_age_seconds"), "{text}");
    }

    #[test]
    fn null_success_counts_as_error() {
        let mut r = row("p", "f", "a", true);
        r.success = None;
        let (text, _) = render(Some(&usage(vec![r])), None, &up_status());
        assert!(text.contains(r#"status="error"} 3"#));
    }
}
