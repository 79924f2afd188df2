//! Database connections, as both services make them: the connection string (URL or
//! key=value; sslmode and sslrootcert handled like libpq's `verify-full`), the bounded
//! pool, taking a connection within a deadline, the health ping, and the error type of
//! database work.
//!
//! A connection that saw an error or ran out of time is detached from the pool and
//! dropped (closing it), so a broken, half-used or stuck connection is never handed out
//! again and the pool reconnects on the next request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deadpool_postgres::tokio_postgres::{self, NoTls};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::time::{timeout_at, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls;

/// Why a unit of database work failed.
#[derive(Debug)]
pub enum DbError {
    /// The time budget ran out.
    Timeout(Duration),
    /// No connection could be had (connect error, pool wait/create timeout).
    Pool(PoolError),
    /// A query failed.
    Query(tokio_postgres::Error),
    /// A row did not have the expected shape.
    Data(String),
    /// The database lacks what the service needs.
    Missing(String),
}

impl DbError {
    /// The SQLSTATE of a query error the server raised.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Query(e) => e.as_db_error().map(|db| db.code().code()),
            _ => None,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Timeout(d) => write!(f, "database work did not finish within {d:?}"),
            DbError::Pool(e) => write!(f, "no database connection: {}", error_chain(e)),
            DbError::Query(e) => {
                write!(f, "query failed: {}", error_chain(e))?;
                if let Some(db) = e.as_db_error() {
                    if let Some(detail) = db.detail() {
                        write!(f, " (detail: {detail})")?;
                    }
                    if let Some(hint) = db.hint() {
                        write!(f, " (hint: {hint})")?;
                    }
                }
                Ok(())
            }
            DbError::Data(msg) => write!(f, "unexpected query result: {msg}"),
            DbError::Missing(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Query(e)
    }
}

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

/// How a service sizes and names its pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings<'a> {
    /// `application_name`, unless the connection string sets one.
    pub application_name: &'static str,
    /// Connect timeout, unless the connection string sets one.
    pub connect_timeout: Duration,
    /// Connections kept open at most.
    pub max_size: usize,
    /// How long taking a connection may wait for a free one, for a new one to be
    /// made, or for a returned one to be checked.
    pub timeout: Duration,
    /// --ssl-root-cert: the only CA file to trust; wins over `sslrootcert=` in the URL.
    pub ssl_root_cert: Option<&'a Path>,
    /// --ssl-accept-invalid-certs.
    pub ssl_accept_invalid_certs: bool,
}

/// Builds the bounded pool. Connections are made lazily, so this succeeds while the
/// database is down; a TLS setup that cannot work (an unreadable CA file) fails here.
pub fn build_pool(mut target: Target, settings: &PoolSettings<'_>) -> Result<Pool, String> {
    if target.pg.get_application_name().is_none() {
        target.pg.application_name(settings.application_name);
    }
    if target.pg.get_connect_timeout().is_none() {
        target.pg.connect_timeout(settings.connect_timeout);
    }
    let mgr_cfg = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if target.use_tls {
        let root = settings.ssl_root_cert.or(target.root_cert.as_deref());
        let tls_cfg = tls::client_config(root, settings.ssl_accept_invalid_certs)?;
        Manager::from_config(target.pg, MakeRustlsConnect::new(tls_cfg), mgr_cfg)
    } else {
        Manager::from_config(target.pg, NoTls, mgr_cfg)
    };
    let t = Some(settings.timeout);
    Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(t)
        .create_timeout(t)
        .recycle_timeout(t)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| format!("cannot build the connection pool: {e}"))
}

/// Takes a connection from the pool before `deadline` (`budget`: the time the
/// deadline was set for, reported in a timeout).
pub async fn acquire(pool: &Pool, deadline: Instant, budget: Duration) -> Result<Object, DbError> {
    match timeout_at(deadline, pool.get()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(DbError::Pool(e)),
        Err(_) => Err(DbError::Timeout(budget)),
    }
}

/// Detaches a connection from the pool and closes it (after an error or a timeout,
/// when its state is unknown).
pub fn discard(client: Object) {
    drop(Object::take(client));
}

/// `SELECT 1` within the budget (connecting included): the health check.
pub async fn ping(pool: &Pool, budget: Duration) -> Result<(), DbError> {
    let deadline = Instant::now() + budget;
    let client = acquire(pool, deadline, budget).await?;
    let result = match timeout_at(deadline, client.query_typed("SELECT 1", &[])).await {
        Ok(Ok(rows)) if rows.len() == 1 => Ok(()),
        Ok(Ok(_)) => Err(DbError::Data("SELECT 1 returned no row".into())),
        Ok(Err(e)) => Err(DbError::Query(e)),
        Err(_) => Err(DbError::Timeout(budget)),
    };
    if result.is_err() {
        discard(client);
    }
    result
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
