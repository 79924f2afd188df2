//! Scrape coordination: one scrape at a time, concurrent requests share it,
//! and the expensive gauges are cached between scrapes (see `gauge_cache`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::db;
use crate::exposition;
use crate::gauge_cache::GaugeCache;
use crate::model::ExporterStatus;

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
    gauges: GaugeCache,
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
                Bytes::from(exposition::render(None, None, &status).0)
            }
        }
    }

    async fn run(&self, state: &mut State) -> Bytes {
        let started = Instant::now();
        let top_n = state
            .gauges
            .refresh_due(started)
            .then_some(self.settings.top_users);
        let result = db::fetch(&self.pool, self.settings.query_timeout, top_n).await;
        let duration = started.elapsed().as_secs_f64();

        let (usage, up) = match result {
            Ok(fetched) => {
                match fetched.gauges {
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
                    tracing::info!(
                        rows = fetched.usage.rows.len(),
                        seconds = duration,
                        "scrape succeeded: database reachable"
                    );
                }
                state.last_error = None;
                (Some(fetched.usage), true)
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
        let (text, warnings) = exposition::render(usage.as_ref(), gauges, &status);
        for w in warnings {
            tracing::warn!("{w}");
        }
        Bytes::from(text)
    }

    /// `SELECT 1` within the query timeout.
    pub async fn health(&self) -> Result<(), db::DbError> {
        db::ping(&self.pool, self.settings.query_timeout).await
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}
