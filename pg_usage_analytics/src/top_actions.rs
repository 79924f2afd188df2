//! The aggregate `usage_analytics._top_actions(text)` behind a rollup row's
//! `popular_actions` (`core::top_actions`): rollup_daily then groups a day's
//! rows once, by its own key, instead of once more by action with a ranking
//! pass over the result. Parallel safe, with a combine function and a
//! serialized state, so its scan may use parallel workers.

use pgrx::prelude::*;
use pgrx::{Internal, JsonB, PgMemoryContexts};
use usage_analytics_core::top_actions::{ActionCounts, TOP};

/// The aggregate's memory context: states live there, not in the per-row
/// context the support functions are called in.
fn aggregate_context(fcinfo: pg_sys::FunctionCallInfo, function: &str) -> PgMemoryContexts {
    let mut context = std::ptr::null_mut();
    if unsafe { pg_sys::AggCheckCallContext(fcinfo, &mut context) } == 0 {
        error!("{function} is a support function of usage_analytics._top_actions");
    }
    PgMemoryContexts::For(context)
}

/// A state's counts; a new, empty state allocated in the aggregate's context.
/// (The counts themselves live on Rust's heap, about 300-550 bytes a group,
/// which HashAggregate does not count: a day's hash tables then take up to
/// about 1.5 times the cap rollup_daily sets. Counted in full, SSPACE would
/// make the planner, which takes a day's 20,000 groups for 100,000 without
/// statistics, sort the day or give up its parallel workers: 30-60% slower.)
fn counts<'a>(state: &'a mut Internal, context: &mut PgMemoryContexts) -> &'a mut ActionCounts {
    unsafe { context.switch_to(|_| state.get_or_insert_default::<ActionCounts>()) }
}

#[pg_extern(immutable, parallel_safe)]
fn _top_actions_add(state: Internal, action: Option<&str>, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let mut state = state;
    let mut context = aggregate_context(fcinfo, "_top_actions_add");
    counts(&mut state, &mut context).add(action.unwrap_or("unknown"));
    state
}

#[pg_extern(immutable, parallel_safe)]
fn _top_actions_combine(state: Internal, other: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let mut state = state;
    let mut context = aggregate_context(fcinfo, "_top_actions_combine");
    let merged = counts(&mut state, &mut context);
    if let Some(other) = unsafe { other.get::<ActionCounts>() } {
        merged.merge(other);
    }
    state
}

#[pg_extern(immutable, parallel_safe, strict)]
fn _top_actions_serialize(state: Internal) -> Vec<u8> {
    unsafe { state.get::<ActionCounts>() }
        .map(ActionCounts::to_bytes)
        .unwrap_or_default()
}

/// A worker's partial state, in the per-row context the call runs in: the
/// combine function copies it into the group's state, and it is freed with
/// that context instead of living as long as the aggregate.
#[pg_extern(immutable, parallel_safe, strict)]
fn _top_actions_deserialize(bytes: &[u8], _unused: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    aggregate_context(fcinfo, "_top_actions_deserialize");
    Internal::new(ActionCounts::from_bytes(bytes).unwrap_or_else(|e| error!("_top_actions_deserialize: {e}")))
}

/// The top actions as a JSON object {action: requests}; {} for no rows.
#[pg_extern(immutable, parallel_safe)]
fn _top_actions_final(state: Internal) -> JsonB {
    let top = unsafe { state.get::<ActionCounts>() }
        .map(|c| c.top(TOP))
        .unwrap_or_default();
    JsonB(serde_json::Value::Object(
        top.into_iter()
            .map(|(action, n)| (action.to_owned(), n.into()))
            .collect(),
    ))
}

// Internal: only rollup_daily (SECURITY DEFINER) calls the aggregate.
extension_sql!(
    r#"
CREATE AGGREGATE usage_analytics._top_actions(text) (
    SFUNC = usage_analytics._top_actions_add,
    STYPE = internal,
    -- What a group's state takes in the aggregate's memory context, the
    -- memory HashAggregate counts (its counts are on Rust's heap, see
    -- top_actions.rs). Without it the planner assumes 8 kB a group and sorts
    -- the day instead of hashing it (spilling to disk at a million rows).
    SSPACE = 160,
    COMBINEFUNC = usage_analytics._top_actions_combine,
    SERIALFUNC = usage_analytics._top_actions_serialize,
    DESERIALFUNC = usage_analytics._top_actions_deserialize,
    FINALFUNC = usage_analytics._top_actions_final,
    PARALLEL = SAFE
);
REVOKE ALL ON FUNCTION usage_analytics._top_actions(text), usage_analytics._top_actions_add,
    usage_analytics._top_actions_combine, usage_analytics._top_actions_serialize,
    usage_analytics._top_actions_deserialize, usage_analytics._top_actions_final FROM PUBLIC;
"#,
    name = "top_actions",
    requires = [
        "roles",
        _top_actions_add,
        _top_actions_combine,
        _top_actions_serialize,
        _top_actions_deserialize,
        _top_actions_final
    ]
);
