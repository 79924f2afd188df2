//! One collector per concern, in the manner of postgres_exporter: each module
//! holds its SQL, the descriptors of the metrics it exports (declared once:
//! name, type, HELP, label names), the code that turns its rows into series,
//! and its tests. Shared code renders (`exposition`), talks to the database
//! (`db`) and schedules (`scrape`); none of it names a metric.
//!
//! Adding a metric to an existing concern touches that collector only. Adding
//! a concern is a new module here plus one line in [`DATABASE`].
//!
//! # Adding a metric
//!
//! A new series of an existing metric, e.g. `direction="cache_read"` of
//! `ai_usage_tokens_total`: in `usage_counters.rs`, add
//! `("cache_read", "cache_read_tokens")` to `TOKEN_DIRECTIONS` and the column
//! to `SQL_COUNTERS` (a test checks that every direction is selected), update
//! the HELP text if it lists the values, and extend the tests.
//!
//! A new metric of an existing concern: declare a `pub static X: Desc` next to
//! the others, add it to the collector's `METRICS` (in export order), select
//! what it needs in the collector's SQL, read it in `read`, emit it in
//! `collect` (`Family::new(&X)`, `add(label values, value)`), and test it.
//!
//! A new concern, e.g. budgets (`ai_usage_budget_limit_usd`,
//! `ai_usage_budget_spent_usd`, `ai_usage_budget_utilization_ratio`, label
//! `budget`): a new `budgets.rs` with its descriptors, its SQL (e.g. over
//! `usage_analytics.budget_status()`, columns aliased and read by name), a
//! `Data` type, `impl Collector` choosing its [`Tier`] (`Cached` when the
//! query is not cheap), and its tests; then `pub mod budgets;` and one
//! `register::<budgets::Budgets>("budgets")` line in [`DATABASE`] where its
//! families should appear. Nothing in `db`, `scrape` or `exposition` changes;
//! the convention test below checks the new names. Outside the exporter the
//! SQL function must exist and be executable by the exporter's login, and a
//! fixture that covers the new series must be regenerated.
//!
//! Two tiers (see [`Tier`]): the [`Tier::EveryScrape`] collectors are read in
//! one read-only transaction on every scrape, and a failure there fails the
//! scrape (`ai_usage_exporter_up 0`, no usage series). The [`Tier::Cached`]
//! ones are read in a second transaction on the same connection at most every
//! --gauge-refresh-interval; a failure keeps their last good series, marked
//! stale (see `gauge_cache`).

pub mod active_users;
pub mod budgets;
pub mod exporter_self;
pub mod repriced;
pub mod rollup;
pub mod top_users;
pub mod usage_counters;

use tokio_postgres::Row;

use crate::db::{DbError, Query};
use crate::exposition::{Desc, Family};

/// When a collector's queries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// On every scrape; must be cheap. A failure fails the scrape.
    EveryScrape,
    /// At most every --gauge-refresh-interval; a failure keeps the last good series.
    Cached,
}

/// What a collector's queries may depend on.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// --top-users (clamped).
    pub top_users: u32,
}

/// What one collector produced from one read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    /// In the order they are exported; empty families are left out when rendering.
    pub families: Vec<Family>,
    /// Problems that left a family out (logged by the scraper).
    pub warnings: Vec<String>,
}

/// One concern read from the database.
pub trait Collector {
    /// What [`Collector::read`] extracts from the rows, in plain Rust (so
    /// [`Collector::collect`] can be tested without a database).
    type Data;
    /// Every metric the collector may export, in export order.
    const METRICS: &'static [&'static Desc];
    const TIER: Tier;
    /// The queries to run, pipelined in one transaction with the other
    /// collectors of the same tier.
    fn queries(opts: &Options) -> Vec<Query>;
    /// `results[i]` holds the rows of `queries(..)[i]`.
    fn read(results: &[Vec<Row>]) -> Result<Self::Data, DbError>;
    /// Appends the families (of descriptors from [`Collector::METRICS`] only).
    fn collect(data: &Self::Data, out: &mut Output);
}

