//! usage-analytics-collector: receives OTLP/HTTP traces and records each GenAI span as a
//! pg_usage_analytics usage row.
//!
//! Modules: `config` (flags), `otlp` (content types, gzip, decoding, answers),
//! `mapping` (span → row: columns, token classes, ids, bounded metadata), `writer`
//! (bounded queue, batched deduplicated writes acknowledged after commit),
//! `insert_statement` (the batch's INSERT, shaped to the usage table's columns, and its
//! parameters), `metrics` (self-metrics), `http` (endpoints), `db` (the pool). What it
//! shares with the exporter, the connection string, TLS, the HTTP server (header
//! timeout, connection cap, graceful shutdown) and the common flags, is in the
//! `usage_analytics_service` crate.

mod config;
mod db;
mod http;
mod insert_statement;
mod mapping;
mod metrics;
mod otlp;
mod writer;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use usage_analytics_service::server;

use crate::config::Config;

fn main() -> ExitCode {
    let cfg = Config::parse();
    server::run(env!("CARGO_CRATE_NAME"), Some(4), run(cfg))
}

async fn run(cfg: Config) -> Result<(), String> {
    let target = db::parse_target(&cfg.database.database_url)?;
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

    let (listener, local) = server::bind(&cfg.listen).await?;
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
    server::serve(
        listener,
        http::router(app),
        cfg.http.limits(),
        server::shutdown_signal(),
    )
    .await;
    stopper.stop(cfg.write_timeout + Duration::from_secs(1)).await;
    pool.close();
    tracing::info!("stopped");
    Ok(())
}
