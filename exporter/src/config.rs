//! Command-line flags (each with an environment-variable fallback).

use std::time::Duration;

use clap::Parser;
use usage_analytics_service::flags::{parse_duration, DatabaseArgs, Help, HttpArgs, ServiceFlags, TlsArgs};

/// Prometheus exporter for the pg_usage_analytics PostgreSQL extension.
///
/// Every scrape of /metrics reads the extension's small aggregate functions
/// (schema usage_analytics, SECURITY DEFINER) and renders them in the
/// Prometheus text format. Every flag can also be given as the environment
/// variable shown next to it; a flag on the command line wins. Durations
/// accept humantime ("800ms", "2s", "1m 30s") or a bare number of
/// milliseconds.
#[derive(Debug, Clone, Parser)]
#[command(name = "usage-analytics-exporter", version, about, long_about, after_long_help = AFTER_HELP)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs<ExporterFlags>,

    /// Address (host:port) the HTTP server listens on.
    ///
    /// Endpoints: /metrics, /health and / (a landing page). An IPv6 address
    /// is written in brackets ([::1]:9464). The endpoints have no
    /// authentication and no TLS: keep a loopback address, or restrict who
    /// can reach the port, when the usage data is sensitive.
    #[arg(
        long,
        env = "USAGE_EXPORTER_LISTEN",
        hide_env_values = true,
        default_value = "127.0.0.1:9464",
        value_name = "ADDR"
    )]
    pub listen: String,

    #[command(flatten)]
    pub http: HttpArgs<ExporterFlags>,

    /// How many of today's top users by cost are exported (at most 100).
    ///
    /// N for ai_usage_top_user_cost_usd: today's (UTC) N most expensive
    /// users, one series each (0 exports none). At most 100, to bound the
    /// series count: a larger N is lowered to 100, with a warning at
    /// start-up.
    #[arg(
        long,
        env = "USAGE_EXPORTER_TOP_USERS",
        hide_env_values = true,
        default_value_t = 10,
        value_name = "N"
    )]
    pub top_users: u32,

    /// Time budget for one scrape's (or one health check's) database work.
    ///
    /// Covers taking a pooled connection or connecting, and all queries (the
    /// server also gets it as statement_timeout). When it runs out before the
    /// counters are read, the scrape reports ai_usage_exporter_up 0 and no
    /// usage series; when it runs out during a refresh of the cached gauges,
    /// only that refresh fails (see --gauge-refresh-interval). /health
    /// answers 503.
    #[arg(
        long,
        env = "USAGE_EXPORTER_QUERY_TIMEOUT",
        hide_env_values = true,
        default_value = "800ms",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub query_timeout: Duration,

    /// How long the expensive gauges are cached.
    ///
    /// ai_usage_active_users and ai_usage_top_user_cost_usd are re-queried at
    /// most this often and served from the cache by the scrapes in between.
    /// A refresh that fails keeps the last good values, served with
    /// ai_usage_exporter_cache_stale 1, and is retried one interval later
    /// (not on every scrape); it does not fail the scrape. The counters, the
    /// histogram and the rollup timestamp are read on every scrape. "0"
    /// re-queries on every scrape.
    #[arg(
        long,
        env = "USAGE_EXPORTER_GAUGE_REFRESH_INTERVAL",
        hide_env_values = true,
        default_value = "30s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub gauge_refresh_interval: Duration,

    /// Maximum number of database connections kept open (1 to 64).
    ///
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

    #[command(flatten)]
    pub tls: TlsArgs<ExporterFlags>,
}

/// The most top users --top-users exports.
pub const MAX_TOP_USERS: u32 = 100;

impl Config {
    /// --top-users, lowered to [`MAX_TOP_USERS`].
    pub fn top_users_clamped(&self) -> u32 {
        self.top_users.min(MAX_TOP_USERS)
    }
}

/// How the exporter words and sets the flags it shares with the other service.
#[derive(Debug, Clone)]
pub struct ExporterFlags;

impl ServiceFlags for ExporterFlags {
    const HTTP_HEADER_TIMEOUT_ENV: &'static str = "USAGE_EXPORTER_HTTP_HEADER_TIMEOUT";
    const HTTP_HEADER_TIMEOUT_DEFAULT: &'static str = "5s";
    const MAX_CONNECTIONS_ENV: &'static str = "USAGE_EXPORTER_MAX_CONNECTIONS";
    const SSL_ROOT_CERT_ENV: &'static str = "USAGE_EXPORTER_SSL_ROOT_CERT";
    const SSL_ACCEPT_INVALID_CERTS_ENV: &'static str = "USAGE_EXPORTER_SSL_ACCEPT_INVALID_CERTS";