/// A collector with its type erased, for the registry.
pub struct Registered {
    pub name: &'static str,
    pub metrics: &'static [&'static Desc],
    pub tier: Tier,
    pub queries: fn(&Options) -> Vec<Query>,
    pub run: fn(&[Vec<Row>]) -> Result<Output, DbError>,
}

fn run<C: Collector>(results: &[Vec<Row>]) -> Result<Output, DbError> {
    let data = C::read(results)?;
    let mut out = Output::default();
    C::collect(&data, &mut out);
    Ok(out)
}

const fn register<C: Collector>(name: &'static str) -> Registered {
    Registered {
        name,
        metrics: C::METRICS,
        tier: C::TIER,
        queries: C::queries,
        run: run::<C>,
    }
}

/// The database collectors, in the order their families are exported (the
/// exporter's own metrics, [`exporter_self`], come last).
pub static DATABASE: &[Registered] = &[
    register::<usage_counters::UsageCounters>("usage_counters"),
    register::<active_users::ActiveUsers>("active_users"),
    register::<top_users::TopUsers>("top_users"),
    register::<rollup::Rollup>("rollup"),
    register::<repriced::Repriced>("repriced"),
    register::<budgets::Budgets>("budgets"),
];

/// Every metric the exporter can export, in export order.
#[cfg(test)]
pub fn all_metrics() -> impl Iterator<Item = &'static Desc> {
    DATABASE
        .iter()
        .flat_map(|c| c.metrics.iter().copied())
        .chain(exporter_self::METRICS.iter().copied())
}

/// Whether every family of `out` has a descriptor of `metrics` (a collector exports only
/// what it declares).
pub fn only_declared(metrics: &[&Desc], out: &Output) -> bool {
    out.families
        .iter()
        .all(|f| metrics.iter().any(|d| std::ptr::eq(*d, f.desc())))
}

/// Test helper: `out` holds only families of `C`'s descriptors, in declaration order.
#[cfg(test)]
pub(crate) fn assert_declared<C: Collector>(out: &Output) {
    let mut last = None;
    for f in &out.families {
        let pos = C::METRICS
            .iter()
            .position(|d| std::ptr::eq(*d, f.desc()))
            .unwrap_or_else(|| panic!("{} is not declared by this collector", f.desc().name));
        assert!(last.is_none_or(|l| l < pos), "{} out of order", f.desc().name);
        last = Some(pos);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::exposition::MetricType;

    fn valid_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    /// The conventions of https://prometheus.io/docs/practices/naming/ (and promtool's
    /// checks), for every metric of every collector.
    #[test]
    fn metric_names_follow_the_conventions() {
        let mut seen = HashSet::new();
        for d in all_metrics() {
            assert!(seen.insert(d.name), "{} declared twice", d.name);
            assert!(valid_name(d.name), "{}", d.name);
            assert!(d.name.starts_with("ai_usage_"), "{}", d.name);
            assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}: HELP", d.name);
            match d.kind {
                MetricType::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
                _ => assert!(!d.name.ends_with("_total"), "{}", d.name),
            }
            // promtool: no type names inside metric names.
            for word in ["counter", "gauge", "histogram", "summary"] {
                assert!(!d.name.split('_').any(|w| w == word), "{}", d.name);
            }
            // Base units: seconds, not milliseconds.
            assert!(
                !d.name.contains("_ms") && !d.name.contains("millis"),
                "{}",
                d.name
            );
            if d.kind == MetricType::Histogram {
                assert!(d.name.ends_with("_seconds"), "{}", d.name);
            }
            let mut labels = HashSet::new();
            for l in d.labels {
                assert!(labels.insert(l), "{}: label {l} twice", d.name);
                assert!(valid_name(l) && !l.starts_with("__"), "{}: label {l}", d.name);
                assert!(*l != "le" && *l != "quantile", "{}: reserved label {l}", d.name);
            }
        }
        // A histogram's sample names must not collide with another metric.
        for d in all_metrics().filter(|d| d.kind == MetricType::Histogram) {
            for suffix in ["_bucket", "_sum", "_count"] {
                let n = format!("{}{suffix}", d.name);
                assert!(!seen.contains(n.as_str()), "{n} collides");
            }
        }
    }

    #[test]
    fn registry_names_are_unique() {
        let names: HashSet<_> = DATABASE.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), DATABASE.len());
    }
}
