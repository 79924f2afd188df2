//! Exporter series admission: which label tuples get their own series in the
//! exporter's counters (usage_series in sql/counters.sql, bounded by
//! `usage_analytics.exporter_max_series`); the counting trigger counts every
//! other tuple under 'other'.

use crate::abort_guard;
use crate::kept_plans::{self, KeptPlan};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

/// Exporter labels: (provider, framework, agent_id, model, message_type).
pub(crate) type Labels = [String; 5];

thread_local! {
    /// Label tuples this backend has seen admitted: admission is permanent,
    /// so each is looked up once per backend (forgotten if the transaction
    /// that saw it aborts, since it may have admitted it).
    static KNOWN_SERIES: RefCell<HashSet<Labels>> = RefCell::new(HashSet::new());
    static KNOWN_SERIES_GUARD: Cell<u32> = const { Cell::new(0) };
    static SERIES_KNOWN: KeptPlan = const { RefCell::new(None) };
    static SERIES_ADMIT: KeptPlan = const { RefCell::new(None) };
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

pub(crate) fn label_args(labels: &Labels) -> Vec<DatumWithOid<'static>> {
    labels.iter().map(|l| l.clone().into()).collect()
}

/// The label tuple each group is counted under: its own once admitted as an
/// exporter series, else 'other' (see usage_series in counters.sql).
pub(crate) fn admitted(labels: Labels) -> Labels {
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
