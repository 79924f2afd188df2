//! pg_usage_analytics: AI/LLM usage and cost analytics inside PostgreSQL.
//!
//! Hand-written SQL (schema, triggers, queries, rollups, security) lives in
//! `../sql/*.sql`; the pure logic (model resolution and exact pricing, the
//! filter parser, CSV writing, input validation) is the `usage-analytics-core`
//! crate; the modules here connect it to Postgres.

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

mod active_users;
mod identity;
mod json_args;
mod price_cache;
mod queries;
mod usage;

pub use usage_analytics_core::{csv, filters, hll, pricing, validate};

::pgrx::pg_module_magic!();

extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../../sql/counters.sql",
    name = "counters",
    requires = [
        "schema",
        price_usage_row,
        invalidate_price_cache,
        _note_active_users,
        _hll_union,
        _hll_estimate
    ]
);
extension_sql_file!(
    "../../sql/partitions.sql",
    name = "partitions",
    requires = ["schema", "counters"]
);
extension_sql_file!(
    "../../sql/queries.sql",
    name = "queries",
    requires = [
        "schema",
        "counters",
        check_filters,
        _filter_timestamp,
        _filter_text,
        _filter_uuid,
        _filter_success,
        _filter_rollup_compatible
    ]
);
extension_sql_file!(
    "../../sql/rollups.sql",
    name = "rollups",
    requires = ["schema", "counters"]
);
extension_sql_file!("../../sql/security.sql", name = "security", finalize);

/// `usage_analytics.exporter_max_series`: how many label tuples get their own
/// exporter series (see usage_series in sql/counters.sql). Superuser-only,
/// so no writer can lift the bound; counters.sql reads it by name.
static EXPORTER_MAX_SERIES: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// Runs once per backend when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    price_cache::register_invalidation_callback();
    GucRegistry::define_int_guc(
        c"usage_analytics.exporter_max_series",
        c"Label tuples that get their own exporter series.",
        c"Rows of later label tuples are counted under the tuple 'other'.",
        &EXPORTER_MAX_SERIES,
        1,
        10_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Used by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
