//! The counting trigger: folds every statement's rows on the usage table into
//! the bookkeeping tables of sql/counters.sql (the exporter's lifetime
//! counters, the per-day totals, the per-day users and the active-user
//! sketches) in the statement's own transaction, and adds the statement's
//! new searched texts to `search_texts` (src/search_texts.rs). What each
//! table holds, the sharding by backend and why writers never wait for each
//! other are told there.
//!
//! It reads the statement's transition table directly, groups its rows here
//! and writes them through plans kept per backend: one statement for a
//! statement whose rows make one group in each table (every one-row
//! insert), else one upsert of all groups per table. Written in SQL (one
//! grouping statement per table), starting up those statements' aggregates
//! cost most of a single-row INSERT; the groups are the same.

use crate::abort_guard;
use crate::active_users;
use crate::kept_plans::{self, KeptPlan};
use crate::search_texts;
use crate::usage::{restoring, UsageColumns};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, PgMemoryContexts, PgTupleDesc};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The grouping maps' hasher: fast on short keys, and seeded per process,
/// since the texts hashed come from writers.
type Hasher = foldhash::fast::RandomState;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Rows older than this never reach an active-user window.
const ACTIVE_USERS_HORIZON: i64 = 32 * MICROS_PER_DAY;

/// One transition-table row, deformed into its slot.
struct SlotRow {
    slot: *mut pg_sys::TupleTableSlot,
    columns: UsageColumns,
}

impl SlotRow {
    fn datum(&self, column: Option<usize>) -> Option<pg_sys::Datum> {
        let i = column?;
        unsafe {
            if *(*self.slot).tts_isnull.add(i) {
                None
            } else {
                Some(*(*self.slot).tts_values.add(i))
            }
        }
    }

    fn get<T: FromDatum>(&self, column: Option<usize>) -> Option<T> {
        self.datum(column)
            .and_then(|d| unsafe { T::from_datum(d, false) })
    }

    fn int(&self, column: Option<usize>) -> Option<i64> {
        self.datum(column).map(|d| i64::from(d.value() as i32))
    }

    /// A text column, borrowed from the row (or from its detoasted copy in
    /// the row's memory context).
    fn text(&self, column: Option<usize>) -> Option<&str> {
        self.datum(column)
            .and_then(|d| unsafe { <&str>::from_datum(d, false) })
    }

    /// `lower(requested_model)` as SQL computes it (the database's collation).
    fn lower_requested_model(&self) -> Option<String> {
        self.datum(self.columns.requested_model).and_then(|d| unsafe {
            let lowered = pg_sys::OidFunctionCall1Coll(
                pg_sys::Oid::from(pg_sys::F_LOWER_TEXT),
                pg_sys::DEFAULT_COLLATION_OID,
                d,
            );
            String::from_datum(lowered, false)
        })
    }
}

/// The UTC day of a timestamp (days since 2000-01-01, infinities kept), as
/// `("timestamp" AT TIME ZONE 'UTC')::date`.
fn utc_day(at: i64) -> i32 {
    match at {
        i64::MAX => i32::MAX,
        i64::MIN => i32::MIN,
        at => at.div_euclid(MICROS_PER_DAY) as i32,
    }
}

fn timestamptz(at: i64) -> TimestampWithTimeZone {
    unsafe { TimestampWithTimeZone::from_datum(pg_sys::Datum::from(at), false) }.expect("not null")
}

fn zero() -> AnyNumeric {
    AnyNumeric::from(0)
}

/// Response-time bucket bounds in milliseconds, read once per backend from
/// their one definition (metrics_response_time_bucket_bounds() in SQL).
fn bucket_bounds_ms() -> [i64; 10] {
    thread_local! {
        static BOUNDS: RefCell<Option<[i64; 10]>> = const { RefCell::new(None) };
    }
    BOUNDS.with(|b| {
        *b.borrow_mut().get_or_insert_with(|| {
            let bounds: Vec<i64> = Spi::get_one(
                "SELECT array_agg(usage_analytics._bucket_bound_ms(i)::bigint ORDER BY i) \
                   FROM generate_series(1, 10) AS i",
            )
            .ok()
            .flatten()
            .unwrap_or_else(|| error!("metrics_response_time_bucket_bounds() must give 10 bounds"));
            bounds
                .try_into()
                .unwrap_or_else(|_| error!("metrics_response_time_bucket_bounds() must give 10 bounds"))
        })
    })
}

/// Exporter labels: (provider, framework, agent_id, model, message_type).
type Labels = [String; 5];

