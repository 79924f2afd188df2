//! Statements planned once per backend: prepared on first use and kept
//! (SPI_keepplan), so a hot path (every `track_detailed_usage` call, every
//! active-user write-back) does not parse and plan its SQL each time. The
//! plan cache still replans a kept plan when a table it reads changes.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiResult, SpiTupleTable};
use std::cell::RefCell;
use std::thread::LocalKey;

/// One statement's kept plan, held in a `thread_local!`.
pub type KeptPlan = RefCell<Option<OwnedPreparedStatement>>;

/// Runs `sql` through the plan kept in `cell` (prepared on first use for the
/// types of `args`) and hands its result to `read`.
pub fn run<T>(
    cell: &'static LocalKey<KeptPlan>,
    sql: &str,
    args: &[DatumWithOid],
    read: impl FnOnce(SpiTupleTable) -> SpiResult<T>,
) -> SpiResult<T> {
    Spi::connect_mut(|client| {
        cell.with(|cell| {
            let mut plan = cell.borrow_mut();
            if plan.is_none() {
                let oids: Vec<_> = args.iter().map(|a| pg_sys::PgOid::from(a.oid())).collect();
                *plan = Some(client.prepare_mut(sql, &oids)?.keep());
            }
            read(client.update(plan.as_ref().expect("prepared above"), None, args)?)
        })
    })
}
