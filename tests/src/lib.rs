//! End-to-end test support: a real PostgreSQL 15 cluster started by the
//! tests themselves (initdb as the postgres user, private port and socket
//! directory, pg_cron preloaded), with the installed extension, and the
//! exporter binary against it.
//!
//! The fixtures live in [`fixtures`], one module per concern; every name is
//! re-exported here, so tests write `use integration_tests::{cluster, ...}`.

pub mod fixtures;

pub use fixtures::cluster::{cluster, Cluster, CRON_DB};
pub use fixtures::collector::{
    collector_binary, gzip, http_post, prepare_collector_db, send_genai_spans, Collector, Posted,
};
pub use fixtures::db::{db_error, scalar, text_rows};
pub use fixtures::exporter::{exporter_binary, Exporter};
pub use fixtures::exposition::{Exposition, Sample};
pub use fixtures::net::{free_port, http_get};
pub use fixtures::pg_config::{extension_dir, pg_bin, pg_sharedir, PG_BIN};
pub use fixtures::sample::{load_sample, USERS};
pub use fixtures::service::Service;
