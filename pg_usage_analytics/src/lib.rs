//! pg_usage_analytics: AI/LLM usage and cost analytics inside PostgreSQL.
//!
//! Hand-written SQL lives in `../sql/*.sql`, one concern per file; the pure
//! logic (model resolution and exact pricing, the filter parser, CSV
//! writing, input validation, distinct-count sketches) is the
//! `usage-analytics-core` crate; the modules here connect it to Postgres:
//!  * `usage`: the pricing trigger every insert path goes through, and
//!    `track_detailed_usage`;
//!  * `price_cache`: the per-backend price book, `resolve_model`, `calculate_cost`;
//!  * `filters`: the SQL accessors of the filter parser;
//!  * `csv_export`: `export_usage_csv`;
//!  * `counting`: the counting trigger, the usage table's bookkeeping;
//!  * `search_texts`: which searched texts the dictionary holds, per backend;
//!  * `invalidation`: the one relcache callback that keeps those caches true;
//!  * `active_users`: active-user sketches for the exporter;
//!  * `budget_cache`: whether any budget exists, for the budget triggers;
//!  * `acting_role`: who is calling, seen from inside SECURITY DEFINER functions;
//!  * `json_args`: depth-checked jsonb arguments; `errors`: SQLSTATE 22023.

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

mod abort_guard;
mod acting_role;
mod active_users;
mod bookkeeping_upserts;
mod budget_cache;
mod counting;
mod csv_export;
mod errors;
mod exporter_series;
mod filters;
mod invalidation;
mod json_args;
mod kept_plans;
mod numerics;
mod price_cache;
mod price_catalog;
mod search_texts;
mod text_datums;
mod top_actions;
mod transition_table;
mod usage;

::pgrx::pg_module_magic!();

// The SQL files, one concern each, in dependency order (pgrx orders the
// install script by these `requires`).
extension_sql_file!("../../sql/roles.sql", name = "roles", bootstrap);
extension_sql_file!(
    "../../sql/schema.sql",
    name = "schema",
    requires = ["roles", _announce_change]
);
extension_sql_file!(
    "../../sql/identity.sql",
    name = "identity",
    requires = ["schema", acting_role]
);
extension_sql_file!(
    "../../sql/counters.sql",
    name = "counters",
    requires = [
        "schema",
        price_usage_row,
        invalidate_price_cache,
        _count_usage,
        _hll_union,
        _hll_estimate
    ]
);
extension_sql_file!(
    "../../sql/audit.sql",
    name = "audit",
    requires = ["schema", "identity", "counters"]
);
extension_sql_file!(
    "../../sql/admin.sql",
    name = "admin",
    requires = ["schema", "identity", "audit"]
);
extension_sql_file!(
    "../../sql/partitions.sql",
    name = "partitions",
    requires = ["schema", "counters", "summaries", "admin"]
);
extension_sql_file!(
    "../../sql/records.sql",
    name = "records",
    requires = [
        "schema",
        "counters",
        "identity",
        check_filters,
        _filter_timestamp,
        _filter_text,
        _filter_uuid,
        _filter_success
    ]
);
extension_sql_file!(
    "../../sql/summaries.sql",
    name = "summaries",
    requires = ["records", _filter_rollup_compatible, _filter_dates_only]
);
extension_sql_file!(
    "../../sql/rollups.sql",
    name = "rollups",
    requires = ["schema", "counters", "identity", "partitions", "top_actions"]
);
extension_sql_file!(
    "../../sql/self_test.sql",
    name = "self_test",
    requires = ["admin", "summaries", "rollups", resolve_model, calculate_cost]
);
extension_sql_file!(
    "../../sql/price_catalog.sql",
    name = "price_catalog",
    requires = [
        "admin",
        "audit",
        "rollups",
        "summaries",
        _import_price_catalog,
        _shipped_price_catalog,
        _catalog_cost
    ]
);
extension_sql_file!(
    "../../sql/explorer.sql",
    name = "explorer",
    requires = ["summaries", "identity", "counters"]
);
extension_sql_file!(
    "../../sql/collector.sql",
    name = "collector",
    requires = ["schema", "admin", "audit", "counters"]
);
extension_sql_file!(
    "../../sql/retention.sql",
    name = "retention",
    requires = ["schema", "counters", "identity", "admin", "rollups", "partitions"]
);
extension_sql_file!(
    "../../sql/budgets.sql",
    name = "budgets",
    requires = [
        "summaries",
        "rollups",
        "admin",
        "audit",
        "counters",
        calculate_cost,
        resolve_model,
        check_filters,
        _budgets_exist,
        _announce_change
    ]
);
extension_sql_file!(
    "../../sql/budget_spend.sql",
    name = "budget_spend",
    requires = ["budgets", _budgets_exist, _announce_change]
);
extension_sql_file!(
    "../../sql/budget_reservations.sql",
    name = "budget_reservations",
    requires = ["budgets", "budget_spend", calculate_cost, resolve_model]
);
extension_sql_file!(
    "../../sql/forecasts.sql",
    name = "forecasts",
    requires = ["summaries", check_filters]
);
extension_sql_file!(
    "../../sql/recommendations.sql",
    name = "recommendations",
    requires = [
        "records",
        "summaries",
        "admin",
        "audit",
        calculate_cost,
        resolve_model,
        check_filters
    ]
);
extension_sql_file!(
    "../../sql/row_security.sql",
    name = "row_security",
    requires = [
        "schema",
        "counters",
        "identity",
        "audit",
        "admin",
        "rollups",
        "self_test",
        "price_catalog",
        "budgets",
        "budget_spend",
        "budget_reservations",
        "forecasts",
        "recommendations",
        "retention",
        "collector",
        "explorer"
    ]
);
extension_sql_file!("../../sql/pg_dump.sql", name = "pg_dump", finalize);

/// `usage_analytics.exporter_max_series`: how many label tuples get their own
/// exporter series (see usage_series in sql/counters.sql). Superuser-only,
/// so no writer can lift the bound; counters.sql reads it by name.
pub(crate) static EXPORTER_MAX_SERIES: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// Runs once per backend when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    invalidation::register();
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
