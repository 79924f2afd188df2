//! How the counting trigger writes a statement's groups into the bookkeeping
//! tables of sql/counters.sql: one upsert per table, with the shard = this
//! backend (so writers never wait for each other), through plans kept per
//! backend.

use crate::kept_plans::{self, KeptPlan};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

thread_local! {
    static ADD_COUNTERS: KeptPlan = const { RefCell::new(None) };
    static ADD_TOTALS: KeptPlan = const { RefCell::new(None) };
    static ADD_USERS: KeptPlan = const { RefCell::new(None) };
    static ADD_ALL: KeptPlan = const { RefCell::new(None) };
    static ADD_DAY: KeptPlan = const { RefCell::new(None) };
}

/// One bookkeeping table's upsert: a row is (shard = this backend, then one
/// parameter per column); a row whose key exists adds its columns to the
/// stored ones (or combines them as `combine` says). One row from scalar
/// parameters, or one row per element of array parameters (unnest).
struct Upsert {
    table: &'static str,
    /// The conflict key, shard included.
    key: &'static str,
    /// (column, type), in parameter order.
    columns: &'static [(&'static str, &'static str)],
    /// Columns not added up: (column, expression of `d` and `excluded`).
    combine: &'static [(&'static str, &'static str)],
}

impl Upsert {
    fn statement(&self, rows: &str) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        let sets: Vec<String> = names
            .iter()
            .filter(|name| !self.key.split(", ").any(|k| k == **name))
            .map(|name| match self.combine.iter().find(|(c, _)| c == name) {
                Some((_, expression)) => format!("{name} = {expression}"),
                None => format!("{name} = d.{name} + excluded.{name}"),
            })
            .collect();
        format!(
            "INSERT INTO usage_analytics.{} AS d (shard, {}) {rows} ON CONFLICT ({}) DO UPDATE SET {}",
            self.table,
            names.join(", "),
            self.key,
            sets.join(", ")
        )
    }

    /// One row from parameters $first, $first + 1, ...
    fn one_row(&self, first: usize) -> String {
        let params: Vec<String> = (first..first + self.columns.len())
            .map(|i| format!("${i}"))
            .collect();
        self.statement(&format!("VALUES (pg_backend_pid(), {})", params.join(", ")))
    }

    /// One row per element of the parameter arrays $1, $2, ...
    fn many_rows(&self) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{t}[]", i + 1))
            .collect();
        self.statement(&format!(
            "SELECT pg_backend_pid(), * FROM unnest({})",
            arrays.join(", ")
        ))
    }
}

const COUNTERS: Upsert = Upsert {
    table: "usage_counters",
    key: "provider, framework, agent_id, model, message_type, success, shard",
    columns: &[
        ("provider", "text"),
        ("framework", "text"),
        ("agent_id", "text"),
        ("model", "text"),
        ("message_type", "text"),
        ("success", "boolean"),
        ("requests", "bigint"),
        ("input_tokens", "bigint"),
        ("output_tokens", "bigint"),
        ("cost_usd", "numeric"),
        ("unpriced_requests", "bigint"),
        ("response_time_count", "bigint"),
        ("response_time_sum_ms", "bigint"),
        ("rt_bucket_1", "bigint"),
        ("rt_bucket_2", "bigint"),
        ("rt_bucket_3", "bigint"),
        ("rt_bucket_4", "bigint"),
        ("rt_bucket_5", "bigint"),
        ("rt_bucket_6", "bigint"),
        ("rt_bucket_7", "bigint"),
        ("rt_bucket_8", "bigint"),
        ("rt_bucket_9", "bigint"),
        ("rt_bucket_10", "bigint"),
        ("cache_read_tokens", "bigint"),
        ("cache_write_tokens", "bigint"),
        ("reasoning_tokens", "bigint"),
    ],
    combine: &[],
};

const TOTALS: Upsert = Upsert {
    table: "usage_daily_totals",
    key: "date, agent_id, framework, provider, shard",
    columns: &[
        ("date", "date"),
        ("agent_id", "text"),
        ("framework", "text"),
        ("provider", "text"),
        ("total_requests", "bigint"),
        ("successful_requests", "bigint"),
        ("total_input_tokens", "bigint"),
        ("total_output_tokens", "bigint"),
        ("total_cost_usd", "numeric"),
        ("unpriced_requests", "bigint"),
        ("response_time_sum_ms", "bigint"),
        ("response_time_count", "bigint"),
        ("total_cache_read_tokens", "bigint"),
        ("total_cache_write_tokens", "bigint"),
        ("total_reasoning_tokens", "bigint"),
        ("cache_savings_usd", "numeric"),
        ("priced_tokens", "bigint"),
    ],
    combine: &[],
};

