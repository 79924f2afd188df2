//! The connection pool, and running the collectors' queries (which SQL runs is each
//! collector's business, see `collectors`). The connection string, the pool's
//! making, the health ping and the error type are the services' shared ones
//! (`usage_analytics_service::db`).
//!
//! Every unit of database work (a scrape or a health check) runs under one
//! deadline covering pool wait, connect and queries. A connection that saw an
//! error or ran out of time is detached from the pool and dropped (closing
//! it), so a broken, half-used or stuck connection is never handed out again
//! and the pool reconnects on the next request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::tokio_postgres::types::{ToSql, Type};
use deadpool_postgres::tokio_postgres::{self, Row};
use deadpool_postgres::{Object, Pool};
use tokio::time::{timeout_at, Instant};
use usage_analytics_service::db::{acquire, discard, PoolSettings};
pub use usage_analytics_service::db::{describe, parse_target, ping, DbError, Target};

use crate::config::Config;

/// Builds the bounded pool of --pool-size connections, each unit of work waiting and
/// connecting within --query-timeout. Connections are made lazily, so this succeeds
/// while the database is down.
pub fn build_pool(cfg: &Config, target: Target) -> Result<Pool, String> {
    usage_analytics_service::db::build_pool(
        target,
        &PoolSettings {
            application_name: "usage-analytics-exporter",
            connect_timeout: cfg.query_timeout.max(Duration::from_millis(50)),
            max_size: usize::from(cfg.pool_size),
            timeout: cfg.query_timeout,
            ssl_root_cert: cfg.tls.ssl_root_cert.as_deref(),
            ssl_accept_invalid_certs: cfg.tls.ssl_accept_invalid_certs,
        },
    )
}

/// One query of a collector: SQL text and typed parameters.
pub struct Query {
    pub sql: &'static str,
    params: Vec<(Box<dyn ToSql + Sync + Send>, Type)>,
}

impl Query {
    pub fn new(sql: &'static str) -> Self {
        Query {
            sql,
            params: Vec::new(),
        }
    }

    /// Adds the next parameter (`$1`, `$2`, …) with its type.
    pub fn param(mut self, value: impl ToSql + Sync + Send + 'static, ty: Type) -> Self {
        self.params.push((Box::new(value), ty));
        self
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("sql", &self.sql)
            .field("params", &self.params.len())
            .finish()
    }
}

/// The rows of each query of each collector of a batch: `[collector][query]`.
pub type BatchRows = Vec<Vec<Vec<Row>>>;

/// What one scrape read.
#[derive(Debug)]
pub struct Fetched {
    pub every_scrape: BatchRows,
    /// Present when the cached batch was asked for: its rows, or why they could not be read.
    /// A failure there does not fail the fetch.
    pub cached: Option<Result<BatchRows, DbError>>,
}

/// Runs one scrape's queries, all within `budget` (client-side deadline and a server-side
/// statement_timeout), on one connection: `every_scrape` (the queries of each collector,
/// pipelined) in one read-only transaction, whose failure fails the fetch; then, when
/// given, `cached` in a second read-only transaction in the time left, whose failure is
/// returned in [`Fetched::cached`] while the first batch's rows are kept.
pub async fn fetch(
    pool: &Pool,
    budget: Duration,
    every_scrape: &[Vec<Query>],
    cached: Option<&[Vec<Query>]>,
) -> Result<Fetched, DbError> {
    let deadline = Instant::now() + budget;
    let client = acquire(pool, deadline, budget).await?;
    let first = match timeout_at(deadline, batch_on(&client, deadline, every_scrape)).await {
        Ok(r) => r,
        Err(_) => Err(DbError::Timeout(budget)),
    };
    let every_scrape = match first {
        Ok(rows) => rows,
        Err(e) => {
            discard(client);
            return Err(e);
        }
    };
    let cached = match cached {
        None => None,
        Some(batch) => Some(
            match timeout_at(deadline, batch_on(&client, deadline, batch)).await {
                Ok(r) => r,
                Err(_) => Err(DbError::Timeout(budget)),
            },
        ),
    };
    if let Some(Err(_)) = cached {
        // A failed or interrupted batch leaves the connection in an unknown state.
        discard(client);
    }
    Ok(Fetched { every_scrape, cached })
}