struct CounterSums {
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: AnyNumeric,
    unpriced: i64,
    rt_count: i64,
    rt_sum: i64,
    rt_buckets: [i64; 10],
    cache_read: i64,
    cache_write: i64,
    reasoning: i64,
}

impl CounterSums {
    fn new() -> Self {
        CounterSums {
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: zero(),
            unpriced: 0,
            rt_count: 0,
            rt_sum: 0,
            rt_buckets: [0; 10],
            cache_read: 0,
            cache_write: 0,
            reasoning: 0,
        }
    }

    fn merge(&mut self, o: CounterSums) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost_usd += o.cost_usd;
        self.unpriced += o.unpriced;
        self.rt_count += o.rt_count;
        self.rt_sum += o.rt_sum;
        for (b, ob) in self.rt_buckets.iter_mut().zip(o.rt_buckets) {
            *b += ob;
        }
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
        self.reasoning += o.reasoning;
    }
}

struct DayTotals {
    requests: i64,
    successful: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: AnyNumeric,
    unpriced: i64,
    rt_sum: i64,
    rt_count: i64,
    cache_read: i64,
    cache_write: i64,
    reasoning: i64,
    cache_savings_usd: AnyNumeric,
    priced_tokens: i64,
}

struct DayUser {
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: AnyNumeric,
    first_seen: i64,
    last_seen: i64,
}

/// Each distinct label text of a statement, once: the groups are keyed by
/// these ids, so a row allocates only for a text the statement has not seen.
#[derive(Default)]
struct Interned {
    ids: HashMap<Box<str>, u32, Hasher>,
    texts: Vec<Box<str>>,
}

impl Interned {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    fn text(&self, id: u32) -> String {
        self.texts[id as usize].to_string()
    }
}

/// (day, agent_id, framework, provider), texts interned.
type TotalsKey = (i32, u32, Option<u32>, Option<u32>);

/// Everything one statement adds to (or, for deleted rows, takes from) the
/// bookkeeping.
#[derive(Default)]
struct Statement {
    interned: Interned,
    /// Exporter labels interned, and success.
    counters: HashMap<([u32; 5], bool), CounterSums, Hasher>,
    totals: HashMap<TotalsKey, DayTotals, Hasher>,
    users: HashMap<(i32, [u8; 16]), DayUser, Hasher>,
    active: Vec<([u8; 16], i64)>,
    /// The searched texts (`_search_text()`) of the rows written, each once.
    texts: BTreeSet<String>,
    /// The row's searched text is built here (one buffer per statement).
    text: String,
}

