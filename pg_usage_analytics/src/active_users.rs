//! Active users per time bucket as HyperLogLog sketches (`core::hll`), so
//! the exporter's active-user gauges cost the same at a million users as at
//! ten: a window is the union of a few dozen bucket sketches.
//!
//! Buckets of 5 minutes (for the 1h window), 1 hour (24h) and 1 day (30d).
//! Each backend writes only its own shard (its pid) of a bucket, as the
//! counters do, so writers never wait for each other. A backend keeps its
//! shards in memory and writes one back only when a user changed it (a
//! returning user almost never does): the common insert does no extra SQL.
//! The cache is dropped when a transaction aborts or rolls back a savepoint
//! (their rows never count), and reloaded from the table on the next miss.
//! The scheduled maintenance folds exited backends' shards into shard 0 and
//! drops expired buckets.
//!
//! A transaction's own replaced versions cannot be reclaimed before it ends,
//! and a 3 kB sketch leaves no room for a HOT update: in one transaction
//! whose every statement brings a new user, the n-th rewrite of a shard
//! walked the n versions before it, once for ON CONFLICT and once for the
//! unique check of its new index entry. 5,000 such single-row INSERTs in one
//! transaction cost 2.8 ms a row where 500 cost 0.9 ms. Past its first
//! statements, a transaction therefore rewrites a shard at the position
//! (ctid) it last wrote it to, which skips the first walk. The update checks
//! that the row there is visible and still this backend's row of the same
//! bucket (a rolled-back savepoint or a TRUNCATE leaves it not); the upsert
//! runs instead when it is not.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::Uuid;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use usage_analytics_core::hll::Sketch;

use crate::abort_guard;
use crate::kept_plans::{self, KeptPlan};

/// Bucket widths in seconds and how far back each is kept (and counted).
const WIDTHS: [(i64, i64); 3] = [(300, 2 * 3600), (3600, 26 * 3600), (86_400, 32 * 86_400)];
const MICROS: i64 = 1_000_000;

thread_local! {
    /// This backend's shard of each (width, bucket start) it has touched.
    static SHARDS: RefCell<HashMap<(i64, i64), Sketch>> = RefCell::new(HashMap::new());
    /// The transaction whose abort drops SHARDS (registered once per transaction).
    static GUARDED_XID: Cell<u32> = const { Cell::new(0) };
    /// The shard lookup and write-back, planned once per backend: a write-back
    /// runs for most inserts of a user new to a bucket, and planning it each
    /// time cost as much as running it.
    static LOAD_PLAN: KeptPlan = const { RefCell::new(None) };
    static STORE_PLAN: KeptPlan = const { RefCell::new(None) };
    static STORE_ONE_PLAN: KeptPlan = const { RefCell::new(None) };
    static UPDATE_AT_PLAN: KeptPlan = const { RefCell::new(None) };
    /// Where this transaction last wrote each shard (see the top).
    static POSITIONS: RefCell<Positions> = RefCell::new(Positions::default());
}

/// Statements of a transaction that write their shards as usual before
/// positions take over (a position costs a RETURNING, and a statement per
/// shard).
const STATEMENTS_BEFORE_POSITIONS: u32 = 8;

#[derive(Default)]
struct Positions {
    transaction: pg_sys::TransactionId,
    statements: u32,
    shards: HashMap<(i64, i64), pg_sys::ItemPointerData>,
}

const LOAD_SQL: &str = "SELECT sketch FROM usage_analytics.active_user_sketches \
                         WHERE width_seconds = $1 AND bucket_start = $2 AND shard = pg_backend_pid()";
/// Every changed shard of a statement in one write.
const STORE_SQL: &str = "INSERT INTO usage_analytics.active_user_sketches (width_seconds, bucket_start, shard, sketch) \
                          SELECT w, b, pg_backend_pid(), s FROM unnest($1::integer[], $2::timestamptz[], $3::bytea[]) AS u(w, b, s) \
                          ON CONFLICT (width_seconds, bucket_start, shard) DO UPDATE SET sketch = excluded.sketch";

/// One shard, late in a long transaction, returning where it went; and the
/// same written over the version at a remembered position ($4).
const STORE_ONE_SQL: &str = "INSERT INTO usage_analytics.active_user_sketches AS d \
                              (width_seconds, bucket_start, shard, sketch) VALUES ($1, $2, pg_backend_pid(), $3) \
                              ON CONFLICT (width_seconds, bucket_start, shard) DO UPDATE SET sketch = excluded.sketch \
                              RETURNING d.ctid";
const UPDATE_AT_SQL: &str = "UPDATE usage_analytics.active_user_sketches AS d SET sketch = $3 \
                              WHERE d.ctid = $4 AND d.shard = pg_backend_pid() \
                                AND d.width_seconds = $1 AND d.bucket_start = $2 RETURNING d.ctid";

fn parse(bytes: &[u8]) -> Sketch {
    Sketch::from_bytes(bytes).unwrap_or_else(|e| error!("active_user_sketches: damaged sketch: {e}"))
}

fn stored_shard(width: i64, bucket: i64) -> Sketch {
    let at = TimestampWithTimeZone::try_from(bucket).ok();
    kept_plans::run(
        &LOAD_PLAN,
        LOAD_SQL,
        &[(width as i32).into(), at.into()],
        |rows| rows.first().get_one::<Vec<u8>>(),
    )
    .unwrap_or(None)
    .map(|b| parse(&b))
    .unwrap_or_default()
}

