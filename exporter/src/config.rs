//! Command-line flags (each with an environment-variable fallback).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Prometheus exporter for the pg_usage_analytics PostgreSQL extension.
///
/// Every scrape of /metrics reads the extension's small aggregate functions
/// (schema usage_analytics, SECURITY DEFINER) and renders them in the
/// Prometheus text format. Every flag can also be given as the environment
/// variable shown next to it; a flag on the command line wins.
#[derive(Debug, Clone, Parser)]
#[command(name = "usage-analytics-exporter", version, about, long_about, after_long_help = AFTER_HELP)]
pub struct Config {
    /// PostgreSQL connection string, as a URL
    /// (postgres://user:pass@host:5432/db?sslmode=require) or as libpq-style
    /// key=value pairs. sslmode absent or `disable`: plain TCP. `prefer`: TLS
    /// when the server offers it. `require`, `verify-ca`, `verify-full`: TLS
    /// is mandatory and the server certificate is verified, host name
    /// included, like libpq's `verify-full` (stricter than libpq's `require`;
    /// see --ssl-accept-invalid-certs): against the Mozilla roots and the
    /// system's trust store, or, when a CA file is given, against that file
    /// only (see --ssl-root-cert). In URL form `sslrootcert=FILE` is honoured
    /// as well (--ssl-root-cert wins over it). Prefer the environment variable
    /// over the flag so the password does not show up in `ps`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: String,

    /// Address (host:port) the HTTP server listens on. Endpoints: /metrics,
    /// /health and / (a landing page).
    #[arg(
        long,
        env = "USAGE_EXPORTER_LISTEN",
        hide_env_values = true,
        default_value = "127.0.0.1:9464",
        value_name = "ADDR"
    )]
    pub listen: String,

    /// Time a client has to send a complete HTTP request header, counted from
    /// the moment the connection is accepted (and, on a kept-alive connection,
    /// from the end of the previous response). A connection that has not
    /// delivered a whole header by then, because it sends nothing or trickles
    /// bytes, is closed without an answer; this also closes keep-alive
    /// connections left idle for that long. Must be greater than 0. Humantime
    /// or milliseconds.
    #[arg(
        long,
        env = "USAGE_EXPORTER_HTTP_HEADER_TIMEOUT",
        hide_env_values = true,
        default_value = "5s",
        value_parser = parse_positive_duration,
        value_name = "DURATION"
    )]
    pub http_header_timeout: Duration,

    /// Maximum number of HTTP connections open at once. When that many are
    /// open the exporter stops accepting: further connections are not refused
    /// but wait in the kernel's listen backlog and are accepted in arrival
    /// order as open ones close. Because --http-header-timeout closes
    /// connections that do not send a request, a scraper is served at most
    /// about that long later even when idle clients hold every slot.
    #[arg(
        long,
        env = "USAGE_EXPORTER_MAX_CONNECTIONS",
        hide_env_values = true,
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
        value_name = "N"
    )]
    pub max_connections: u32,

    /// N for ai_usage_top_user_cost_usd: how many of today's (UTC) top users
    /// by cost are exported, one series each (0 exports none). At most 100,
    /// to bound the series count: a larger N is lowered to 100, with a
    /// warning at start-up.
    #[arg(
        long,
        env = "USAGE_EXPORTER_TOP_USERS",
        hide_env_values = true,
        default_value_t = 10,
        value_name = "N"
    )]
    pub top_users: u32,

    /// Time budget for one scrape's (or one health check's) database work:
    /// taking a pooled connection or connecting, and all queries. When it
    /// runs out the scrape reports ai_usage_exporter_up 0 and no usage series.
    /// Accepts humantime ("800ms", "2s") or a bare number of milliseconds.
    #[arg(
        long,
        env = "USAGE_EXPORTER_QUERY_TIMEOUT",
        hide_env_values = true,
        default_value = "800ms",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub query_timeout: Duration,

    /// How long the expensive gauges (ai_usage_active_users,
    /// ai_usage_top_user_cost_usd) are cached: they are re-queried at most
    /// this often and served from the cache by the scrapes in between. A
    /// refresh that fails keeps the last good values, served with
    /// ai_usage_exporter_gauges_stale 1, and is retried one interval later
    /// (not on every scrape); it does not fail the scrape. The counters, the
    /// histogram and the rollup timestamp are read on every scrape. "0"
    /// re-queries on every scrape. Humantime or milliseconds.
    #[arg(
        long,
        env = "USAGE_EXPORTER_GAUGE_REFRESH_INTERVAL",
        hide_env_values = true,
        default_value = "30s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub gauge_refresh_interval: Duration,

    /// Maximum number of database connections the exporter keeps open.
    /// Scrapes are serialized (concurrent scrapes share one result), so one
    /// connection serves /metrics and a second one keeps /health responsive.
    #[arg(
        long,
        env = "USAGE_EXPORTER_POOL_SIZE",
        hide_env_values = true,
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=64),
        value_name = "N"
    )]
    pub pool_size: u16,

    /// PEM file of the CA certificates to trust for the database's TLS
    /// certificate (e.g. a private CA, or a cloud provider's RDS/Supabase CA
    /// bundle). As with libpq's sslrootcert, these certificates are then the
    /// ONLY ones trusted: the Mozilla roots and the system trust store are not
    /// consulted. Without it (or with the value "system", as in libpq 16) the
    /// Mozilla roots and the system trust store are used. Overrides
    /// `sslrootcert=` in --database-url. Only used when the connection string
    /// asks for TLS.
    #[arg(
        long,
        env = "USAGE_EXPORTER_SSL_ROOT_CERT",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub ssl_root_cert: Option<PathBuf>,

    /// INSECURE: use TLS but accept any server certificate (libpq's
    /// `sslmode=require` behaviour). Encrypts, but does not protect against
    /// an active man in the middle. Prefer --ssl-root-cert.
    #[arg(long, env = "USAGE_EXPORTER_SSL_ACCEPT_INVALID_CERTS", hide_env_values = true)]
    pub ssl_accept_invalid_certs: bool,
}