impl Statement {
    fn add(&mut self, row: &SlotRow, sign: i64, inserted: bool, bounds: &[i64; 10], active_after: i64) {
        let c = &row.columns;
        let provider = row.text(c.provider);
        let framework = row.text(c.framework);
        let agent_id = row.text(c.agent_id).unwrap_or_default();
        let success = row.datum(c.success).is_some_and(|d| d.value() != 0);
        let input_tokens = row.int(c.input_tokens).unwrap_or(0);
        let output_tokens = row.int(c.output_tokens).unwrap_or(0);
        let cost: Option<AnyNumeric> = row.get(c.cost_usd);
        let response_time = row.int(c.response_time_ms);
        let cache_read = row.int(c.cache_read_tokens).unwrap_or(0);
        let cache_write =
            row.int(c.cache_write_tokens).unwrap_or(0) + row.int(c.cache_write_1h_tokens).unwrap_or(0);
        let reasoning = row.int(c.reasoning_tokens).unwrap_or(0);
        let at = row.datum(c.timestamp).map_or(0, |d| d.value() as i64);
        let user: [u8; 16] = row
            .get::<pgrx::Uuid>(c.user_id)
            .map_or([0; 16], |u| *u.as_bytes());
        let day = utc_day(at);

        if sign > 0 {
            // As _search_text() joins them.
            self.text.clear();
            let _ = write!(
                self.text,
                "{agent_id} {} {} {}",
                row.text(c.agent_name).unwrap_or_default(),
                row.text(c.model).unwrap_or_default(),
                row.text(c.error_message).unwrap_or_default()
            );
            if !self.texts.contains(self.text.as_str()) && !search_texts::is_known(&self.text) {
                self.texts.insert(self.text.clone());
            }
        }

        let agent_id = self.interned.id(agent_id);
        let provider = provider.map(|p| self.interned.id(p));
        let framework = framework.map(|f| self.interned.id(f));
        if inserted {
            let model = match row.text(c.model) {
                Some(model) => self.interned.id(model),
                None => {
                    let lowered = row.lower_requested_model();
                    self.interned.id(lowered.as_deref().unwrap_or_default())
                }
            };
            let none = self.interned.id("");
            let labels = [
                provider.unwrap_or(none),
                framework.unwrap_or(none),
                agent_id,
                model,
                self.interned.id(row.text(c.message_type).unwrap_or_default()),
            ];
            let n = self
                .counters
                .entry((labels, success))
                .or_insert_with(CounterSums::new);
            n.requests += 1;
            n.input_tokens += input_tokens;
            n.output_tokens += output_tokens;
            match &cost {
                Some(cost) => n.cost_usd += cost.clone(),
                None => n.unpriced += 1,
            }
            if let Some(ms) = response_time {
                n.rt_count += 1;
                n.rt_sum += ms;
                for (bucket, bound) in n.rt_buckets.iter_mut().zip(bounds) {
                    *bucket += i64::from(ms <= *bound);
                }
            }
            n.cache_read += cache_read;
            n.cache_write += cache_write;
            n.reasoning += reasoning;
            if at > active_after {
                self.active.push((user, at));
            }
        }

        let t = self
            .totals
            .entry((day, agent_id, framework, provider))
            .or_insert_with(|| DayTotals {
                requests: 0,
                successful: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: zero(),
                unpriced: 0,
                rt_sum: 0,
                rt_count: 0,
                cache_read: 0,
                cache_write: 0,
                reasoning: 0,
                cache_savings_usd: zero(),
                priced_tokens: 0,
            });
        t.requests += 1;
        t.successful += i64::from(success);
        t.input_tokens += input_tokens;
        t.output_tokens += output_tokens;
        match &cost {
            Some(cost) => {
                t.cost_usd += cost.clone();
                t.priced_tokens += input_tokens + output_tokens;
            }
            None => t.unpriced += 1,
        }
        if let Some(ms) = response_time {
            t.rt_sum += ms;
            t.rt_count += 1;
        }
        t.cache_read += cache_read;
        t.cache_write += cache_write;
        t.reasoning += reasoning;
        if let Some(savings) = row.get::<AnyNumeric>(c.cache_savings_usd) {
            t.cache_savings_usd += savings;
        }

        let u = self.users.entry((day, user)).or_insert_with(|| DayUser {
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: zero(),
            first_seen: at,
            last_seen: at,
        });
        u.requests += 1;
        u.input_tokens += input_tokens;
        u.output_tokens += output_tokens;
        if let Some(cost) = cost {
            u.cost_usd += cost;
        }
        u.first_seen = u.first_seen.min(at);
        u.last_seen = u.last_seen.max(at);
    }
}

/// Hands every row of a transition table to `each`.
unsafe fn read_transition_table(
    table: *mut pg_sys::Tuplestorestate,
    relation: pg_sys::Relation,
    mut each: impl FnMut(&SlotRow),
) {
    let tupdesc = (*relation).rd_att;
    let columns = UsageColumns::of(&PgTupleDesc::from_pg_unchecked(tupdesc));
    // Every column `Statement::add` reads.
    let read = [
        ("provider", columns.provider),
        ("framework", columns.framework),
        ("agent_id", columns.agent_id),
        ("agent_name", columns.agent_name),
        ("error_message", columns.error_message),
        ("model", columns.model),
        ("requested_model", columns.requested_model),
        ("message_type", columns.message_type),
        ("success", columns.success),
        ("input_tokens", columns.input_tokens),
        ("output_tokens", columns.output_tokens),
        ("cost_usd", columns.cost_usd),
        ("response_time_ms", columns.response_time_ms),
        ("cache_read_tokens", columns.cache_read_tokens),
        ("cache_write_tokens", columns.cache_write_tokens),
        ("cache_write_1h_tokens", columns.cache_write_1h_tokens),
        ("reasoning_tokens", columns.reasoning_tokens),
        ("cache_savings_usd", columns.cache_savings_usd),
        ("timestamp", columns.timestamp),
        ("user_id", columns.user_id),
    ];
    if let Some((name, _)) = read.iter().find(|(_, position)| position.is_none()) {
        error!("agent_usage_detailed has no column {name}");
    }
    let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
    // A read pointer of our own, as a scan of the table by name takes one:
    // other triggers of the statement read the same store.
    let reader = pg_sys::tuplestore_alloc_read_pointer(table, pg_sys::EXEC_FLAG_REWIND as i32);
    pg_sys::tuplestore_select_read_pointer(table, reader);
    pg_sys::tuplestore_rescan(table);
    let row = SlotRow { slot, columns };
    // Each row's work runs in a context reset after it: detoasted values and
    // numeric results are copied into Rust as they are read, so what
    // PostgreSQL allocates for one row would otherwise pile up over a COPY.
    let mut per_row = PgMemoryContexts::new("usage bookkeeping row");
    while pg_sys::tuplestore_gettupleslot(table, true, false, slot) {
        pg_sys::slot_getallattrs(slot);
        per_row.switch_to(|_| each(&row));
        per_row.reset();
    }
    pg_sys::ExecDropSingleTupleTableSlot(slot);
}

