//! Metric descriptors, metric families and the one renderer of the
//! Prometheus text format 0.0.4.
//!
//! A collector declares each metric it exports once, as a [`Desc`] (name,
//! type, HELP text, label names). A scrape fills [`Family`] values for those
//! descriptors, and [`encode`] writes them: `# HELP`, `# TYPE`, the samples,
//! label-value escaping (`\`, `"`, newline) and number formatting happen here
//! and nowhere else. A family without series is left out (the text format has
//! no empty families).

use std::fmt::Write as _;

/// The content type of /metrics.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus metric types the exporter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    /// The name used on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric, declared once by the collector that exports it.
#[derive(Debug, PartialEq)]
pub struct Desc {
    /// The metric name; counters end in `_total`, a histogram's samples add
    /// `_bucket`, `_sum` and `_count`.
    pub name: &'static str,
    pub kind: MetricType,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order they are written (a histogram's `le` is added after them).
    pub labels: &'static [&'static str],
}

/// One histogram series: cumulative counts per finite upper bound, plus count and sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue {
    /// (upper bound, cumulative count), bounds increasing; `+Inf` is implied (it is `count`).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Histogram(HistogramValue),
}

#[derive(Debug, Clone, PartialEq)]
struct Series {
    label_values: Vec<String>,
    value: Value,
}

/// The series of one metric in one scrape, written in the order they were added.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    desc: &'static Desc,
    series: Vec<Series>,
}

impl Family {
    pub fn new(desc: &'static Desc) -> Self {
        Family {
            desc,
            series: Vec::new(),
        }
    }

    pub fn desc(&self) -> &'static Desc {
        self.desc
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn check_labels(&self, label_values: &[&str]) {
        assert_eq!(
            label_values.len(),
            self.desc.labels.len(),
            "{}: label values {label_values:?} for labels {:?}",
            self.desc.name,
            self.desc.labels
        );
    }

    /// Adds one counter or gauge sample; `label_values` in the order of the descriptor's labels.
    pub fn add(&mut self, label_values: &[&str], value: f64) {
        assert_ne!(
            self.desc.kind,
            MetricType::Histogram,
            "{}: a histogram takes add_histogram",
            self.desc.name
        );
        self.check_labels(label_values);
        self.series.push(Series {
            label_values: label_values.iter().map(|v| (*v).to_string()).collect(),
            value: Value::Number(value),
        });
    }

    /// Adds one histogram series; `label_values` in the order of the descriptor's labels.
    pub fn add_histogram(&mut self, label_values: &[&str], value: HistogramValue) {
        assert_eq!(
            self.desc.kind,
            MetricType::Histogram,
            "{}: only a histogram takes add_histogram",
            self.desc.name
        );
        self.check_labels(label_values);
        self.series.push(Series {
            label_values: label_values.iter().map(|v| (*v).to_string()).collect(),
            value: Value::Histogram(value),
        });
    }
}

/// Escapes a HELP text (`\` and newline) or, with `quote`, a label value (also `"`).
fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A sample value: Rust's shortest round-trip decimal (never an exponent) for finite
/// numbers, and the text format's spellings otherwise.
fn number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// One sample line; `le` is a histogram bucket's bound, written after the other labels.
fn sample(out: &mut String, name: &str, suffix: &str, labels: &[(&str, &str)], le: Option<&str>, value: f64) {
    out.push_str(name);
    out.push_str(suffix);
    let le = le.map(|b| ("le", b));
    for (i, (k, v)) in labels.iter().chain(le.as_ref()).enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(k);
        out.push_str("=\"");
        escape(out, v, true);
        out.push('"');
    }
    if !labels.is_empty() || le.is_some() {
        out.push('}');
    }
    out.push(' ');
    number(out, value);
    out.push('\n');
}