/// Opens a read-only transaction whose statements may run until `deadline`.
async fn begin_read_only(c: &Object, deadline: Instant) -> Result<(), DbError> {
    let left_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1);
    c.batch_execute(&format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {left_ms}"
    ))
    .await?;
    Ok(())
}

/// Runs a batch in one read-only transaction, every query pipelined on the one connection.
async fn batch_on(c: &Object, deadline: Instant, batch: &[Vec<Query>]) -> Result<BatchRows, DbError> {
    begin_read_only(c, deadline).await?;
    let params: Vec<Vec<(&(dyn ToSql + Sync), Type)>> = batch
        .iter()
        .flatten()
        .map(|q| {
            q.params
                .iter()
                .map(|(v, t)| (&**v as &(dyn ToSql + Sync), t.clone()))
                .collect()
        })
        .collect();
    let pending = batch
        .iter()
        .flatten()
        .zip(&params)
        .map(|(q, p)| c.query_typed(q.sql, p))
        .collect();
    let mut flat = try_join_all(pending).await?.into_iter();
    c.batch_execute("COMMIT").await?;
    Ok(batch
        .iter()
        .map(|qs| flat.by_ref().take(qs.len()).collect())
        .collect())
}

/// Polls every future concurrently (each in its turn, so the queries go out in order on one
/// pipelined connection); the first error wins and drops the rest, like `tokio::try_join!`.
async fn try_join_all<T, E, F>(futures: Vec<F>) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(done.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            match f.as_mut().poll(cx) {
                Poll::Ready(Ok(v)) => *slot = Some(v),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => pending = true,
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(Ok(done
                .iter_mut()
                .map(|s| s.take().expect("polled to completion"))
                .collect()))
        }
    })
    .await
}

/// Reading columns, for the collectors. Columns are named; NULL text reads as "" (the
/// contract's "unknown"), NULL numbers as 0.
pub mod column {
    use super::{tokio_postgres, DbError, Row};

    pub fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, DbError> {
        row.try_get(name)
            .map_err(|e| DbError::Data(format!("column {name}: {e}")))
    }

    pub fn text(row: &Row, name: &str) -> Result<String, DbError> {
        Ok(get::<Option<String>>(row, name)?.unwrap_or_default())
    }

    pub fn int8(row: &Row, name: &str) -> Result<i64, DbError> {
        Ok(get::<Option<i64>>(row, name)?.unwrap_or(0))
    }

    pub fn int4(row: &Row, name: &str) -> Result<i32, DbError> {
        Ok(get::<Option<i32>>(row, name)?.unwrap_or(0))
    }

    pub fn float8(row: &Row, name: &str) -> Result<f64, DbError> {
        Ok(get::<Option<f64>>(row, name)?.unwrap_or(0.0))
    }

    /// The rows of query `i` of a collector's results.
    pub fn rows<'a>(results: &'a [Vec<Row>], i: usize, what: &str) -> Result<&'a [Row], DbError> {
        results
            .get(i)
            .map(Vec::as_slice)
            .ok_or_else(|| DbError::Data(format!("no result for {what}")))
    }

    /// The one row a single-row query must return.
    pub fn single<'a>(rows: &'a [Row], what: &str) -> Result<&'a Row, DbError> {
        rows.first()
            .ok_or_else(|| DbError::Data(format!("{what} returned no row")))
    }
}

#[cfg(test)]
mod join_tests {
    use super::*;

    #[tokio::test]
    async fn try_join_all_keeps_order_and_stops_at_the_first_error() {
        let ok: Vec<_> = (0..5u64)
            .map(|i| async move {
                tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
                Ok::<_, String>(i)
            })
            .collect();
        assert_eq!(try_join_all(ok).await, Ok(vec![0, 1, 2, 3, 4]));
        let failing: Vec<_> = (0..3u64)
            .map(|i| async move {
                if i == 1 {
                    Err(format!("query {i} failed"))
                } else {
                    std::future::pending::<()>().await;
                    Ok(i)
                }
            })
            .collect();
        assert_eq!(try_join_all(failing).await, Err("query 1 failed".to_string()));
        assert_eq!(
            try_join_all(Vec::<std::future::Ready<Result<u8, ()>>>::new()).await,
            Ok(vec![])
        );
    }
}
