//! What the pg_usage_analytics services (usage-analytics-exporter and
//! usage-analytics-collector) share, defined once:
//!
//! * `flags`: the command-line flags both take (--database-url, --ssl-root-cert,
//!   --ssl-accept-invalid-certs, --http-header-timeout, --max-connections) as clap
//!   argument groups each service flattens into its own configuration, with the
//!   environment variables, defaults and help wording each service gives them, and
//!   the duration parser;
//! * `db`: the connection string (URL or key=value, sslmode, sslrootcert), the
//!   bounded connection pool, taking and discarding connections, the health ping,
//!   and the error type of database work;
//! * `tls`: the rustls client configuration (libpq `verify-full` semantics; a CA file
//!   given is the only trust anchor);
//! * `server`: the HTTP server (header-read timeout, connection cap, graceful
//!   shutdown on SIGINT/SIGTERM), the /health answer, and the process around it
//!   (logging to stderr, the runtime, the exit status).

pub mod db;
pub mod flags;
pub mod server;
pub mod tls;
