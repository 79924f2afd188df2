//! usage-analytics-exporter: Prometheus exporter for the pg_usage_analytics extension.
//!
//! Modules: `collectors` (one module per concern: its SQL, its metric
//! descriptors and its tests), `exposition` (metric descriptors, families and
//! the one text-format renderer), `config` (flags), `db` (connection string,
//! pool, running the collectors' queries), `tls` (rustls setup), `scrape`
//! (serialized, coalesced scrapes), `gauge_cache` (the cached collectors'
//! series, kept through failed refreshes), `http` (endpoints), `server`
//! (connections: header timeout, connection cap, graceful shutdown).

mod collectors;
mod config;
mod db;
mod exposition;
mod gauge_cache;
mod http;
mod scrape;
mod server;
mod tls;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::scrape::{Scraper, Settings};

/// How long shutdown waits for requests in progress (see the --help epilogue).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cfg = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    let target = db::parse_target(&cfg.database_url)?;
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

    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        listen = %local,
        database = %described,
        query_timeout = ?cfg.query_timeout,
        gauge_refresh_interval = ?cfg.gauge_refresh_interval,
        top_users = cfg.top_users_clamped(),
        pool_size = cfg.pool_size,
        http_header_timeout = ?cfg.http_header_timeout,
        max_connections = cfg.max_connections,
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

    let limits = server::Limits {
        header_read_timeout: cfg.http_header_timeout,
        max_connections: cfg.max_connections,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    server::serve(listener, http::router(scraper.clone()), limits, shutdown_signal()).await;
    scraper.pool().close();
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
