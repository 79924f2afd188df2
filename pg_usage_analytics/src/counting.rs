//! The counting trigger: folds every statement's rows on the usage table into
//! the bookkeeping tables of sql/counters.sql (the exporter's lifetime
//! counters, the per-day totals, the per-day users and the active-user
//! sketches) in the statement's own transaction, and adds the statement's
//! new searched texts to `search_texts` (src/search_texts.rs). What each
//! table holds, the sharding by backend and why writers never wait for each
//! other are told there.
//!
//! It reads the statement's transition table directly
//! (src/transition_table.rs), groups its rows here, admits their exporter
//! label tuples (src/exporter_series.rs) and writes the groups through plans
//! kept per backend (src/bookkeeping_upserts.rs). Written in SQL (one
//! grouping statement per table), starting up those statements' aggregates
//! cost most of a single-row INSERT; the groups are the same.

use crate::active_users;
use crate::bookkeeping_upserts;
use crate::exporter_series::{admitted, label_args, Labels};
use crate::numerics::{decimal_of, to_numeric};
use crate::search_texts;
use crate::transition_table::{read_transition_table, SlotRow};
use crate::usage::restoring;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::AnyNumeric;
use rust_decimal::Decimal;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use usage_analytics_core::numeric::exact_add;

/// The grouping maps' hasher: fast on short keys, and seeded per process,
/// since the texts hashed come from writers.
type Hasher = foldhash::fast::RandomState;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Rows older than this never reach an active-user window.
const ACTIVE_USERS_HORIZON: i64 = 32 * MICROS_PER_DAY;

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

/// One row's numeric column: a decimal when one holds it, else the datum.
#[derive(Clone, Copy)]
enum Value {
    Decimal(Decimal),
    Datum(pg_sys::Datum),
}

impl Value {
    /// # Safety
    /// A numeric datum, valid while the value is used.
    unsafe fn of(datum: pg_sys::Datum) -> Value {
        match decimal_of(datum) {
            Some(d) => Value::Decimal(d),
            None => Value::Datum(datum),
        }
    }
}

/// An exact sum of numerics: in a decimal while it holds the sum exactly
/// (no numeric function call per row), in a numeric beyond.
#[derive(Default)]
struct Sum {
    decimal: Decimal,
    numeric: Option<AnyNumeric>,
}

impl Sum {
    fn add(&mut self, value: Value) {
        if let Value::Decimal(d) = value {
            if let Some(sum) = exact_add(self.decimal, d) {
                self.decimal = sum;
                return;
            }
        }
        let value = match value {
            Value::Decimal(d) => to_numeric(d),
            Value::Datum(datum) => unsafe { AnyNumeric::from_datum(datum, false) }.expect("not null"),
        };
        self.add_numeric(value);
    }

    fn add_numeric(&mut self, value: AnyNumeric) {
        self.numeric = Some(match self.numeric.take() {
            Some(sum) => sum + value,
            None => value,
        });
    }

    fn merge(&mut self, o: Sum) {
        self.add(Value::Decimal(o.decimal));
        if let Some(numeric) = o.numeric {
            self.add_numeric(numeric);
        }
    }

    /// The sum, at the largest display scale of its terms (as numeric_add
    /// gives it).
    fn total(self) -> AnyNumeric {
        let sum = to_numeric(self.decimal);
        match self.numeric {
            Some(numeric) => sum + numeric,
            None => sum,
        }
    }
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

struct CounterSums {
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: Sum,
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
            cost_usd: Sum::default(),
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
        self.cost_usd.merge(o.cost_usd);
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
    cost_usd: Sum,
    unpriced: i64,
    rt_sum: i64,
    rt_count: i64,
    cache_read: i64,
    cache_write: i64,
    reasoning: i64,
    cache_savings_usd: Sum,
    priced_tokens: i64,
}

struct DayUser {
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: Sum,
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
    /// The parts of the searched texts this statement has seen, interned: a
    /// row's text is built only when its parts are new to the statement.
    seen_texts: HashSet<[u32; 4], Hasher>,
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
        let cost = row.datum(c.cost_usd).map(|d| unsafe { Value::of(d) });
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

        let agent_text = agent_id;
        let agent_id = self.interned.id(agent_id);
        if sign > 0 {
            // NULL parts join as '' in _search_text().
            let [agent_name, model, error_message] =
                [c.agent_name, c.model, c.error_message].map(|column| row.text(column).unwrap_or_default());
            let parts = [
                agent_id,
                self.interned.id(agent_name),
                self.interned.id(model),
                self.interned.id(error_message),
            ];
            if self.seen_texts.insert(parts) {
                // As _search_text() joins them.
                let text = format!("{agent_text}\u{1f}{agent_name}\u{1f}{model}\u{1f}{error_message}");
                if !search_texts::is_known(&text) {
                    self.texts.insert(text);
                }
            }
        }

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
            match cost {
                Some(cost) => n.cost_usd.add(cost),
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
                cost_usd: Sum::default(),
                unpriced: 0,
                rt_sum: 0,
                rt_count: 0,
                cache_read: 0,
                cache_write: 0,
                reasoning: 0,
                cache_savings_usd: Sum::default(),
                priced_tokens: 0,
            });
        t.requests += 1;
        t.successful += i64::from(success);
        t.input_tokens += input_tokens;
        t.output_tokens += output_tokens;
        match cost {
            Some(cost) => {
                t.cost_usd.add(cost);
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
        if let Some(savings) = row.datum(c.cache_savings_usd) {
            t.cache_savings_usd.add(unsafe { Value::of(savings) });
        }

        let u = self.users.entry((day, user)).or_insert_with(|| DayUser {
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: Sum::default(),
            first_seen: at,
            last_seen: at,
        });
        u.requests += 1;
        u.input_tokens += input_tokens;
        u.output_tokens += output_tokens;
        if let Some(cost) = cost {
            u.cost_usd.add(cost);
        }
        u.first_seen = u.first_seen.min(at);
        u.last_seen = u.last_seen.max(at);
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

    // Exporter counters, per admitted label tuple; admitted in key order, so
    // which tuples fit under the series cap does not depend on hashing.
    let mut grouped: Vec<((Labels, bool), CounterSums)> = std::mem::take(&mut statement.counters)
        .into_iter()
        .map(|((labels, success), sums)| ((labels.map(text), success), sums))
        .collect();
    grouped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut counters: BTreeMap<(Labels, bool), CounterSums> = BTreeMap::new();
    for ((labels, success), sums) in grouped {
        counters
            .entry((admitted(labels), success))
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
    bookkeeping_upserts::write(counters, totals, users);
    Ok(None)
}

fn counter_args((labels, success): (Labels, bool), c: CounterSums) -> Vec<DatumWithOid<'static>> {
    let mut args = label_args(&labels);
    args.push(success.into());
    args.extend([c.requests, c.input_tokens, c.output_tokens].map(DatumWithOid::from));
    args.push(c.cost_usd.total().into());
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
        signed(t.cost_usd.total(), s).into(),
        (s * t.unpriced).into(),
        (s * t.rt_sum).into(),
        (s * t.rt_count).into(),
        (s * t.cache_read).into(),
        (s * t.cache_write).into(),
        (s * t.reasoning).into(),
        signed(t.cache_savings_usd.total(), s).into(),
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
        signed(u.cost_usd.total(), s).into(),
        timestamptz(u.first_seen).into(),
        timestamptz(u.last_seen).into(),
        (changed * u.requests).into(),
    ]
}