fn forget_shards() {
    SHARDS.with(|s| s.borrow_mut().clear());
}

/// Adds the users of an insert statement, (user id, timestamp) each, to this
/// backend's bucket shards (called by the counting trigger, src/counting.rs).
pub fn note(seen: &[([u8; 16], i64)]) {
    abort_guard::forget_on_abort(&GUARDED_XID, forget_shards);
    let late = next_statement();
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let mut changed: Vec<(i64, i64)> = Vec::new();
    SHARDS.with(|shards| {
        let mut shards = shards.borrow_mut();
        for &(user, at) in seen {
            if at > now + 300 * MICROS {
                continue; // dated in the future: in no window yet
            }
            for (width, keep) in WIDTHS {
                if at < now - keep * MICROS {
                    continue;
                }
                let bucket = at.div_euclid(width * MICROS) * width * MICROS;
                let sketch = shards
                    .entry((width, bucket))
                    .or_insert_with(|| stored_shard(width, bucket));
                if sketch.insert(&user) && !changed.contains(&(width, bucket)) {
                    changed.push((width, bucket));
                }
            }
        }
        // Keep the cache bounded: forget buckets past every window.
        if shards.len() > 256 {
            shards.retain(|(width, bucket), _| {
                WIDTHS
                    .iter()
                    .any(|(w, keep)| w == width && *bucket >= now - (keep + w) * MICROS)
            });
        }
    });
    if changed.is_empty() {
        return;
    }
    if late {
        for key in changed {
            let sketch = SHARDS.with(|s| s.borrow()[&key].to_bytes());
            store_at_position(key, sketch);
        }
        return;
    }
    let widths: Vec<i32> = changed.iter().map(|(width, _)| *width as i32).collect();
    let buckets: Vec<Option<TimestampWithTimeZone>> = changed
        .iter()
        .map(|(_, bucket)| TimestampWithTimeZone::try_from(*bucket).ok())
        .collect();
    let sketches: Vec<Vec<u8>> = SHARDS.with(|s| {
        let s = s.borrow();
        changed.iter().map(|key| s[key].to_bytes()).collect()
    });
    kept_plans::run(
        &STORE_PLAN,
        STORE_SQL,
        &[widths.into(), buckets.into(), sketches.into()],
        |_| Ok(()),
    )
    .unwrap_or_else(|e| error!("active_user_sketches: {e}"));
}

/// Counts a statement in its transaction; whether its shards go by position.
fn next_statement() -> bool {
    let transaction = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    POSITIONS.with(|p| {
        let mut p = p.borrow_mut();
        if p.transaction != transaction {
            *p = Positions {
                transaction,
                ..Positions::default()
            };
        }
        p.statements += 1;
        p.statements > STATEMENTS_BEFORE_POSITIONS
    })
}

/// Runs one shard's write; the position it wrote to, if it wrote.
fn write_one(
    plan: &'static std::thread::LocalKey<KeptPlan>,
    sql: &str,
    args: &[DatumWithOid],
) -> Option<pg_sys::ItemPointerData> {
    kept_plans::run(plan, sql, args, |rows| {
        if rows.is_empty() {
            Ok(None)
        } else {
            rows.first().get_one::<pg_sys::ItemPointerData>()
        }
    })
    .unwrap_or_else(|e| error!("active_user_sketches: {e}"))
}

/// Writes one shard at the position this transaction last wrote it to, else
/// by upsert; remembers where it went.
fn store_at_position((width, bucket): (i64, i64), sketch: Vec<u8>) {
    let at = TimestampWithTimeZone::try_from(bucket).ok();
    let mut args: Vec<DatumWithOid> = vec![(width as i32).into(), at.into(), sketch.into()];
    let known = POSITIONS.with(|p| p.borrow().shards.get(&(width, bucket)).copied());
    let mut written = None;
    if let Some(position) = known {
        args.push(position.into());
        written = write_one(&UPDATE_AT_PLAN, UPDATE_AT_SQL, &args);
        args.pop();
    }
    if written.is_none() {
        written = write_one(&STORE_ONE_PLAN, STORE_ONE_SQL, &args);
    }
    if let Some(position) = written {
        POSITIONS.with(|p| p.borrow_mut().shards.insert((width, bucket), position));
    }
}

/// The union of sketches (NULLs ignored); an empty sketch for none.
#[pg_extern(immutable, parallel_safe)]
fn _hll_union(sketches: pgrx::Array<'_, &[u8]>) -> Vec<u8> {
    let mut union = Sketch::new();
    for bytes in sketches.iter().flatten() {
        union.merge(&parse(bytes));
    }
    union.to_bytes()
}

/// A sketch of the given users.
#[pg_extern(immutable, parallel_safe)]
fn _hll_of(users: Vec<Option<Uuid>>) -> Vec<u8> {
    let mut sketch = Sketch::new();
    for user in users.iter().flatten() {
        sketch.insert(user.as_bytes());
    }
    sketch.to_bytes()
}

/// Distinct users in a sketch: exact up to 384, then within about 1.6%.
#[pg_extern(immutable, parallel_safe)]
fn _hll_estimate(sketch: &[u8]) -> i64 {
    parse(sketch).estimate() as i64
}

// Internal: called by the exporter's functions and the upgrade.
extension_sql!(
    "REVOKE ALL ON FUNCTION usage_analytics._hll_union, usage_analytics._hll_of, \
     usage_analytics._hll_estimate FROM PUBLIC;",
    name = "active_users_grants",
    requires = ["roles", _hll_union, _hll_of, _hll_estimate]
);
