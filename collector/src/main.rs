//! usage-analytics-collector: receives OTLP/HTTP traces and records each GenAI span as a
//! pg_usage_analytics usage row.
//!
//! Modules: `config` (flags), `otlp` (content types, gzip, decoding, answers),
//! `mapping` (span → row: columns, token classes, ids, bounded metadata), `writer`
//! (bounded queue, batched deduplicated writes acknowledged after commit), `metrics`
//! (self-metrics), `http` (endpoints), and copies of the exporter's `db` (connection
//! string, pool), `tls` (rustls) and `server` (header timeout, connection cap, graceful
//! shutdown).

mod config;
mod db;
mod http;
mod mapping;
mod metrics;
mod otlp;
mod server;
mod tls;
mod writer;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// How long shutdown waits for requests in progress (see the --help epilogue).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cfg = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
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
    let metrics = Arc::new(metrics::Metrics::default());
    let (writer, stopper) = writer::Writer::start(
        pool.clone(),
        writer::Settings {
            batch_rows: cfg.write_batch_rows as usize,
            flush_interval: cfg.flush_interval,
            writers: usize::from(cfg.writers),
            write_timeout: cfg.write_timeout,
            max_queued: cfg.max_queued_spans as usize,
        },
        metrics.clone(),
    );

    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        listen = %local,
        database = %described,
        max_body_size = cfg.max_body_size,
        max_spans_per_request = cfg.max_spans_per_request,
        write_batch_rows = cfg.write_batch_rows,
        flush_interval = ?cfg.flush_interval,
        max_queued_spans = cfg.max_queued_spans,
        writers = cfg.writers,
        write_timeout = ?cfg.write_timeout,
        version = env!("CARGO_PKG_VERSION"),
        "usage-analytics-collector started"
    );
    match db::ping(&pool, cfg.health_timeout).await {
        Ok(()) => tracing::info!("database reachable"),
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable yet; exports are answered 503 until it is")
        }
    }

    let app = http::App {
        writer,
        pool: pool.clone(),
        metrics,
        limits: Arc::new(http::Limits {
            max_body_size: cfg.max_body_size,
            max_spans: u64::from(cfg.max_spans_per_request),
            body_timeout: cfg.http_body_timeout,
            retry_after: cfg.retry_after,
            health_timeout: cfg.health_timeout,
        }),
    };
    let limits = server::Limits {
        header_read_timeout: cfg.http_header_timeout,
        max_connections: cfg.max_connections,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    server::serve(listener, http::router(app), limits, shutdown_signal()).await;
    stopper.stop(cfg.write_timeout + Duration::from_secs(1)).await;
    pool.close();
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
