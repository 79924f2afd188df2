//! The exporter's own health: always exported, also when the database cannot
//! be read (then with `ai_usage_exporter_up 0` and no usage series). No
//! query: the values come from the scraper and the gauge cache.

use super::Output;
use crate::exposition::{Desc, Family, MetricType};

pub static UP: Desc = Desc {
    name: "ai_usage_exporter_up",
    kind: MetricType::Gauge,
    help: "1 when the last scrape's database queries succeeded, 0 otherwise (then no usage series are exported).",
    labels: &[],
};
pub static SCRAPE_DURATION: Desc = Desc {
    name: "ai_usage_exporter_scrape_duration_seconds",
    kind: MetricType::Gauge,
    help: "Time the last scrape spent reading the database, in seconds.",
    labels: &[],
};
pub static SCRAPE_ERRORS: Desc = Desc {
    name: "ai_usage_exporter_scrape_errors_total",
    kind: MetricType::Counter,
    help: "Scrapes whose database work failed or timed out, since the exporter started.",
    labels: &[],
};
pub static CACHE_REFRESH_ERRORS: Desc = Desc {
    name: "ai_usage_exporter_cache_refresh_errors_total",
    kind: MetricType::Counter,
    help: "Refreshes of the cached gauges (ai_usage_active_users, ai_usage_top_user_cost_usd) that failed or timed out, since the exporter started. A failed refresh keeps the last good values and is retried one --gauge-refresh-interval later.",
    labels: &[],
};
pub static CACHE_STALE: Desc = Desc {
    name: "ai_usage_exporter_cache_stale",
    kind: MetricType::Gauge,
    help: "1 when the last refresh of the cached gauges failed, so the ones served (if any) are the last good values; 0 otherwise.",
    labels: &[],
};
pub static CACHE_AGE: Desc = Desc {
    name: "ai_usage_exporter_cache_age_seconds",
    kind: MetricType::Gauge,
    help: "Seconds since the served cached gauges were read (at the start of this scrape). Absent when none are served.",
    labels: &[],
};

/// Every metric of this collector, in export order.
pub const METRICS: &[&Desc] = &[
    &UP,
    &SCRAPE_DURATION,
    &SCRAPE_ERRORS,
    &CACHE_REFRESH_ERRORS,
    &CACHE_STALE,
    &CACHE_AGE,
];

/// The exporter's health as of one scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExporterStatus {
    pub up: bool,
    pub scrape_duration_seconds: f64,
    pub scrape_errors_total: u64,
    /// Failed refreshes of the cached gauges since the start.
    pub gauge_refresh_errors_total: u64,
    /// The last gauge refresh failed: the cached gauges predate it.
    pub gauges_stale: bool,
    /// Age of the cached gauges served by this scrape; `None` when none are served.
    pub gauges_age_seconds: Option<f64>,
}

fn one(desc: &'static Desc, value: f64) -> Family {
    let mut f = Family::new(desc);
    f.add(&[], value);
    f
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub fn collect(s: &ExporterStatus, out: &mut Output) {
    out.families.extend([
        one(&UP, flag(s.up)),
        one(&SCRAPE_DURATION, s.scrape_duration_seconds),
        one(&SCRAPE_ERRORS, s.scrape_errors_total as f64),
        one(&CACHE_REFRESH_ERRORS, s.gauge_refresh_errors_total as f64),
        one(&CACHE_STALE, flag(s.gauges_stale)),
    ]);
    if let Some(age) = s.gauges_age_seconds {
        out.families.push(one(&CACHE_AGE, age));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::encode;
    use crate::exposition::tests::samples;

    fn render(s: &ExporterStatus) -> String {
        let mut out = Output::default();
        collect(s, &mut out);
        for f in &out.families {
            assert!(METRICS.iter().any(|d| std::ptr::eq(*d, f.desc())));
        }
        encode(&out.families)
    }

    #[test]
    fn down() {
        let text = render(&ExporterStatus {
            up: false,
            scrape_duration_seconds: 0.8,
            scrape_errors_total: 5,
            gauge_refresh_errors_total: 1,
            gauges_stale: true,
            gauges_age_seconds: None,
        });
        let names: Vec<String> = samples(&text).into_iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            [
                "ai_usage_exporter_up",
                "ai_usage_exporter_scrape_duration_seconds",
                "ai_usage_exporter_scrape_errors_total",
                "ai_usage_exporter_cache_refresh_errors_total",
                "ai_usage_exporter_cache_stale",
            ]
        );
        for line in [
            "ai_usage_exporter_up 0",
            "ai_usage_exporter_scrape_duration_seconds 0.8",
            "ai_usage_exporter_scrape_errors_total 5",
            "ai_usage_exporter_cache_refresh_errors_total 1",
            "ai_usage_exporter_cache_stale 1",
            "# TYPE ai_usage_exporter_up gauge",
            "# TYPE ai_usage_exporter_scrape_errors_total counter",
            "# TYPE ai_usage_exporter_cache_refresh_errors_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn up_with_cached_gauges_served() {
        let text = render(&ExporterStatus {
            up: true,
            scrape_duration_seconds: 0.012,
            scrape_errors_total: 0,
            gauge_refresh_errors_total: 3,
            gauges_stale: false,
            gauges_age_seconds: Some(95.5),
        });
        for line in [
            "ai_usage_exporter_up 1",
            "ai_usage_exporter_cache_stale 0",
            "ai_usage_exporter_cache_age_seconds 95.5",
            "# TYPE ai_usage_exporter_cache_age_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
