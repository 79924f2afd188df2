//! The lifetime usage counters and the response-time histogram, from
//! `usage_analytics.metrics_usage_counters()` (one row per label set, totals
//! kept by the extension, so a scrape never reads the usage table) and the
//! histogram's bucket bounds from
//! `usage_analytics.metrics_response_time_bucket_bounds()`: the exporter has
//! no bounds of its own, so the bounds and the counts always come from the
//! same installed extension.

use std::collections::BTreeMap;

use tokio_postgres::Row;

use super::{Collector, Options, Output, Tier};
use crate::db::{column, DbError, Query};
use crate::exposition::{Desc, Family, HistogramValue, MetricType};

/// The labels every usage series carries.
const USAGE_LABELS: [&str; 4] = ["provider", "framework", "agent_id", "model"];

pub static REQUESTS: Desc = Desc {
    name: "ai_usage_requests_total",
    kind: MetricType::Counter,
    help: "AI requests recorded, by outcome (status: success or error).",
    labels: &[
        "provider",
        "framework",
        "agent_id",
        "model",
        "message_type",
        "status",
    ],
};
pub static TOKENS: Desc = Desc {
    name: "ai_usage_tokens_total",
    kind: MetricType::Counter,
    help: "Tokens processed, by direction: input (every input token, cached ones included), output (reasoning included), and of those cache_read, cache_write (5-minute and 1-hour cache writes) and reasoning.",
    labels: &["provider", "framework", "agent_id", "model", "direction"],
};
pub static COST: Desc = Desc {
    name: "ai_usage_cost_usd_total",
    kind: MetricType::Counter,
    help: "Cost of the recorded requests in USD (requests without a known price count 0).",
    labels: &USAGE_LABELS,
};
pub static UNPRICED: Desc = Desc {
    name: "ai_usage_unpriced_requests_total",
    kind: MetricType::Counter,
    help: "Requests whose cost is unknown because no price matched the provider and model.",
    labels: &["provider", "model"],
};
pub static RESPONSE_TIME: Desc = Desc {
    name: "ai_usage_response_time_seconds",
    kind: MetricType::Histogram,
    help: "Response time of the recorded requests in seconds.",
    labels: &["provider", "framework"],
};

/// The `direction` values of `ai_usage_tokens_total`, in export order, each with the
/// column of [`SQL_COUNTERS`] that holds it.
pub const TOKEN_DIRECTIONS: &[(&str, &str)] = &[
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("reasoning", "reasoning_tokens"),
];

const SQL_COUNTERS: &str = "SELECT provider, framework, agent_id, model, message_type, success, \
       requests::int8, input_tokens::float8, output_tokens::float8, cost_usd::float8, \
       unpriced_requests::int8, response_time_count::int8, response_time_sum_seconds::float8, \
       response_time_buckets::int8[], cache_read_tokens::float8, cache_write_tokens::float8, \
       reasoning_tokens::float8 \
  FROM usage_analytics.metrics_usage_counters()";
const SQL_BOUNDS: &str = "SELECT usage_analytics.metrics_response_time_bucket_bounds()::float8[] AS bounds";

/// One row of `metrics_usage_counters()`: lifetime totals for one label set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    pub provider: String,
    pub framework: String,
    pub agent_id: String,
    pub model: String,
    pub message_type: String,
    /// `None` when the database says NULL; exported as status="error".
    pub success: Option<bool>,
    pub requests: i64,
    /// One per [`TOKEN_DIRECTIONS`] entry.
    pub tokens: Vec<f64>,
    pub cost_usd: f64,
    pub unpriced_requests: i64,
    pub response_time_count: i64,
    pub response_time_sum_seconds: f64,
    /// Cumulative counts, one per bucket bound; `None` when the column is NULL.
    pub response_time_buckets: Option<Vec<i64>>,
}

/// What one scrape read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub rows: Vec<UsageRow>,
    /// The histogram's upper bounds in seconds, from `metrics_response_time_bucket_bounds()`.
    pub bucket_bounds: Vec<f64>,
}

pub struct UsageCounters;

impl Collector for UsageCounters {
    type Data = Counters;
    const METRICS: &'static [&'static Desc] = &[&REQUESTS, &TOKENS, &COST, &UNPRICED, &RESPONSE_TIME];
    const TIER: Tier = Tier::EveryScrape;

    fn queries(_: &Options) -> Vec<Query> {
        vec![Query::new(SQL_COUNTERS), Query::new(SQL_BOUNDS)]
    }

    fn read(results: &[Vec<Row>]) -> Result<Counters, DbError> {
        let rows = column::rows(results, 0, "metrics_usage_counters")?
            .iter()
            .map(usage_row)
            .collect::<Result<_, _>>()?;
        let bounds = column::single(
            column::rows(results, 1, "metrics_response_time_bucket_bounds")?,
            "metrics_response_time_bucket_bounds",
        )?;
        let bucket_bounds = column::get::<Option<Vec<Option<f64>>>>(bounds, "bounds")?
            .unwrap_or_default()
            .into_iter()
            .map(|b| b.ok_or_else(|| DbError::Data("NULL response-time bucket bound".into())))
            .collect::<Result<_, _>>()?;
        Ok(Counters { rows, bucket_bounds })
    }

    fn collect(data: &Counters, out: &mut Output) {
        collect_counters(data, out);
        match assemble_histograms(&data.rows, &data.bucket_bounds) {
            Ok(hists) => {
                let mut f = Family::new(&RESPONSE_TIME);
                for ((p, fw), h) in hists {
                    f.add_histogram(
                        &[&p, &fw],
                        HistogramValue {
                            buckets: data.bucket_bounds.iter().copied().zip(h.buckets).collect(),
                            count: h.count,
                            sum: h.sum_seconds,
                        },
                    );
                }
                out.families.push(f);
            }
            Err(e) => out.warnings.push(format!("{} left out: {e}", RESPONSE_TIME.name)),
        }
    }
}