thread_local! {
    /// Label tuples this backend has seen admitted: admission is permanent,
    /// so each is looked up once per backend (forgotten if the transaction
    /// that saw it aborts, since it may have admitted it).
    static KNOWN_SERIES: RefCell<HashSet<Labels>> = RefCell::new(HashSet::new());
    static KNOWN_SERIES_GUARD: Cell<u32> = const { Cell::new(0) };
    static SERIES_KNOWN: KeptPlan = const { RefCell::new(None) };
    static SERIES_ADMIT: KeptPlan = const { RefCell::new(None) };
    static ADD_COUNTERS: KeptPlan = const { RefCell::new(None) };
    static ADD_TOTALS: KeptPlan = const { RefCell::new(None) };
    static ADD_USERS: KeptPlan = const { RefCell::new(None) };
    static ADD_ALL: KeptPlan = const { RefCell::new(None) };
    static ADD_DAY: KeptPlan = const { RefCell::new(None) };
}

const SERIES_KNOWN_SQL: &str = "SELECT EXISTS (SELECT 1 FROM usage_analytics.usage_series s \
     WHERE (s.provider, s.framework, s.agent_id, s.model, s.message_type) = ($1, $2, $3, $4, $5))";
/// Admitted while the cap leaves room. Writers admitting at the same moment
/// each see the same room: the overshoot is bounded by that room times their
/// number.
const SERIES_ADMIT_SQL: &str = "INSERT INTO usage_analytics.usage_series \
         (provider, framework, agent_id, model, message_type, shard) \
     SELECT $1, $2, $3, $4, $5, pg_backend_pid() \
      WHERE (SELECT count(*) FROM usage_analytics.usage_series) < $6 \
     ON CONFLICT DO NOTHING RETURNING true";
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

fn label_args(labels: &Labels) -> Vec<DatumWithOid<'static>> {
    labels.iter().map(|l| l.clone().into()).collect()
}

/// The label tuple each group is counted under: its own once admitted as an
/// exporter series, else 'other' (see usage_series in counters.sql).
fn admitted(labels: Labels) -> Labels {
    if KNOWN_SERIES.with(|k| k.borrow().contains(&labels)) {
        return labels;
    }
    abort_guard::forget_on_abort(&KNOWN_SERIES_GUARD, || {
        KNOWN_SERIES.with(|k| k.borrow_mut().clear())
    });
    let known = kept_plans::run(&SERIES_KNOWN, SERIES_KNOWN_SQL, &label_args(&labels), |rows| {
        rows.first().get_one::<bool>()
    })
    .unwrap_or_else(|e| error!("usage bookkeeping: {e}"))
    .unwrap_or(false);
    if known {
        KNOWN_SERIES.with(|k| k.borrow_mut().insert(labels.clone()));
        return labels;
    }
    let mut args = label_args(&labels);
    args.push(i64::from(crate::EXPORTER_MAX_SERIES.get()).into());
    let admitted = kept_plans::run(
        &SERIES_ADMIT,
        SERIES_ADMIT_SQL,
        &args,
        |rows| Ok(!rows.is_empty()),
    )
    .unwrap_or_else(|e| error!("usage bookkeeping: {e}"));
    if admitted {
        KNOWN_SERIES.with(|k| k.borrow_mut().insert(labels.clone()));
        labels
    } else {
        ["other", "other", "other", "other", "other"].map(String::from)
    }
}

fn signed(n: AnyNumeric, sign: i64) -> AnyNumeric {
    if sign < 0 {
        -n
    } else {
        n
    }
}