/// Renders families in the text format 0.0.4, in the given order, leaving out empty ones.
pub fn encode<'a>(families: impl IntoIterator<Item = &'a Family>) -> String {
    let mut out = String::new();
    for f in families.into_iter().filter(|f| !f.is_empty()) {
        let d = f.desc;
        if !d.help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(d.name);
            out.push(' ');
            escape(&mut out, d.help, false);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(d.name);
        out.push(' ');
        out.push_str(d.kind.as_str());
        out.push('\n');
        for s in &f.series {
            let labels: Vec<(&str, &str)> = d
                .labels
                .iter()
                .copied()
                .zip(s.label_values.iter().map(String::as_str))
                .collect();
            match &s.value {
                Value::Number(v) => sample(&mut out, d.name, "", &labels, None, *v),
                Value::Histogram(h) => {
                    let mut le = String::new();
                    for (bound, n) in &h.buckets {
                        le.clear();
                        number(&mut le, *bound);
                        sample(&mut out, d.name, "_bucket", &labels, Some(&le), *n as f64);
                    }
                    sample(&mut out, d.name, "_bucket", &labels, Some("+Inf"), h.count as f64);
                    sample(&mut out, d.name, "_sum", &labels, None, h.sum);
                    sample(&mut out, d.name, "_count", &labels, None, h.count as f64);
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (name, labels, value) of one sample line.
    pub type Sample = (String, Vec<(String, String)>, String);

    /// Minimal parser of one sample line, for round-trip checks.
    pub fn parse_sample(line: &str) -> Sample {
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

    /// Every sample line of an exposition, parsed.
    pub fn samples(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(parse_sample)
            .collect()
    }

    static G: Desc = Desc {
        name: "t_gauge",
        kind: MetricType::Gauge,
        help: "A gauge. With \\ and\nnewline and \"quotes\".",
        labels: &["a", "b"],
    };
    static C: Desc = Desc {
        name: "t_things_total",
        kind: MetricType::Counter,
        help: "Things.",
        labels: &[],
    };
    static H: Desc = Desc {
        name: "t_seconds",
        kind: MetricType::Histogram,
        help: "Durations.",
        labels: &["p"],
    };

    const HOSTILE: [&str; 10] = [
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
    ];

    #[test]
    fn help_type_and_samples() {
        let mut g = Family::new(&G);
        g.add(&["x", "y"], 1.5);
        g.add(&["a\"b", "c\\d\ne"], 0.000625);
        let mut c = Family::new(&C);
        c.add(&[], 7.0);
        let mut h = Family::new(&H);
        h.add_histogram(
            &["openai"],
            HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 2), (60.0, 3)],
                count: 4,
                sum: 152.05,
            },
        );
        let empty = Family::new(&C);
        assert_eq!(
            encode(&[g, empty, c, h]),
            concat!(
                "# HELP t_gauge A gauge. With \\\\ and\\nnewline and \"quotes\".\n",
                "# TYPE t_gauge gauge\n",
                "t_gauge{a=\"x\",b=\"y\"} 1.5\n",
                "t_gauge{a=\"a\\\"b\",b=\"c\\\\d\\ne\"} 0.000625\n",
                "# HELP t_things_total Things.\n",
                "# TYPE t_things_total counter\n",
                "t_things_total 7\n",
                "# HELP t_seconds Durations.\n",
                "# TYPE t_seconds histogram\n",
                "t_seconds_bucket{p=\"openai\",le=\"0.1\"} 1\n",
                "t_seconds_bucket{p=\"openai\",le=\"1\"} 2\n",
                "t_seconds_bucket{p=\"openai\",le=\"60\"} 3\n",
                "t_seconds_bucket{p=\"openai\",le=\"+Inf\"} 4\n",
                "t_seconds_sum{p=\"openai\"} 152.05\n",
                "t_seconds_count{p=\"openai\"} 4\n",
            )
        );
    }

    #[test]
    fn numbers() {
        let mut s = String::new();
        for v in [
            0.0,
            -0.5,
            1e21,
            1e-7,
            1_700_000_000.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            number(&mut s, v);
            s.push(' ');
        }
        assert_eq!(
            s,
            "0 -0.5 1000000000000000000000 0.0000001 1700000000.5 NaN +Inf -Inf "
        );
    }

    #[test]
    fn hostile_label_values_round_trip() {
        let long = "x".repeat(10_000);
        let mut g = Family::new(&G);
        for v in HOSTILE.iter().copied().chain([long.as_str()]) {
            g.add(&[v, "k"], 1.0);
        }
        let text = encode(&[g]);
        let parsed = samples(&text);
        for v in HOSTILE.iter().copied().chain([long.as_str()]) {
            let hits = parsed
                .iter()
                .filter(|(_, labels, _)| labels[0] == ("a".to_string(), v.to_string()))
                .count();
            assert_eq!(hits, 1, "{v:?} not found exactly once");
        }
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("t_gauge{")
            );
        }
    }

    /// The exposition was produced by the `prometheus` crate's TextEncoder until the
    /// collectors got their own renderer; finite values must render byte for byte the same.
    #[test]
    fn same_bytes_as_the_prometheus_crate() {
        use prometheus::proto::{self, LabelPair, Metric, MetricFamily};
        use prometheus::Encoder;

        fn pairs(names: &[&str], values: &[&str]) -> Vec<LabelPair> {
            names
                .iter()
                .zip(values)
                .map(|(n, v)| {
                    let mut lp = LabelPair::default();
                    lp.set_name((*n).to_string());
                    lp.set_value((*v).to_string());
                    lp
                })
                .collect()
        }
        let values = [0.0, 3.0, 0.1 + 0.2, 1e21, 123_456_789.123_456_79, 1e-9, -2.5];
        let bounds = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];

        let (mut ours_g, mut ours_h) = (Family::new(&G), Family::new(&H));
        let (mut theirs_g, mut theirs_h) = (Vec::new(), Vec::new());
        for (i, a) in HOSTILE.iter().enumerate() {
            let v = values[i % values.len()];
            ours_g.add(&[a, "b"], v);
            let mut m = Metric::from_label(pairs(&["a", "b"], &[a, "b"]));
            let mut g = proto::Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
            theirs_g.push(m);

            let counts: Vec<u64> = (0..bounds.len() as u64).map(|k| k * i as u64).collect();
            ours_h.add_histogram(
                &[a],
                HistogramValue {
                    buckets: bounds.iter().copied().zip(counts.iter().copied()).collect(),
                    count: 99,
                    sum: v,
                },
            );
            let mut h = proto::Histogram::default();
            h.set_sample_count(99);
            h.set_sample_sum(v);
            h.set_bucket(
                bounds
                    .iter()
                    .zip(&counts)
                    .map(|(b, n)| {
                        let mut bk = proto::Bucket::default();
                        bk.set_upper_bound(*b);
                        bk.set_cumulative_count(*n);
                        bk
                    })
                    .collect(),
            );
            let mut m = Metric::from_label(pairs(&["p"], &[a]));
            m.set_histogram(h);
            theirs_h.push(m);
        }
        let family = |d: &Desc, ty, metrics| {
            let mut f = MetricFamily::default();
            f.set_name(d.name.to_string());
            f.set_help(d.help.to_string());
            f.set_field_type(ty);
            f.set_metric(metrics);
            f
        };
        let theirs = [
            family(&G, proto::MetricType::GAUGE, theirs_g),
            family(&H, proto::MetricType::HISTOGRAM, theirs_h),
        ];
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&theirs, &mut buf).unwrap();
        assert_eq!(encode(&[ours_g, ours_h]), String::from_utf8(buf).unwrap());
    }

    #[test]
    #[should_panic(expected = "label values")]
    fn wrong_label_count_is_a_bug() {
        Family::new(&G).add(&["only one"], 1.0);
    }

    #[test]
    #[should_panic(expected = "add_histogram")]
    fn a_histogram_takes_histogram_values() {
        Family::new(&H).add(&["p"], 1.0);
    }
}