    const DATABASE_URL: Help = Help {
        summary: "PostgreSQL connection string (URL or key=value)",
        details: "As a URL (postgres://user:pass@host:5432/db?sslmode=require) or as \
                  libpq-style key=value pairs (host=db user=exporter dbname=app). sslmode \
                  absent or `disable`: plain TCP. `prefer`: TLS when the server offers it. \
                  `require`, `verify-ca`, `verify-full`: TLS is mandatory and the server \
                  certificate is verified, host name included, like libpq's `verify-full` \
                  (stricter than libpq's `require`; see --ssl-accept-invalid-certs): against \
                  the Mozilla roots and the system's trust store, or, when a CA file is \
                  given, against that file only (see --ssl-root-cert). In URL form \
                  `sslrootcert=FILE` is honoured as well (--ssl-root-cert wins over it); \
                  with key=value pairs use --ssl-root-cert. Prefer the environment variable \
                  over the flag so the password does not show up in `ps`.",
    };
    const HTTP_HEADER_TIMEOUT: Help = Help {
        summary: "Time a client has to send a complete HTTP request header",
        details: "Counted from the moment the connection is accepted (and, on a kept-alive \
                  connection, from the end of the previous response). A connection that has \
                  not delivered a whole header by then, because it sends nothing or trickles \
                  bytes, is closed without an answer; this also closes keep-alive \
                  connections left idle for that long. Must be greater than 0.",
    };
    const MAX_CONNECTIONS: Help = Help {
        summary: "Maximum number of HTTP connections open at once (1 to 10000)",
        details: "When that many are open the exporter stops accepting: further connections \
                  are not refused but wait in the kernel's listen backlog and are accepted \
                  in arrival order as open ones close. Because --http-header-timeout closes \
                  connections that do not send a request, a scraper is served at most about \
                  that long later even when idle clients hold every slot.",
    };
    const SSL_ROOT_CERT: Help = Help {
        summary: "PEM file of the only CA certificates trusted for the database's TLS",
        details: "E.g. a private CA, or a cloud provider's RDS/Supabase CA bundle. As with \
                  libpq's sslrootcert, these certificates are then the ONLY ones trusted: \
                  the Mozilla roots and the system trust store are not consulted. Without it \
                  (or with the value \"system\", as in libpq 16) the Mozilla roots and the \
                  system trust store are used. Overrides `sslrootcert=` in --database-url. \
                  Only used when the connection string asks for TLS. An unreadable file, or \
                  one without a PEM certificate, stops the exporter at start-up.",
    };
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
            the last good gauges with ai_usage_exporter_cache_stale 1,
            ai_usage_exporter_cache_age_seconds and
            ai_usage_exporter_cache_refresh_errors_total incremented.
  /health   200 \"ok\" when SELECT 1 succeeds within --query-timeout, 503 otherwise.
  /         A landing page linking both.

ai_usage_rollup_last_success_timestamp_seconds is left out while no rollup has ever run
(alert on its absence together with ai_usage_exporter_up == 1).

The database role needs EXECUTE on the usage_analytics.metrics_* functions only.
Connections are opened lazily and re-opened after errors, so the exporter may start before
the database. Logs go to stderr; set RUST_LOG (e.g. debug, or
usage_analytics_exporter=debug) to change the level (default info). SIGINT and SIGTERM
stop it gracefully: it stops accepting connections, closes idle ones, lets requests in
progress finish (waiting at most 10 s) and exits.

Exit status: 0 after a graceful stop; 1 when it cannot start (an invalid connection
string, an unreadable CA file, a listen address it cannot bind); 2 for an unknown flag, a
missing --database-url or a flag value out of range.";

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use usage_analytics_service::flags::assert_documented;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn every_flag_has_a_summary_a_long_help_and_an_environment_variable() {
        assert_eq!(assert_documented(&Config::command(), "USAGE_EXPORTER_"), 10);
        let help = Config::command().render_long_help().to_string();
        for needle in ["Exit status:", "SIGTERM", "/metrics", "/health"] {
            assert!(help.contains(needle), "{needle} missing from --help");
        }
    }

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(["x", "--database-url", "postgres://u@h/db"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9464");
        assert_eq!(c.top_users_clamped(), 10);
        assert_eq!(c.query_timeout, Duration::from_millis(800));
        assert_eq!(c.gauge_refresh_interval, Duration::from_secs(30));
        assert_eq!(c.pool_size, 2);
        assert_eq!(c.http.http_header_timeout, Duration::from_secs(5));
        assert_eq!(c.http.max_connections, 64);
        assert!(!c.tls.ssl_accept_invalid_certs);
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
        assert_eq!(c.http.http_header_timeout, Duration::from_millis(750));
        assert_eq!(c.http.max_connections, 3);
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
