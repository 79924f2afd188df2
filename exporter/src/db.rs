//! Connection string handling, the connection pool, and running the collectors'
//! queries (which SQL runs is each collector's business, see `collectors`).
//!
//! Every unit of database work (a scrape or a health check) runs under one
//! deadline covering pool wait, connect and queries. A connection that saw an
//! error or ran out of time is detached from the pool and dropped (closing
//! it), so a broken, half-used or stuck connection is never handed out again
//! and the pool reconnects on the next request.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::tokio_postgres::types::{ToSql, Type};
use deadpool_postgres::tokio_postgres::{self, NoTls, Row};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::time::{timeout_at, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Config;
use crate::tls;

/// Why a unit of database work failed.
#[derive(Debug)]
pub enum DbError {
    /// The --query-timeout budget ran out.
    Timeout(Duration),
    /// No connection could be had (connect error, pool wait/create timeout).
    Pool(PoolError),
    /// A query failed.
    Query(tokio_postgres::Error),
    /// A row did not have the expected shape.
    Data(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Timeout(d) => write!(f, "database work did not finish within {d:?}"),
            DbError::Pool(e) => write!(f, "no database connection: {}", error_chain(e)),
            DbError::Query(e) => {
                write!(f, "query failed: {}", error_chain(e))?;
                if let Some(db) = e.as_db_error() {
                    if let Some(hint) = db.hint() {
                        write!(f, " (hint: {hint})")?;
                    }
                }
                Ok(())
            }
            DbError::Data(msg) => write!(f, "unexpected query result: {msg}"),
        }
    }
}

impl std::error::Error for DbError {}

/// An error and its causes, "outer: inner: innermost" (tokio-postgres keeps the useful part,
/// e.g. "Connection refused" or the server's message, in the source chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let msg = inner.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = inner.source();
    }
    out
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Query(e)
    }
}

/// The connection string after the options that tokio-postgres does not know were taken out.
#[derive(Debug)]
pub struct Target {
    pub pg: tokio_postgres::Config,
    /// Whether to use the rustls connector (false: plain TCP / unix socket).
    pub use_tls: bool,
    /// `sslrootcert=` from the URL: the only CA file to trust (see `tls`).
    pub root_cert: Option<PathBuf>,
}

/// Parses a connection string (URL or key=value). In URL form, `sslmode=verify-ca` and
/// `sslmode=verify-full` are accepted (as `require`, which verifies here) and `sslrootcert`
/// is taken out and returned. An absent sslmode means no TLS, like `disable`.
pub fn parse_target(conn: &str) -> Result<Target, String> {
    let mut root_cert = None;
    let mut sslmode_given = false;
    let rewritten;
    let to_parse: &str = if let Some((base, query)) = split_url_query(conn) {
        let mut kept = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = param.split_once('=').unwrap_or((param, ""));
            match percent_decode(k).as_str() {
                "sslmode" => {
                    sslmode_given = true;
                    match percent_decode(v).as_str() {
                        "verify-ca" | "verify-full" => kept.push("sslmode=require".to_string()),
                        _ => kept.push(param.to_string()),
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(v))),
                _ => kept.push(param.to_string()),
            }
        }
        rewritten = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        &rewritten
    } else {
        sslmode_given = conn.contains("sslmode");
        conn
    };
    let mut pg: tokio_postgres::Config = to_parse
        .parse()
        .map_err(|e| format!("invalid --database-url / DATABASE_URL: {}", error_chain(&e)))?;
    let use_tls = sslmode_given && !matches!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    if !use_tls {
        pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    Ok(Target {
        pg,
        use_tls,
        root_cert,
    })
}

fn split_url_query(conn: &str) -> Option<(&str, &str)> {
    let is_url = conn.starts_with("postgres://") || conn.starts_with("postgresql://");
    if !is_url {
        return None;
    }
    Some(conn.split_once('?').unwrap_or((conn, "")))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A loggable description of where we connect (never the password).
pub fn describe(t: &Target) -> String {
    let hosts: Vec<String> =
        t.pg.get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
    let ports: Vec<String> = t.pg.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host={} port={} dbname={} user={} tls={}",
        if hosts.is_empty() {
            "(default)".into()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".into()
        } else {
            ports.join(",")
        },
        t.pg.get_dbname().unwrap_or("(default)"),
        t.pg.get_user().unwrap_or("(default)"),
        if t.use_tls { "rustls" } else { "off" },
    )
}

