//! The command-line flags both services take, as clap argument groups that each
//! service flattens into its own configuration (`#[command(flatten)]`):
//! [`DatabaseArgs`] (--database-url), [`HttpArgs`] (--http-header-timeout,
//! --max-connections) and [`TlsArgs`] (--ssl-root-cert, --ssl-accept-invalid-certs).
//!
//! A flag's name, type, value parser, range and value name are defined here once.
//! What a service says or sets differently, its environment variables
//! (`USAGE_EXPORTER_…`, `USAGE_COLLECTOR_…`), the header-timeout default and the help
//! text, which names the service and what it serves, comes from the service's
//! [`ServiceFlags`].

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::server::{Limits, SHUTDOWN_GRACE};

/// The help text of a flag: the summary `-h` shows, and the paragraph `--help` adds.
#[derive(Debug, Clone, Copy)]
pub struct Help {
    /// One line, without a final period.
    pub summary: &'static str,
    /// The paragraph below the summary in `--help`.
    pub details: &'static str,
}

impl Help {
    /// The `--help` text: the summary as a sentence, a blank line, the details (what
    /// clap makes of a doc comment of two paragraphs).
    pub fn long(&self) -> String {
        format!("{}.\n\n{}", self.summary, self.details)
    }
}

/// What a service sets or words its own way in the shared flags.
pub trait ServiceFlags: Clone + fmt::Debug + Send + Sync + 'static {
    /// --database-url (environment variable DATABASE_URL in every service).
    const DATABASE_URL: Help;
    /// --http-header-timeout: environment variable, default, help.
    const HTTP_HEADER_TIMEOUT_ENV: &'static str;
    const HTTP_HEADER_TIMEOUT_DEFAULT: &'static str;
    const HTTP_HEADER_TIMEOUT: Help;
    /// --max-connections: environment variable, help.
    const MAX_CONNECTIONS_ENV: &'static str;
    const MAX_CONNECTIONS: Help;
    /// --ssl-root-cert: environment variable, help.
    const SSL_ROOT_CERT_ENV: &'static str;
    const SSL_ROOT_CERT: Help;
    /// --ssl-accept-invalid-certs: environment variable.
    const SSL_ACCEPT_INVALID_CERTS_ENV: &'static str;
}

/// Where the database is: --database-url (see [`crate::db::parse_target`]).
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs<S: ServiceFlags> {
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL",
        help = S::DATABASE_URL.summary,
        long_help = S::DATABASE_URL.long()
    )]
    pub database_url: String,

    #[arg(skip)]
    service: PhantomData<S>,
}

/// The HTTP server's connection limits: --http-header-timeout, --max-connections.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs<S: ServiceFlags> {
    #[arg(
        long,
        env = S::HTTP_HEADER_TIMEOUT_ENV,
        hide_env_values = true,
        default_value = S::HTTP_HEADER_TIMEOUT_DEFAULT,
        value_parser = parse_positive_duration,
        value_name = "DURATION",
        help = S::HTTP_HEADER_TIMEOUT.summary,
        long_help = S::HTTP_HEADER_TIMEOUT.long()
    )]
    pub http_header_timeout: Duration,

    #[arg(
        long,
        env = S::MAX_CONNECTIONS_ENV,
        hide_env_values = true,
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
        value_name = "N",
        help = S::MAX_CONNECTIONS.summary,
        long_help = S::MAX_CONNECTIONS.long()
    )]
    pub max_connections: u32,

    #[arg(skip)]
    service: PhantomData<S>,
}

impl<S: ServiceFlags> HttpArgs<S> {
    /// The server's limits, shutting down within [`SHUTDOWN_GRACE`].
    pub fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: self.http_header_timeout,
            max_connections: self.max_connections,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// Trust for the database's TLS: --ssl-root-cert, --ssl-accept-invalid-certs (see
/// [`crate::tls`]).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs<S: ServiceFlags> {
    #[arg(
        long,
        env = S::SSL_ROOT_CERT_ENV,
        hide_env_values = true,
        value_name = "FILE",
        help = S::SSL_ROOT_CERT.summary,
        long_help = S::SSL_ROOT_CERT.long()
    )]
    pub ssl_root_cert: Option<PathBuf>,

    /// INSECURE: use TLS but accept any server certificate.
    ///
    /// libpq's `sslmode=require` behaviour: encrypts, but does not protect
    /// against an active man in the middle. Prefer --ssl-root-cert. As an
    /// environment variable, any value but 0, false, no, off or empty turns
    /// it on.
    #[arg(long, env = S::SSL_ACCEPT_INVALID_CERTS_ENV, hide_env_values = true)]
    pub ssl_accept_invalid_certs: bool,

    #[arg(skip)]
    service: PhantomData<S>,
}

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

