//! Scrape coordination: one scrape at a time, concurrent requests share it,
//! and the expensive gauges are cached between scrapes (see `gauge_cache`).
//!
//! A scrape asks every database collector (`collectors::DATABASE`) for its
//! queries, runs them in one database round trip (`db::fetch`: the
//! `EveryScrape` tier always, the `Cached` tier when a refresh is due), hands
//! each collector its rows, and renders the families in registry order, then
//! the exporter's own metrics. Nothing here names a metric.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::collectors::exporter_self::{self, ExporterStatus};
use crate::collectors::{only_declared, Options, Output, Tier, DATABASE};
use crate::db::{self, BatchRows, DbError, Query};
use crate::exposition::{self, Family};
use crate::gauge_cache::GaugeCache;

/// The families of some database collectors, each with its index in [`DATABASE`].
type Collected = Vec<(usize, Vec<Family>)>;

/// Scrape settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub query_timeout: Duration,
    pub gauge_refresh_interval: Duration,
    pub top_users: u32,
}

struct Finished {
    at: Instant,
    body: Bytes,
}

struct State {
    last: Option<Finished>,
    gauges: GaugeCache<Collected>,
    errors_total: u64,
    /// Whether the previous scrape worked (to log state changes once, not every scrape).
    last_up: Option<bool>,
    last_error: Option<String>,
}

/// Runs scrapes. Cheap to clone.
#[derive(Clone)]
pub struct Scraper {
    pool: Pool,
    settings: Settings,
    state: Arc<Mutex<State>>,
}

impl Scraper {
    pub fn new(pool: Pool, settings: Settings) -> Self {
        Scraper {
            pool,
            settings,
            state: Arc::new(Mutex::new(State {
                last: None,
                gauges: GaugeCache::new(settings.gauge_refresh_interval),
                errors_total: 0,
                last_up: None,
                last_error: None,
            })),
        }
    }