/// The most top users --top-users exports.
pub const MAX_TOP_USERS: u32 = 100;

impl Config {
    /// --top-users, lowered to [`MAX_TOP_USERS`].
    pub fn top_users_clamped(&self) -> u32 {
        self.top_users.min(MAX_TOP_USERS)
    }
}

const AFTER_HELP: &str = "\
Endpoints:
  /metrics  Prometheus text format 0.0.4. Scrapes run one at a time; a request that arrives
            while a scrape runs shares its result. When the database is down or slower than
            --query-timeout, the answer still comes within that time, with
            ai_usage_exporter_up 0, ai_usage_exporter_scrape_errors_total incremented, the
            scrape duration, and no usage series at all (not even cached gauges). The
            cached gauges are refreshed within the same time budget, after the counters;
            when a refresh fails the scrape still succeeds (ai_usage_exporter_up 1) and serves
            the last good gauges with ai_usage_exporter_gauges_stale 1,
            ai_usage_exporter_gauges_age_seconds and
            ai_usage_exporter_gauge_refresh_errors_total incremented.
  /health   200 \"ok\" when SELECT 1 succeeds within --query-timeout, 503 otherwise.
  /         A landing page linking both.

ai_usage_rollup_last_success_timestamp_seconds is left out while no rollup has ever run
(alert on its absence together with ai_usage_exporter_up == 1).

The database role needs EXECUTE on the usage_analytics.metrics_* functions only.
Connections are opened lazily and re-opened after errors, so the exporter may start before
the database. Logs go to stderr; set RUST_LOG (e.g. debug, or
usage_analytics_exporter=debug) to change the level (default info). SIGINT and SIGTERM
stop it gracefully: it stops accepting connections, closes idle ones, lets requests in
progress finish (waiting at most 10 s) and exits.";

/// Parses "800ms", "1s", "1m 30s" (humantime) or a bare integer of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 800ms, 2s or a number of milliseconds"))
}

/// [`parse_duration`], refusing zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than 0".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("800").unwrap(), Duration::from_millis(800));
        assert_eq!(parse_duration("800ms").unwrap(), Duration::from_millis(800));
        assert_eq!(parse_duration(" 2s ").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(["x", "--database-url", "postgres://u@h/db"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9464");
        assert_eq!(c.top_users_clamped(), 10);
        assert_eq!(c.query_timeout, Duration::from_millis(800));
        assert_eq!(c.gauge_refresh_interval, Duration::from_secs(30));
        assert_eq!(c.pool_size, 2);
        assert_eq!(c.http_header_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections, 64);
        assert!(!c.ssl_accept_invalid_certs);
    }

    #[test]
    fn top_users_is_clamped_to_100() {
        let n = |v: &str| {
            Config::try_parse_from(["x", "--database-url=x", &format!("--top-users={v}")])
                .unwrap()
                .top_users_clamped()
        };
        assert_eq!(n("0"), 0);
        assert_eq!(n("100"), 100);
        assert_eq!(n("101"), 100);
        assert_eq!(n("1000000"), 100);
        assert!(Config::try_parse_from(["x", "--database-url=x", "--top-users=-1"]).is_err());
    }

    #[test]
    fn flags() {
        let c = Config::try_parse_from([
            "x",
            "--database-url=postgres://u@h/db",
            "--listen=0.0.0.0:1",
            "--top-users=3",
            "--query-timeout=250",
            "--gauge-refresh-interval=1m",
            "--pool-size=4",
            "--http-header-timeout=750ms",
            "--max-connections=3",
        ])
        .unwrap();
        assert_eq!(c.http_header_timeout, Duration::from_millis(750));
        assert_eq!(c.max_connections, 3);
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.top_users_clamped(), 3);
        assert_eq!(c.query_timeout, Duration::from_millis(250));
        assert_eq!(c.gauge_refresh_interval, Duration::from_secs(60));
        assert_eq!(c.pool_size, 4);
        assert!(Config::try_parse_from(["x", "--database-url=x", "--pool-size=0"]).is_err());
        assert!(Config::try_parse_from(["x", "--database-url=x", "--http-header-timeout=0"]).is_err());
        assert!(Config::try_parse_from(["x", "--database-url=x", "--max-connections=0"]).is_err());
    }
}