/// Checks the documentation rule of the services' flags, for their tests: every flag
/// (but --help and --version) has a one-line summary, a long help that says more, and
/// an environment variable, DATABASE_URL or one named `env_prefix…`. Panics naming the
/// flag that breaks it; returns how many flags there are.
pub fn assert_documented(cmd: &clap::Command, env_prefix: &str) -> usize {
    let mut seen = 0;
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        seen += 1;
        let short = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let long = arg.get_long_help().map(ToString::to_string).unwrap_or_default();
        assert!(
            !short.is_empty() && !short.contains('\n'),
            "{id}: summary {short:?}"
        );
        assert!(long.len() > short.len() + 40, "{id}: long help {long:?}");
        let env = arg.get_env().expect("environment variable").to_string_lossy();
        assert!(
            env == "DATABASE_URL" || env.starts_with(env_prefix),
            "{id}: {env}"
        );
    }
    seen
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Clone)]
    struct TestFlags;

    const HELP: Help = Help {
        summary: "Summary",
        details: "Details.",
    };

    impl ServiceFlags for TestFlags {
        const DATABASE_URL: Help = HELP;
        const HTTP_HEADER_TIMEOUT_ENV: &'static str = "TEST_HTTP_HEADER_TIMEOUT";
        const HTTP_HEADER_TIMEOUT_DEFAULT: &'static str = "7s";
        const HTTP_HEADER_TIMEOUT: Help = HELP;
        const MAX_CONNECTIONS_ENV: &'static str = "TEST_MAX_CONNECTIONS";
        const MAX_CONNECTIONS: Help = HELP;
        const SSL_ROOT_CERT_ENV: &'static str = "TEST_SSL_ROOT_CERT";
        const SSL_ROOT_CERT: Help = HELP;
        const SSL_ACCEPT_INVALID_CERTS_ENV: &'static str = "TEST_SSL_ACCEPT_INVALID_CERTS";
    }

    #[derive(Debug, Parser)]
    struct Config {
        #[command(flatten)]
        database: DatabaseArgs<TestFlags>,
        #[command(flatten)]
        http: HttpArgs<TestFlags>,
        #[command(flatten)]
        tls: TlsArgs<TestFlags>,
    }

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
        assert_eq!(parse_positive_duration("5ms").unwrap(), Duration::from_millis(5));
        assert!(parse_positive_duration("0").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn the_service_sets_environment_variables_defaults_and_help() {
        let cmd = Config::command();
        let arg = |id: &str| cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
        let env = |id: &str| arg(id).get_env().unwrap().to_str().unwrap().to_string();
        assert_eq!(env("database_url"), "DATABASE_URL");
        assert_eq!(env("http_header_timeout"), "TEST_HTTP_HEADER_TIMEOUT");
        assert_eq!(env("max_connections"), "TEST_MAX_CONNECTIONS");
        assert_eq!(env("ssl_root_cert"), "TEST_SSL_ROOT_CERT");
        assert_eq!(env("ssl_accept_invalid_certs"), "TEST_SSL_ACCEPT_INVALID_CERTS");
        let db = arg("database_url");
        assert_eq!(db.get_help().unwrap().to_string(), "Summary");
        assert_eq!(db.get_long_help().unwrap().to_string(), "Summary.\n\nDetails.");

        let c = Config::try_parse_from(["x", "--database-url", "postgres://u@h/db"]).unwrap();
        assert_eq!(c.database.database_url, "postgres://u@h/db");
        assert_eq!(c.http.http_header_timeout, Duration::from_secs(7));
        assert_eq!(c.http.max_connections, 64);
        assert_eq!(c.tls.ssl_root_cert, None);
        assert!(!c.tls.ssl_accept_invalid_certs);
        let limits = c.http.limits();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(7));
        assert_eq!(limits.max_connections, 64);
        assert_eq!(limits.shutdown_grace, SHUTDOWN_GRACE);
    }

    #[test]
    fn flags() {
        let c = Config::try_parse_from([
            "x",
            "--database-url=postgres://u@h/db",
            "--http-header-timeout=750ms",
            "--max-connections=3",
            "--ssl-root-cert=/etc/ca.pem",
            "--ssl-accept-invalid-certs",
        ])
        .unwrap();
        assert_eq!(c.http.http_header_timeout, Duration::from_millis(750));
        assert_eq!(c.http.max_connections, 3);
        assert_eq!(c.tls.ssl_root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(c.tls.ssl_accept_invalid_certs);
        for bad in [
            "--http-header-timeout=0",
            "--max-connections=0",
            "--max-connections=10001",
        ] {
            assert!(
                Config::try_parse_from(["x", "--database-url=x", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