fn usage_row(r: &Row) -> Result<UsageRow, DbError> {
    Ok(UsageRow {
        provider: column::text(r, "provider")?,
        framework: column::text(r, "framework")?,
        agent_id: column::text(r, "agent_id")?,
        model: column::text(r, "model")?,
        message_type: column::text(r, "message_type")?,
        success: column::get(r, "success")?,
        requests: column::int8(r, "requests")?,
        tokens: TOKEN_DIRECTIONS
            .iter()
            .map(|(_, col)| column::float8(r, col))
            .collect::<Result<_, _>>()?,
        cost_usd: column::float8(r, "cost_usd")?,
        unpriced_requests: column::int8(r, "unpriced_requests")?,
        response_time_count: column::int8(r, "response_time_count")?,
        response_time_sum_seconds: column::float8(r, "response_time_sum_seconds")?,
        response_time_buckets: column::get::<Option<Vec<Option<i64>>>>(r, "response_time_buckets")?
            .map(|v| v.into_iter().map(|x| x.unwrap_or(0)).collect()),
    })
}

fn status(success: Option<bool>) -> &'static str {
    // NULL is "not known to have succeeded".
    if success == Some(true) {
        "success"
    } else {
        "error"
    }
}

type Key4 = (String, String, String, String);

/// The counters, summed into ordered maps: deterministic output, one series per label set.
fn collect_counters(data: &Counters, out: &mut Output) {
    let mut requests: BTreeMap<(Key4, String, &'static str), f64> = BTreeMap::new();
    let mut tokens: BTreeMap<Key4, Vec<f64>> = BTreeMap::new();
    let mut cost: BTreeMap<Key4, f64> = BTreeMap::new();
    let mut unpriced: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &data.rows {
        let k4 = (
            r.provider.clone(),
            r.framework.clone(),
            r.agent_id.clone(),
            r.model.clone(),
        );
        *requests
            .entry((k4.clone(), r.message_type.clone(), status(r.success)))
            .or_default() += r.requests as f64;
        let t = tokens
            .entry(k4.clone())
            .or_insert_with(|| vec![0.0; TOKEN_DIRECTIONS.len()]);
        for (acc, v) in t.iter_mut().zip(&r.tokens) {
            *acc += v;
        }
        *cost.entry(k4).or_default() += r.cost_usd;
        *unpriced.entry((r.provider.clone(), r.model.clone())).or_default() += r.unpriced_requests as f64;
    }

    let mut f = Family::new(&REQUESTS);
    for (((p, fw, a, m), mt, st), v) in &requests {
        f.add(&[p, fw, a, m, mt, st], *v);
    }
    out.families.push(f);

    let mut f = Family::new(&TOKENS);
    for ((p, fw, a, m), values) in &tokens {
        for ((direction, _), v) in TOKEN_DIRECTIONS.iter().zip(values) {
            f.add(&[p, fw, a, m, direction], *v);
        }
    }
    out.families.push(f);

    let mut f = Family::new(&COST);
    for ((p, fw, a, m), v) in &cost {
        f.add(&[p, fw, a, m], *v);
    }
    out.families.push(f);

    let mut f = Family::new(&UNPRICED);
    for ((p, m), v) in unpriced.iter().filter(|(_, v)| **v != 0.0) {
        f.add(&[p, m], *v);
    }
    out.families.push(f);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::assert_declared;
    use crate::exposition::encode;
    use crate::exposition::tests::samples;

    /// What `metrics_response_time_bucket_bounds()` returns today (test data only: the
    /// collector always uses what the database says).
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
            tokens: vec![100.0, 50.0],
            cost_usd: 0.25,
            unpriced_requests: 0,
            response_time_count: 3,
            response_time_sum_seconds: 1.5,
            response_time_buckets: Some(vec![0, 1, 2, 3, 3, 3, 3, 3, 3, 3]),
        }
    }

    fn render(rows: Vec<UsageRow>) -> (String, Vec<String>) {
        let mut out = Output::default();
        UsageCounters::collect(
            &Counters {
                rows,
                bucket_bounds: BOUNDS.to_vec(),
            },
            &mut out,
        );
        assert_declared::<UsageCounters>(&out);
        (encode(&out.families), out.warnings)
    }

    #[test]
    fn metrics() {
        let got: Vec<_> = UsageCounters::METRICS
            .iter()
            .map(|d| (d.name, d.kind, d.labels.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("ai_usage_requests_total", MetricType::Counter, 6),
                ("ai_usage_tokens_total", MetricType::Counter, 5),
                ("ai_usage_cost_usd_total", MetricType::Counter, 4),
                ("ai_usage_unpriced_requests_total", MetricType::Counter, 2),
                ("ai_usage_response_time_seconds", MetricType::Histogram, 2),
            ]
        );
    }

    #[test]
    fn every_token_direction_is_queried() {
        for (_, col) in TOKEN_DIRECTIONS {
            assert!(
                SQL_COUNTERS.contains(&format!(" {col}::")),
                "{col} is not selected"
            );
        }
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
        let (text, _) = render(rows);
        let expect = [
            r#"ai_usage_requests_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",message_type="chat",status="error"} 1"#,
            r#"ai_usage_requests_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",message_type="chat",status="success"} 3"#,
            r#"ai_usage_requests_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",message_type="tool_execution",status="success"} 3"#,
            r#"ai_usage_tokens_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",direction="input"} 300"#,
            r#"ai_usage_tokens_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o",direction="output"} 150"#,
            r#"ai_usage_cost_usd_total{provider="openai",framework="langchain",agent_id="agent-1",model="gpt-4o"} 0.5"#,
            r#"ai_usage_unpriced_requests_total{provider="openai",model="gpt-4o"} 1"#,
            "# TYPE ai_usage_requests_total counter",
            "# TYPE ai_usage_response_time_seconds histogram",
        ];
        for line in expect {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        for d in UsageCounters::METRICS {
            assert_eq!(
                text.matches(&format!("# HELP {} ", d.name)).count(),
                1,
                "{}",
                d.name
            );
            assert_eq!(
                text.matches(&format!("# TYPE {} ", d.name)).count(),
                1,
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn escaping_is_exact() {
        let (text, _) = render(vec![row("a\"b", "c\\d", "e\nf", true)]);
        assert!(
            text.contains(r#"ai_usage_cost_usd_total{provider="a\"b",framework="c\\d",agent_id="e\nf",model="gpt-4o"} 0.25"#),
            "{text}"
        );
    }

    #[test]
    fn hostile_label_values_round_trip() {
        let long = "x".repeat(10_000);
        let hostile = [
            "back\\slash",
            "quo\"te",
            "new\nline",
            "trailing\\",
            "",
            "} , = {",
            long.as_str(),
        ];
        let rows = hostile
            .iter()
            .map(|a| row("openai", "langchain", a, true))
            .collect();
        let (text, warnings) = render(rows);
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
    }

    #[test]
    fn zero_unpriced_series_are_left_out() {
        let (text, _) = render(vec![row("openai", "x", "a", true)]);
        assert!(!text.contains("ai_usage_unpriced_requests_total"), "{text}");
    }

    #[test]
    fn no_rows_no_families() {
        let (text, warnings) = render(vec![]);
        assert_eq!(text, "");
        assert!(warnings.is_empty());
    }

    #[test]
    fn null_success_counts_as_error() {
        let mut r = row("p", "f", "a", true);
        r.success = None;
        let (text, _) = render(vec![r]);
        assert!(text.contains(r#"status="error"} 3"#));
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

        let (text, _) = render(vec![a, b, c]);
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
    fn bucket_bounds_are_the_databases() {
        let mut out = Output::default();
        UsageCounters::collect(
            &Counters {
                rows: vec![UsageRow {
                    response_time_buckets: Some(vec![1, 2]),
                    response_time_count: 3,
                    ..row("p", "f", "a", true)
                }],
                bucket_bounds: vec![0.5, 7.0],
            },
            &mut out,
        );
        let text = encode(&out.families);
        assert!(
            text.contains(r#"ai_usage_response_time_seconds_bucket{provider="p",framework="f",le="0.5"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ai_usage_response_time_seconds_bucket{provider="p",framework="f",le="7"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ai_usage_response_time_seconds_bucket{provider="p",framework="f",le="+Inf"} 3"#),
            "{text}"
        );
    }

    #[test]
    fn bad_histogram_input_is_left_out_with_a_warning() {
        let mut r = row("openai", "x", "a", true);
        r.response_time_buckets = Some(vec![1, 2, 3]);
        assert!(assemble_histograms(std::slice::from_ref(&r), &BOUNDS).is_err());
        assert!(assemble_histograms(&[], &[1.0, 0.5]).is_err());
        assert!(assemble_histograms(&[], &[1.0, f64::INFINITY]).is_err());
        let (text, warnings) = render(vec![r]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("ai_usage_response_time_seconds left out: "));
        assert!(!text.contains("ai_usage_response_time_seconds"));
        assert!(text.contains("ai_usage_requests_total{"));
    }
}
