//! The collector's connection pool: --writers connections for batches plus one for
//! /health. The connection string, the pool's making, taking and discarding
//! connections, the health ping and the error type are the services' shared ones
//! (`usage_analytics_service::db`).

use std::time::Duration;

use deadpool_postgres::Pool;
use usage_analytics_service::db::PoolSettings;
pub use usage_analytics_service::db::{
    acquire, describe, discard, error_chain, parse_target, ping, DbError, Target,
};

use crate::config::Config;

/// Builds the bounded pool: --writers connections for batches plus one for /health,
/// waiting and connecting within --write-timeout (connecting within --health-timeout,
/// at least 2 s, when that is shorter). Connections are made lazily, so this succeeds
/// while the database is down.
pub fn build_pool(cfg: &Config, target: Target) -> Result<Pool, String> {
    usage_analytics_service::db::build_pool(
        target,
        &PoolSettings {
            application_name: "usage-analytics-collector",
            connect_timeout: cfg
                .write_timeout
                .min(cfg.health_timeout.max(Duration::from_secs(2))),
            max_size: usize::from(cfg.writers) + 1,
            timeout: cfg.write_timeout,
            ssl_root_cert: cfg.tls.ssl_root_cert.as_deref(),
            ssl_accept_invalid_certs: cfg.tls.ssl_accept_invalid_certs,
        },
    )
}