/// The statement trigger on `agent_usage_detailed`. TG_ARGV[0] = 1 adds the
/// rows of the transition table (inserts, the new rows of updates), -1
/// subtracts them (deletes, the old rows of updates); TG_ARGV[1] = 1 counts
/// them as changed. Inserts also feed the exporter's lifetime counters and
/// the active-user sketches (the counters never go down).
#[pg_trigger]
fn _count_usage<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    if restoring() {
        return Ok(None);
    }
    let args = trigger.extra_args()?;
    let sign: i64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    let changed: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let data = trigger.trigger_data();
    let table = if sign > 0 {
        data.tg_newtable
    } else {
        data.tg_oldtable
    };
    if table.is_null() {
        error!("_count_usage: the trigger must name its transition table");
    }
    let inserted = matches!(trigger.op()?, PgTriggerOperation::Insert);
    let bounds = if inserted { bucket_bounds_ms() } else { [0; 10] };
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let mut statement = Statement::default();
    unsafe {
        read_transition_table(table, data.tg_relation, |row| {
            statement.add(row, sign, inserted, &bounds, now - ACTIVE_USERS_HORIZON)
        });
    }

    if statement.totals.is_empty() {
        return Ok(None); // a statement that wrote no rows
    }
    let interned = std::mem::take(&mut statement.interned);
    let text = |id: u32| interned.text(id);

    // Exporter counters, per admitted label tuple.
    let mut counters: BTreeMap<(Labels, bool), CounterSums> = BTreeMap::new();
    for ((labels, success), sums) in std::mem::take(&mut statement.counters) {
        counters
            .entry((admitted(labels.map(text)), success))
            .or_insert_with(CounterSums::new)
            .merge(sums);
    }
    if !statement.active.is_empty() {
        active_users::note(&statement.active);
    }
    if !statement.texts.is_empty() {
        search_texts::note(std::mem::take(&mut statement.texts));
    }
    let counters: Vec<Vec<DatumWithOid>> = counters
        .into_iter()
        .map(|(key, c)| counter_args(key, c))
        .collect();
    // Rows in key order, as every writer writes them.
    let totals: BTreeMap<_, _> = statement
        .totals
        .into_iter()
        .map(|((day, agent_id, framework, provider), t)| {
            ((day, text(agent_id), framework.map(text), provider.map(text)), t)
        })
        .collect();
    let totals: Vec<Vec<DatumWithOid>> = totals
        .into_iter()
        .map(|(key, t)| totals_args(key, t, sign))
        .collect();
    let users: BTreeMap<_, _> = statement.users.into_iter().collect();
    let users: Vec<Vec<DatumWithOid>> = users
        .into_iter()
        .map(|(key, u)| user_args(key, u, sign, changed))
        .collect();
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
    Ok(None)
}

fn counter_args((labels, success): (Labels, bool), c: CounterSums) -> Vec<DatumWithOid<'static>> {
    let mut args = label_args(&labels);
    args.push(success.into());
    args.extend([c.requests, c.input_tokens, c.output_tokens].map(DatumWithOid::from));
    args.push(c.cost_usd.into());
    args.extend([c.unpriced, c.rt_count, c.rt_sum].map(DatumWithOid::from));
    args.extend(c.rt_buckets.map(DatumWithOid::from));
    args.extend([c.cache_read, c.cache_write, c.reasoning].map(DatumWithOid::from));
    args
}

fn totals_args(
    (day, agent_id, framework, provider): (i32, String, Option<String>, Option<String>),
    t: DayTotals,
    s: i64,
) -> Vec<DatumWithOid<'static>> {
    vec![
        unsafe { Date::from_pg_epoch_days(day) }.into(),
        agent_id.into(),
        framework.into(),
        provider.into(),
        (s * t.requests).into(),
        (s * t.successful).into(),
        (s * t.input_tokens).into(),
        (s * t.output_tokens).into(),
        signed(t.cost_usd, s).into(),
        (s * t.unpriced).into(),
        (s * t.rt_sum).into(),
        (s * t.rt_count).into(),
        (s * t.cache_read).into(),
        (s * t.cache_write).into(),
        (s * t.reasoning).into(),
        signed(t.cache_savings_usd, s).into(),
        (s * t.priced_tokens).into(),
    ]
}

fn user_args((day, user): (i32, [u8; 16]), u: DayUser, s: i64, changed: i64) -> Vec<DatumWithOid<'static>> {
    vec![
        unsafe { Date::from_pg_epoch_days(day) }.into(),
        pgrx::Uuid::from_bytes(user).into(),
        (s * u.requests).into(),
        (s * u.input_tokens).into(),
        (s * u.output_tokens).into(),
        signed(u.cost_usd, s).into(),
        timestamptz(u.first_seen).into(),
        timestamptz(u.last_seen).into(),
        (changed * u.requests).into(),
    ]
}