    /// Returns the exposition for a request that arrived now. Scrapes are serialized; a
    /// request that arrives while a scrape runs waits for it and shares its result. The
    /// work runs in its own task, so a client that hangs up cannot cancel a scrape halfway.
    pub async fn scrape(&self) -> Bytes {
        let arrived = Instant::now();
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut state = this.state.clone().lock_owned().await;
            if let Some(last) = &state.last {
                if last.at >= arrived {
                    return last.body.clone();
                }
            }
            let body = this.run(&mut state).await;
            state.last = Some(Finished {
                at: Instant::now(),
                body: body.clone(),
            });
            body
        });
        match task.await {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "scrape task failed");
                let status = ExporterStatus {
                    up: false,
                    scrape_duration_seconds: arrived.elapsed().as_secs_f64(),
                    scrape_errors_total: 0,
                    gauge_refresh_errors_total: 0,
                    gauges_stale: false,
                    gauges_age_seconds: None,
                };
                Bytes::from(compose(None, None, &status))
            }
        }
    }

    async fn run(&self, state: &mut State) -> Bytes {
        let started = Instant::now();
        let opts = Options {
            top_users: self.settings.top_users,
        };
        let (every_idx, every_queries) = plan(Tier::EveryScrape, &opts);
        let refresh = state
            .gauges
            .refresh_due(started)
            .then(|| plan(Tier::Cached, &opts));
        let result = db::fetch(
            &self.pool,
            self.settings.query_timeout,
            &every_queries,
            refresh.as_ref().map(|(_, q)| q.as_slice()),
        )
        .await
        .and_then(|f| Ok((run_collectors(&every_idx, f.every_scrape)?, f.cached)));
        let duration = started.elapsed().as_secs_f64();

        let (fresh, up) = match result {
            Ok((fresh, cached_rows)) => {
                let refreshed = refresh
                    .zip(cached_rows)
                    .map(|((idx, _), rows)| rows.and_then(|r| run_collectors(&idx, r)));
                match refreshed {
                    None => {}
                    Some(Ok(gauges)) => {
                        if state.gauges.is_stale() {
                            tracing::info!("gauge refresh succeeded again; cached gauges are current");
                        }
                        state.gauges.succeeded(started, gauges);
                    }
                    Some(Err(e)) => {
                        state.gauges.failed(started);
                        tracing::warn!(
                            error = %e,
                            retry_in = ?self.settings.gauge_refresh_interval,
                            "gauge refresh failed; serving the last good gauges, marked stale"
                        );
                    }
                }
                if state.last_up != Some(true) {
                    tracing::info!(seconds = duration, "scrape succeeded: database reachable");
                }
                state.last_error = None;
                (Some(fresh), true)
            }
            Err(e) => {
                state.errors_total += 1;
                // The gauge cache is kept, but not served while the counters cannot be read.
                let msg = e.to_string();
                if state.last_up != Some(false) || state.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(error = %msg, seconds = duration, "scrape failed; exporting up=0 without usage series");
                } else {
                    tracing::debug!(error = %msg, seconds = duration, "scrape failed again");
                }
                state.last_error = Some(msg);
                (None, false)
            }
        };
        state.last_up = Some(up);

        let served = state.gauges.served(started);
        let gauges = if up { served.gauges } else { None };
        let status = ExporterStatus {
            up,
            scrape_duration_seconds: duration,
            scrape_errors_total: state.errors_total,
            gauge_refresh_errors_total: served.refresh_errors_total,
            gauges_stale: served.stale,
            gauges_age_seconds: gauges.and(served.age_seconds),
        };
        Bytes::from(compose(fresh.as_ref(), gauges, &status))
    }

    /// `SELECT 1` within the query timeout.
    pub async fn health(&self) -> Result<(), db::DbError> {
        db::ping(&self.pool, self.settings.query_timeout).await
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// The indexes in [`DATABASE`] of the collectors of `tier`, and their queries.
fn plan(tier: Tier, opts: &Options) -> (Vec<usize>, Vec<Vec<Query>>) {
    DATABASE
        .iter()
        .enumerate()
        .filter(|(_, c)| c.tier == tier)
        .map(|(i, c)| (i, (c.queries)(opts)))
        .unzip()
}

/// Hands each collector its rows (`rows[k]` belongs to `DATABASE[idx[k]]`); logs their warnings.
fn run_collectors(idx: &[usize], rows: BatchRows) -> Result<Collected, DbError> {
    idx.iter()
        .zip(rows)
        .map(|(&i, r)| {
            let out: Output = (DATABASE[i].run)(&r).map_err(|e| match e {
                DbError::Data(msg) => DbError::Data(format!("{}: {msg}", DATABASE[i].name)),
                other => other,
            })?;
            debug_assert!(
                only_declared(DATABASE[i].metrics, &out),
                "{} exported an undeclared metric",
                DATABASE[i].name
            );
            for w in &out.warnings {
                tracing::warn!(collector = DATABASE[i].name, "{w}");
            }
            Ok((i, out.families))
        })
        .collect()
}

/// The exposition: the database collectors' families in registry order (from this scrape
/// or the gauge cache), then the exporter's own metrics.
fn compose(fresh: Option<&Collected>, cached: Option<&Collected>, status: &ExporterStatus) -> String {
    let mut parts: Vec<&(usize, Vec<Family>)> = fresh.into_iter().chain(cached).flatten().collect();
    parts.sort_by_key(|(i, _)| *i);
    let mut own = Output::default();
    exporter_self::collect(status, &mut own);
    debug_assert!(only_declared(exporter_self::METRICS, &own));
    exposition::encode(parts.into_iter().flat_map(|(_, f)| f).chain(&own.families))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::{active_users, rollup, usage_counters, Collector};
    use crate::exposition::tests::samples;

    fn find(name: &str) -> usize {
        DATABASE.iter().position(|c| c.name == name).unwrap()
    }

    fn collected<C: Collector>(name: &str, data: &C::Data) -> (usize, Vec<Family>) {
        let mut out = Output::default();
        C::collect(data, &mut out);
        (find(name), out.families)
    }

    fn status(up: bool, age: Option<f64>) -> ExporterStatus {
        ExporterStatus {
            up,
            scrape_duration_seconds: 0.01,
            scrape_errors_total: 0,
            gauge_refresh_errors_total: 0,
            gauges_stale: false,
            gauges_age_seconds: age,
        }
    }

    fn names(text: &str) -> Vec<String> {
        let mut v: Vec<String> = samples(text).into_iter().map(|s| s.0).collect();
        v.dedup();
        v
    }

    #[test]
    fn families_come_in_registry_order_whatever_their_tier() {
        let counters = usage_counters::Counters {
            rows: vec![usage_counters::UsageRow {
                provider: "openai".into(),
                tokens: vec![1.0, 2.0],
                requests: 1,
                response_time_buckets: Some(vec![1]),
                response_time_count: 1,
                ..Default::default()
            }],
            bucket_bounds: vec![1.0],
        };
        let fresh = vec![
            collected::<usage_counters::UsageCounters>("usage_counters", &counters),
            collected::<rollup::Rollup>("rollup", &Some(1.5)),
        ];
        let cached = vec![collected::<active_users::ActiveUsers>(
            "active_users",
            &vec![("1h".to_string(), 3)],
        )];
        let text = compose(Some(&fresh), Some(&cached), &status(true, Some(2.0)));
        assert_eq!(
            names(&text),
            [
                "ai_usage_requests_total",
                "ai_usage_tokens_total",
                "ai_usage_cost_usd_total",
                "ai_usage_response_time_seconds_bucket",
                "ai_usage_response_time_seconds_sum",
                "ai_usage_response_time_seconds_count",
                "ai_usage_active_users",
                "ai_usage_rollup_last_success_timestamp_seconds",
                "ai_usage_exporter_up",
                "ai_usage_exporter_scrape_duration_seconds",
                "ai_usage_exporter_scrape_errors_total",
                "ai_usage_exporter_cache_refresh_errors_total",
                "ai_usage_exporter_cache_stale",
                "ai_usage_exporter_cache_age_seconds",
            ]
        );
    }

    #[test]
    fn a_failed_scrape_has_only_the_exporters_own_metrics() {
        let text = compose(None, None, &status(false, None));
        assert!(
            names(&text).iter().all(|n| n.starts_with("ai_usage_exporter_")),
            "{text}"
        );
        assert!(text.contains("ai_usage_exporter_up 0\n"), "{text}");
    }

    #[test]
    fn plans_follow_the_tiers() {
        let opts = Options { top_users: 10 };
        let (every, queries) = plan(Tier::EveryScrape, &opts);
        assert_eq!(every, [find("usage_counters"), find("rollup"), find("repriced")]);
        assert_eq!(queries.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 1]);
        let (cached, _) = plan(Tier::Cached, &opts);
        assert_eq!(cached, [find("active_users"), find("top_users"), find("budgets")]);
    }
}
