//! Connection string handling, the connection pool, and the queries.
//!
//! Every unit of database work (a scrape or a health check) runs under one
//! deadline covering pool wait, connect and queries. A connection that saw an
//! error or ran out of time is detached from the pool and dropped (closing
//! it), so a broken, half-used or stuck connection is never handed out again
//! and the pool reconnects on the next request.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::tokio_postgres::{self, types::Type, NoTls, Row};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::time::{timeout_at, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Config;
use crate::model::{Gauges, TopUser, Usage, UsageRow};
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

const Q_COUNTERS: &str = "SELECT provider, framework, agent_id, model, message_type, success, \
       requests::int8, input_tokens::float8, output_tokens::float8, cost_usd::float8, \
       unpriced_requests::int8, response_time_count::int8, response_time_sum_seconds::float8, \
       response_time_buckets::int8[] \
  FROM usage_analytics.metrics_usage_counters()";
const Q_BOUNDS: &str = "SELECT usage_analytics.metrics_response_time_bucket_bounds()::float8[]";
const Q_ROLLUP: &str = "SELECT extract(epoch FROM usage_analytics.metrics_rollup_last_success())::float8";
const Q_ACTIVE: &str = "SELECT \"window\"::text, users::int8 FROM usage_analytics.metrics_active_users()";
const Q_TOP: &str =
    "SELECT rank::int4, user_id::text, cost_usd::float8 FROM usage_analytics.metrics_top_users($1)";

/// What one scrape read.
#[derive(Debug)]
pub struct Fetched {
    pub usage: Usage,
    /// Present when a gauge refresh was asked for: the gauges, or why they could not be read.
    /// A failed refresh does not fail the fetch.
    pub gauges: Option<Result<Gauges, DbError>>,
}

/// Reads everything one scrape needs, all within `budget` (client-side deadline and a
/// server-side statement_timeout). The counters, histogram and rollup timestamp are read in
/// one read-only transaction; an error there fails the fetch. `gauges_top_n`: then also
/// refresh the expensive gauges, with that N for the top users, in a second read-only
/// transaction on the same connection, in the time left; an error there is returned in
/// [`Fetched::gauges`] and the counters are kept.
pub async fn fetch(pool: &Pool, budget: Duration, gauges_top_n: Option<u32>) -> Result<Fetched, DbError> {
    let deadline = Instant::now() + budget;
    let client = acquire(pool, deadline, budget).await?;
    let usage = match timeout_at(deadline, usage_on(&client, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(DbError::Timeout(budget)),
    };
    let usage = match usage {
        Ok(u) => u,
        Err(e) => {
            discard(client);
            return Err(e);
        }
    };
    let gauges = match gauges_top_n {
        None => None,
        Some(n) => Some(
            match timeout_at(deadline, gauges_on(&client, deadline, n)).await {
                Ok(r) => r,
                Err(_) => Err(DbError::Timeout(budget)),
            },
        ),
    };
    if let Some(Err(_)) = gauges {
        // A failed or interrupted refresh leaves the connection in an unknown state.
        discard(client);
    }
    Ok(Fetched { usage, gauges })
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

async fn usage_on(c: &Object, deadline: Instant) -> Result<Usage, DbError> {
    begin_read_only(c, deadline).await?;
    // The queries are pipelined on the one connection.
    let counters = c.query_typed(Q_COUNTERS, &[]);
    let bounds = c.query_typed(Q_BOUNDS, &[]);
    let rollup = c.query_typed(Q_ROLLUP, &[]);
    let (counters, bounds, rollup) = tokio::try_join!(counters, bounds, rollup)?;
    c.batch_execute("COMMIT").await?;
    Ok(Usage {
        rows: counters.iter().map(usage_row).collect::<Result<_, _>>()?,
        bucket_bounds: bounds_from(&bounds)?,
        rollup_last_success: single_opt_f64(&rollup, "metrics_rollup_last_success")?,
    })
}

async fn gauges_on(c: &Object, deadline: Instant, top_n: u32) -> Result<Gauges, DbError> {
    begin_read_only(c, deadline).await?;
    let n = i32::try_from(top_n).unwrap_or(i32::MAX);
    let active = c.query_typed(Q_ACTIVE, &[]);
    let top = async {
        if n == 0 {
            Ok(Vec::new())
        } else {
            c.query_typed(Q_TOP, &[(&n, Type::INT4)]).await
        }
    };
    let (active, top) = tokio::try_join!(active, top)?;
    c.batch_execute("COMMIT").await?;
    Ok(Gauges {
        active_users: active
            .iter()
            .map(|r| Ok((get::<Option<String>>(r, 0)?.unwrap_or_default(), get_i64(r, 1)?)))
            .collect::<Result<_, DbError>>()?,
        top_users: top
            .iter()
            .map(|r| {
                Ok(TopUser {
                    rank: get::<Option<i32>>(r, 0)?.unwrap_or_default(),
                    user_id: get::<Option<String>>(r, 1)?.unwrap_or_default(),
                    cost_usd: get_f64(r, 2)?,
                })
            })
            .collect::<Result<_, DbError>>()?,
    })
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, DbError> {
    row.try_get(idx)
        .map_err(|e| DbError::Data(format!("column {idx}: {e}")))
}

fn get_i64(row: &Row, idx: usize) -> Result<i64, DbError> {
    Ok(get::<Option<i64>>(row, idx)?.unwrap_or(0))
}

fn get_f64(row: &Row, idx: usize) -> Result<f64, DbError> {
    Ok(get::<Option<f64>>(row, idx)?.unwrap_or(0.0))
}

fn usage_row(r: &Row) -> Result<UsageRow, DbError> {
    let text = |i| get::<Option<String>>(r, i).map(Option::unwrap_or_default);
    Ok(UsageRow {
        provider: text(0)?,
        framework: text(1)?,
        agent_id: text(2)?,
        model: text(3)?,
        message_type: text(4)?,
        success: get(r, 5)?,
        requests: get_i64(r, 6)?,
        input_tokens: get_f64(r, 7)?,
        output_tokens: get_f64(r, 8)?,
        cost_usd: get_f64(r, 9)?,
        unpriced_requests: get_i64(r, 10)?,
        response_time_count: get_i64(r, 11)?,
        response_time_sum_seconds: get_f64(r, 12)?,
        response_time_buckets: get::<Option<Vec<Option<i64>>>>(r, 13)?
            .map(|v| v.into_iter().map(|x| x.unwrap_or(0)).collect()),
    })
}

fn bounds_from(rows: &[Row]) -> Result<Vec<f64>, DbError> {
    let row = rows
        .first()
        .ok_or_else(|| DbError::Data("metrics_response_time_bucket_bounds returned no row".into()))?;
    let v: Option<Vec<Option<f64>>> = get(row, 0)?;
    v.unwrap_or_default()
        .into_iter()
        .map(|b| b.ok_or_else(|| DbError::Data("NULL response-time bucket bound".into())))
        .collect()
}

fn single_opt_f64(rows: &[Row], what: &str) -> Result<Option<f64>, DbError> {
    let row = rows
        .first()
        .ok_or_else(|| DbError::Data(format!("{what} returned no row")))?;
    get(row, 0)
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
