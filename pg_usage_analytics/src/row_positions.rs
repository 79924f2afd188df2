//! Rewriting an active-user sketch where this transaction last wrote it.
//!
//! A backend rewrites its shard of a bucket's sketch (src/active_users.rs)
//! whenever a user changes it. An upsert finds the row through its key, and
//! a transaction's own replaced versions cannot be reclaimed before it ends:
//! in one transaction whose every statement brings a new user, the n-th
//! rewrite walked the n versions before it, once for ON CONFLICT and once
//! for the unique check of the new index entry (a 3 kB sketch leaves no room
//! for a HOT update). 5,000 such single-row INSERTs in one transaction cost
//! 2.8 ms a row where 500 cost 0.9 ms. Past its first statements, a
//! transaction therefore updates the row at the position (ctid) it last
//! wrote it to, which skips the first walk. The update checks that the row
//! there is visible and still this backend's row of the same key (a
//! rolled-back savepoint or a TRUNCATE leaves it not); the upsert runs
//! instead when it is not.

use crate::kept_plans::{self, KeptPlan};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// Statements of a transaction that upsert as usual before positions take
/// over (a position costs a RETURNING, and a statement per sketch).
const STATEMENTS_BEFORE_POSITIONS: u32 = 8;

#[derive(Default)]
struct Positions {
    transaction: pg_sys::TransactionId,
    statements: u32,
    /// Where this transaction last wrote each (table, key).
    rows: HashMap<(&'static str, String), pg_sys::ItemPointerData>,
}

thread_local! {
    static POSITIONS: RefCell<Positions> = RefCell::new(Positions::default());
}

/// Counts a writing statement in its transaction (once per statement, by the
/// counting trigger); whether its sketches go by position.
pub(crate) fn next_statement() -> bool {
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

/// A statement that writes one row and returns its position (`RETURNING
/// ctid`), with the plan it is kept in.
pub(crate) struct PositionedStatement {
    pub plan: &'static std::thread::LocalKey<KeptPlan>,
    pub sql: &'static str,
}

fn run(statement: &PositionedStatement, args: &[DatumWithOid]) -> Option<pg_sys::ItemPointerData> {
    kept_plans::run(statement.plan, statement.sql, args, |rows| {
        if rows.is_empty() {
            Ok(None)
        } else {
            rows.first().get_one::<pg_sys::ItemPointerData>()
        }
    })
    .unwrap_or_else(|e| error!("active_user_sketches: {e}"))
}

/// Writes one row of `table` by `update` at the position this transaction
/// last wrote `key` to (its last parameter is that position), else by
/// `upsert` (the same parameters without it); remembers where it went.
pub(crate) fn write(
    table: &'static str,
    key: String,
    update: &PositionedStatement,
    upsert: &PositionedStatement,
    mut args: Vec<DatumWithOid>,
) {
    let known = POSITIONS.with(|p| p.borrow().rows.get(&(table, key.clone())).copied());
    let mut written = None;
    if let Some(position) = known {
        args.push(position.into());
        written = run(update, &args);
        args.pop();
    }
    if written.is_none() {
        written = run(upsert, &args);
    }
    if let Some(position) = written {
        POSITIONS.with(|p| p.borrow_mut().rows.insert((table, key), position));
    }
}
