//! usage-analytics-exporter: Prometheus exporter for the pg_usage_analytics extension.
//!
//! Modules: `collectors` (one module per concern: its SQL, its metric
//! descriptors and its tests), `exposition` (metric descriptors, families and
//! the one text-format renderer), `config` (flags), `db` (the pool, running the
//! collectors' queries), `scrape` (serialized, coalesced scrapes), `gauge_cache`
//! (the cached collectors' series, kept through failed refreshes), `http`
//! (endpoints). What it shares with the collector, the connection string, TLS, the
//! HTTP server (header timeout, connection cap, graceful shutdown) and the common
//! flags, is in the `usage_analytics_service` crate.

mod collectors;
mod config;
mod db;
mod exposition;
mod gauge_cache;
mod http;
mod scrape;

use std::process::ExitCode;

use clap::Parser;
use usage_analytics_service::server;

use crate::config::Config;
use crate::scrape::{Scraper, Settings};

fn main() -> ExitCode {
    let cfg = Config::parse();
    server::run(env!("CARGO_CRATE_NAME"), None, run(cfg))
}

async fn run(cfg: Config) -> Result<(), String> {
    let target = db::parse_target(&cfg.database.database_url)?;
    let described = db::describe(&target);
    let pool = db::build_pool(&cfg, target)?;
    let scraper = Scraper::new(
        pool.clone(),
        Settings {
            query_timeout: cfg.query_timeout,
            gauge_refresh_interval: cfg.gauge_refresh_interval,
            top_users: cfg.top_users_clamped(),
        },
    );

    let (listener, local) = server::bind(&cfg.listen).await?;
    tracing::info!(
        listen = %local,
        database = %described,
        query_timeout = ?cfg.query_timeout,
        gauge_refresh_interval = ?cfg.gauge_refresh_interval,
        top_users = cfg.top_users_clamped(),
        pool_size = cfg.pool_size,
        http_header_timeout = ?cfg.http.http_header_timeout,
        max_connections = cfg.http.max_connections,
        version = env!("CARGO_PKG_VERSION"),
        "usage-analytics-exporter started"
    );
    if cfg.top_users > config::MAX_TOP_USERS {
        tracing::warn!(
            requested = cfg.top_users,
            used = config::MAX_TOP_USERS,
            "--top-users is capped at {}",
            config::MAX_TOP_USERS
        );
    }
    // Say early whether the database is reachable; the exporter serves either way.
    match scraper.health().await {
        Ok(()) => tracing::info!("database reachable"),
        Err(e) => tracing::warn!(error = %e, "database not reachable yet; will retry on each scrape"),
    }

    let router = http::router(scraper.clone());
    server::serve(listener, router, cfg.http.limits(), server::shutdown_signal()).await;
    scraper.pool().close();
    tracing::info!("stopped");
    Ok(())
}