/// Builds the bounded pool. Connections are made lazily, so this succeeds while the database is down.
pub fn build_pool(cfg: &Config, mut target: Target) -> Result<Pool, String> {
    if target.pg.get_application_name().is_none() {
        target.pg.application_name("usage-analytics-exporter");
    }
    if target.pg.get_connect_timeout().is_none() {
        target
            .pg
            .connect_timeout(cfg.query_timeout.max(Duration::from_millis(50)));
    }
    let mgr_cfg = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if target.use_tls {
        let root = cfg.ssl_root_cert.as_deref().or(target.root_cert.as_deref());
        let tls_cfg = tls::client_config(root, cfg.ssl_accept_invalid_certs)?;
        Manager::from_config(target.pg, MakeRustlsConnect::new(tls_cfg), mgr_cfg)
    } else {
        Manager::from_config(target.pg, NoTls, mgr_cfg)
    };
    let t = Some(cfg.query_timeout);
    Pool::builder(manager)
        .max_size(usize::from(cfg.pool_size))
        .wait_timeout(t)
        .create_timeout(t)
        .recycle_timeout(t)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| format!("cannot build the connection pool: {e}"))
}

/// Takes a connection from the pool before `deadline`.
async fn acquire(pool: &Pool, deadline: Instant, budget: Duration) -> Result<Object, DbError> {
    match timeout_at(deadline, pool.get()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(DbError::Pool(e)),
        Err(_) => Err(DbError::Timeout(budget)),
    }
}

/// Returns a connection to the pool after success; after any failure (including a
/// timeout in the middle of a query) detaches it, and dropping it aborts its
/// connection task and closes the socket.
fn release<T>(client: Object, result: &Result<T, DbError>) {
    if result.is_err() {
        discard(client);
    }
}

/// Detaches a connection from the pool and closes it.
fn discard(client: Object) {
    drop(Object::take(client));
}

/// `SELECT 1` within the budget.
pub async fn ping(pool: &Pool, budget: Duration) -> Result<(), DbError> {
    let deadline = Instant::now() + budget;
    let client = acquire(pool, deadline, budget).await?;
    let result = match timeout_at(deadline, client.query_typed("SELECT 1", &[])).await {
        Ok(Ok(rows)) if rows.len() == 1 => Ok(()),
        Ok(Ok(_)) => Err(DbError::Data("SELECT 1 returned no row".into())),
        Ok(Err(e)) => Err(DbError::Query(e)),
        Err(_) => Err(DbError::Timeout(budget)),
    };
    release(client, &result);
    result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_sslmode_means_no_tls() {
        let t = parse_target("postgres://u:p@db.example.com:6543/app").unwrap();
        assert!(!t.use_tls);
        assert_eq!(t.pg.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let t = parse_target("host=db user=u dbname=app").unwrap();
        assert!(!t.use_tls);
    }

    #[test]
    fn sslmode_values() {
        let t = parse_target("postgres://u@h/db?sslmode=disable").unwrap();
        assert!(!t.use_tls);
        let t = parse_target("postgres://u@h/db?sslmode=require").unwrap();
        assert!(t.use_tls);
        assert_eq!(t.pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let t = parse_target("postgres://u@h/db?sslmode=prefer").unwrap();
        assert!(t.use_tls);
        let t = parse_target("postgresql://u@h/db?application_name=x&sslmode=verify-full").unwrap();
        assert!(t.use_tls);
        assert_eq!(t.pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(t.pg.get_application_name(), Some("x"));
        let t = parse_target("host=h user=u sslmode=require").unwrap();
        assert!(t.use_tls);
        assert!(parse_target("postgres://u@h/db?sslmode=bogus").is_err());
    }

    #[test]
    fn sslrootcert_is_taken_out_of_the_url() {
        let t = parse_target("postgres://u@h/db?sslrootcert=%2Fetc%2Fca%20x.pem&sslmode=verify-ca").unwrap();
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca x.pem")));
        assert!(t.use_tls);
        let t = parse_target("postgres://u@h/db?sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!t.use_tls);
    }

    #[test]
    fn error_chain_includes_causes_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let inner = E("Connection refused (os error 111)", None);
        let mid = E("error connecting to server", Some(Box::new(inner)));
        let outer = E("pool: error connecting to server", Some(Box::new(mid)));
        assert_eq!(
            error_chain(&outer),
            "pool: error connecting to server: Connection refused (os error 111)"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn description_hides_the_password() {
        let t = parse_target("postgres://bob:s3cret@db.example.com:6543/app?sslmode=require").unwrap();
        let d = describe(&t);
        assert!(!d.contains("s3cret"), "{d}");
        assert!(d.contains("db.example.com") && d.contains("6543") && d.contains("app") && d.contains("bob"));
    }

    #[test]
    fn bad_url_error_does_not_echo_it() {
        let e = parse_target("postgres://bob:s3cret@h/db?nonsense_option=1").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("nonsense_option"), "{e}");
    }
}