const USERS: Upsert = Upsert {
    table: "usage_daily_user",
    key: "day, user_id, shard",
    columns: &[
        ("day", "date"),
        ("user_id", "uuid"),
        ("requests", "bigint"),
        ("input_tokens", "bigint"),
        ("output_tokens", "bigint"),
        ("cost_usd", "numeric"),
        ("first_seen", "timestamptz"),
        ("last_seen", "timestamptz"),
        ("changes", "bigint"),
    ],
    combine: &[
        ("first_seen", "least(d.first_seen, excluded.first_seen)"),
        ("last_seen", "greatest(d.last_seen, excluded.last_seen)"),
    ],
};

/// A statement's text, built once per backend (only a plan's first use needs it).
fn sql(cell: &'static OnceLock<String>, build: impl FnOnce() -> String) -> &'static str {
    cell.get_or_init(build)
}

/// Rows of parameters as one array parameter per column, for `many_rows`.
fn as_arrays(rows: &[Vec<DatumWithOid>]) -> Vec<DatumWithOid<'static>> {
    (0..rows[0].len())
        .map(|column| unsafe {
            let element = rows[0][column].oid();
            let (mut len, mut by_value, mut align) = (0i16, false, 0 as std::ffi::c_char);
            pg_sys::get_typlenbyvalalign(element, &mut len, &mut by_value, &mut align);
            let cells = rows.iter().map(|row| row[column].datum());
            let mut nulls: Vec<bool> = cells.clone().map(|d| d.is_none()).collect();
            let mut values: Vec<pg_sys::Datum> = cells
                .map(|d| d.map_or(pg_sys::Datum::from(0), |d| d.sans_lifetime()))
                .collect();
            let (mut dims, mut lower_bounds) = ([rows.len() as i32], [1]);
            let array = pg_sys::construct_md_array(
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
                1,
                dims.as_mut_ptr(),
                lower_bounds.as_mut_ptr(),
                element,
                len.into(),
                by_value,
                align,
            );
            DatumWithOid::new(pg_sys::Datum::from(array), pg_sys::get_array_type(element))
        })
        .collect()
}

fn run(plan: &'static std::thread::LocalKey<KeptPlan>, sql: &str, args: &[DatumWithOid]) {
    kept_plans::run(plan, sql, args, |_| Ok(())).unwrap_or_else(|e| error!("usage bookkeeping: {e}"));
}

/// Writes a statement's groups, each a row of parameters in its upsert's
/// column order: one statement for a statement whose rows make one group in
/// each table (every one-row insert), else one upsert of all groups per
/// table.
pub(crate) fn write(
    counters: Vec<Vec<DatumWithOid>>,
    totals: Vec<Vec<DatumWithOid>>,
    users: Vec<Vec<DatumWithOid>>,
) {
    static ALL_SQL: OnceLock<String> = OnceLock::new();
    static DAY_SQL: OnceLock<String> = OnceLock::new();
    static COUNTERS_SQL: OnceLock<String> = OnceLock::new();
    static TOTALS_SQL: OnceLock<String> = OnceLock::new();
    static USERS_SQL: OnceLock<String> = OnceLock::new();
    if counters.len() <= 1 && totals.len() == 1 && users.len() == 1 {
        // One group in each table (every single-row statement): one statement.
        let (plan, sql) = if counters.is_empty() {
            let build = || {
                let totals = TOTALS.one_row(1);
                format!(
                    "WITH totals AS ({totals}) {}",
                    USERS.one_row(1 + TOTALS.columns.len())
                )
            };
            (&ADD_DAY, sql(&DAY_SQL, build))
        } else {
            let build = || {
                let (counters, totals) = (COUNTERS.one_row(1), TOTALS.one_row(1 + COUNTERS.columns.len()));
                let users = USERS.one_row(1 + COUNTERS.columns.len() + TOTALS.columns.len());
                format!("WITH counters AS ({counters}), totals AS ({totals}) {users}")
            };
            (&ADD_ALL, sql(&ALL_SQL, build))
        };
        let args: Vec<DatumWithOid> = counters
            .into_iter()
            .chain(totals)
            .chain(users)
            .flatten()
            .collect();
        run(plan, sql, &args);
    } else {
        // One statement per table, a row per group (a COPY, a batch).
        if !counters.is_empty() {
            run(
                &ADD_COUNTERS,
                sql(&COUNTERS_SQL, || COUNTERS.many_rows()),
                &as_arrays(&counters),
            );
        }
        run(
            &ADD_TOTALS,
            sql(&TOTALS_SQL, || TOTALS.many_rows()),
            &as_arrays(&totals),
        );
        run(
            &ADD_USERS,
            sql(&USERS_SQL, || USERS.many_rows()),
            &as_arrays(&users),
        );
    }
}
