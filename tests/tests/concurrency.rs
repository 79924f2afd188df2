//! Concurrency (issue: concurrency): writers never deadlock or wait for each
//! other, a price change reaches every session at its next transaction,
//! maintenance never waits on locks it does not control, and moving rows out
//! of the default partition loses none.
//!
//! Every session under test carries `lock_timeout` and/or
//! `statement_timeout`, and sessions that must overlap are interleaved with
//! threads and `std::sync::Barrier`s that every session reaches even after an
//! error, so a regression fails with its SQLSTATE instead of hanging. The
//! timeouts are hang detectors, never performance thresholds.

use integration_tests::{cluster, db_error, load_sample, scalar, text_rows, USERS};
use postgres::Client;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uuid::Uuid;

const AGENT: &str = "concurrency-agent";

/// SQLSTATE and message of an error, named for the failure it stands for.
fn describe(err: &postgres::Error) -> String {
    let (code, message) = db_error(err);
    let what = match code.as_str() {
        "40P01" => "DEADLOCK",
        "40001" => "SERIALIZATION FAILURE",
        "55P03" => "BLOCKED (lock_timeout)",
        "57014" => "BLOCKED OR HUNG (statement_timeout)",
        "42883" => "MISSING FUNCTION OR PROCEDURE",
        "" => "CONNECTION ERROR",
        _ => "ERROR",
    };
    format!("{what} [{code}] {message}")
}

fn pg<T>(result: Result<T, postgres::Error>) -> Result<T, String> {
    result.map_err(|e| describe(&e))
}

/// A connection with `settings` (timeouts) applied.
fn session(db: &str, user: &str, settings: &str) -> Client {
    let mut client = cluster().connect_as(db, user);
    client
        .batch_execute(settings)
        .unwrap_or_else(|e| panic!("{user}: {settings}: {}", describe(&e)));
    client
}

fn count(client: &mut Client, sql: &str) -> i64 {
    scalar(client, sql)
        .unwrap_or_else(|| panic!("no value from {sql}"))
        .parse()
        .unwrap()
}

fn must(client: &mut Client, sql: &str, context: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{context}: {sql}: {}", describe(&e)));
}

/// The exporter's counters and the summary agree with the rows themselves.
fn assert_totals_match_rows(client: &mut Client, context: &str) {
    let rows = text_rows(
        client,
        "SELECT count(*)::text, coalesce(sum(input_tokens), 0)::text, coalesce(sum(output_tokens), 0)::text,
                trim_scale(coalesce(sum(cost_usd), 0))::text
           FROM usage_analytics.agent_usage_detailed",
    );
    let counters = text_rows(
        client,
        "SELECT coalesce(sum(requests), 0)::text, coalesce(sum(input_tokens), 0)::text,
                coalesce(sum(output_tokens), 0)::text, trim_scale(coalesce(sum(cost_usd), 0))::text
           FROM usage_analytics.metrics_usage_counters()",
    );
    assert_eq!(
        counters, rows,
        "{context}: metrics_usage_counters() totals (requests, input, output, cost) differ from the table's"
    );
    let summary = scalar(
        client,
        "SELECT usage_analytics.get_usage_summary() ->> 'total_requests'",
    );
    assert_eq!(
        summary, rows[0][0],
        "{context}: get_usage_summary() total_requests differs from count(*)"
    );
}

#[derive(Clone, Copy, Debug)]
enum Path {
    Track,
    Insert,
}

/// Records one request for `user` with the same labels every time: through
/// track_detailed_usage or a plain INSERT. Returns the row's id.
fn record(client: &mut Client, path: Path, user: &str) -> Result<Uuid, String> {
    let user = Uuid::parse_str(user).unwrap();
    match path {
        Path::Track => pg(client.query_one(
            "SELECT usage_analytics.track_detailed_usage($1, 'concurrency-agent', 'Concurrency agent',
                    'langchain', 'openai', 'chat', 100, 50, 120, true, NULL, '{}', 'gpt-4o')",
            &[&user],
        ))
        .map(|row| row.get(0)),
        Path::Insert => {
            let id = Uuid::new_v4();
            pg(client.execute(
                "INSERT INTO usage_analytics.agent_usage_detailed
                        (id, user_id, agent_id, agent_name, framework, provider, message_type,
                         input_tokens, output_tokens, response_time_ms, success, model)
                 VALUES ($1, $2, 'concurrency-agent', 'Concurrency agent', 'langchain', 'openai', 'chat',
                         100, 50, 120, true, 'gpt-4o')",
                &[&id, &user],
            ))
            .map(|_| id)
        }
    }
}

/// One step of a scripted session; errors already described.
type Phase = Box<dyn FnOnce(&mut Client) -> Result<(), String> + Send>;

/// Runs `phases` in order, waiting at `barrier` between consecutive ones. A
/// failed phase is remembered and the later ones are skipped, but the session
/// still reaches every barrier, so one session's error can never strand the
/// others. Rolls back after a failure.
fn run_phases(
    name: &str,
    mut client: Client,
    barrier: Arc<Barrier>,
    phases: Vec<Phase>,
) -> Result<(), String> {
    let mut failure = None;
    for (i, phase) in phases.into_iter().enumerate() {
        if i > 0 {
            barrier.wait();
        }
        if failure.is_none() {
            if let Err(e) = phase(&mut client) {
                failure = Some(format!("{name}, phase {}: {e}", i + 1));
            }
        }
    }
    match failure {
        None => Ok(()),
        Some(f) => {
            let _ = client.batch_execute("ROLLBACK");
            Err(f)
        }
    }
}

/// Sets the flag when dropped (also while unwinding), so background loops
/// end even when the test fails half-way.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a background loop did.
struct Outcome {
    name: String,
    ok: usize,
    ids: Vec<Uuid>,
    errors: Vec<String>,
    error_count: usize,
}

/// Runs `op` on `client` until `stop`, counting successes in `progress`.
fn spawn_loop<F>(
    name: String,
    mut client: Client,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
    pause: Duration,
    mut op: F,
) -> JoinHandle<Outcome>
where
    F: FnMut(&mut Client, usize) -> Result<Option<Uuid>, String> + Send + 'static,
{
    std::thread::spawn(move || {
        let mut out = Outcome {
            name,
            ok: 0,
            ids: Vec::new(),
            errors: Vec::new(),
            error_count: 0,
        };
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            match op(&mut client, i) {
                Ok(id) => {
                    out.ok += 1;
                    out.ids.extend(id);
                    progress.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    out.error_count += 1;
                    if out.errors.len() < 10 {
                        out.errors.push(e);
                    }
                }
            }
            i += 1;
            std::thread::sleep(pause);
        }
        out
    })
}

/// Waits (bounded) until `progress` reaches `at_least`.
fn wait_for(progress: &AtomicUsize, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {at_least} operations succeeded within 60 s",
            progress.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn failures_of(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.error_count > 0)
        .map(|o| {
            format!(
                "{}: {} of {} operations failed, e.g. {}",
                o.name,
                o.error_count,
                o.ok + o.error_count,
                o.errors.join(" | ")
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Opposite user order

/// A writes U1 then U2, B writes U2 then U1, each in one transaction, and C
/// copies rows for U1 and U2 while both are open; all three commit. Returns
/// the failures and how many rows committed.
fn opposite_order_round(db: &str, path: Path, isolation: &str) -> (Vec<String>, i64) {
    const SETTINGS: &str = "SET lock_timeout = '10s'; SET statement_timeout = '30s'";
    let begin = format!("BEGIN ISOLATION LEVEL {isolation}");
    let mut probe = session(db, "postgres", SETTINGS);
    let now = scalar(&mut probe, "SELECT now()::text").unwrap();
    let copy_rows = format!(
        "{u1}\t{AGENT}\topenai\tgpt-4o\t100\t50\t{now}\n{u2}\t{AGENT}\topenai\tgpt-4o\t100\t50\t{now}\n",
        u1 = USERS[0],
        u2 = USERS[1]
    );
    let barrier = Arc::new(Barrier::new(3));
    let writer = |first: &'static str, second: &'static str| -> Vec<Phase> {
        let begin = begin.clone();
        vec![
            Box::new(move |c: &mut Client| {
                pg(c.batch_execute(&begin))?;
                record(c, path, first).map(drop)
            }),
            Box::new(move |c: &mut Client| record(c, path, second).map(drop)),
            Box::new(|c: &mut Client| pg(c.batch_execute("COMMIT"))),
        ]
    };
    let copier: Vec<Phase> = vec![
        Box::new({
            let begin = begin.clone();
            move |c: &mut Client| pg(c.batch_execute(&begin))
        }),
        Box::new(move |c: &mut Client| {
            let mut copy = pg(c.copy_in(
                "COPY usage_analytics.agent_usage_detailed
                      (user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\") FROM STDIN",
            ))?;
            copy.write_all(copy_rows.as_bytes())
                .map_err(|e| format!("COPY write: {e}"))?;
            pg(copy.finish()).map(drop)
        }),
        Box::new(|c: &mut Client| pg(c.batch_execute("COMMIT"))),
    ];
    let sessions = [
        ("A (U1 then U2)", writer(USERS[0], USERS[1])),
        ("B (U2 then U1)", writer(USERS[1], USERS[0])),
        ("C (COPY U1, U2)", copier),
    ];
    // Connect all before starting any: a thread that panicked before its
    // first barrier would strand the others.
    let clients: Vec<Client> = sessions
        .iter()
        .map(|_| session(db, "postgres", SETTINGS))
        .collect();
    let handles: Vec<_> = sessions
        .into_iter()
        .zip(clients)
        .map(|((name, phases), client)| {
            let barrier = barrier.clone();
            let name = format!("{path:?}/{isolation}: session {name}");
            std::thread::spawn(move || run_phases(&name, client, barrier, phases))
        })
        .collect();
    let mut failures = Vec::new();
    let mut committed = 0;
    for handle in handles {
        match handle.join().expect("session thread panicked") {
            Ok(()) => committed += 2,
            Err(e) => failures.push(e),
        }
    }
    (failures, committed)
}

#[test]
fn writers_in_opposite_user_order_never_deadlock() {
    let c = cluster();
    let db = c.fresh_db("opposite");
    let mut owner = c.connect(&db);
    let mut failures = Vec::new();
    let mut committed = 0;
    for path in [Path::Track, Path::Insert] {
        for isolation in ["READ COMMITTED", "REPEATABLE READ"] {
            let (f, n) = opposite_order_round(&db, path, isolation);
            failures.extend(f);
            committed += n;
        }
    }
    assert!(
        failures.is_empty(),
        "every writer transaction must commit (no 40P01 deadlock, no 40001 serialization failure, \
         no waiting on another writer):\n{}",
        failures.join("\n")
    );
    assert_eq!(
        count(
            &mut owner,
            &format!("SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE agent_id = '{AGENT}'")
        ),
        committed
    );
    assert_totals_match_rows(&mut owner, "after opposite-order writers");
}

// ---------------------------------------------------------------------------
// 2. An open transaction does not block another writer

#[test]
fn an_open_writer_transaction_does_not_block_another_writer() {
    const SETTINGS: &str = "SET lock_timeout = '5s'; SET statement_timeout = '5s'";
    let c = cluster();
    let db = c.fresh_db("openwriter");
    let mut owner = c.connect(&db);
    let mut failures = Vec::new();
    let mut committed = 0;
    for (a_path, b_path) in [
        (Path::Track, Path::Insert),
        (Path::Insert, Path::Track),
        (Path::Track, Path::Track),
        (Path::Insert, Path::Insert),
    ] {
        let mut a = session(&db, "postgres", SETTINGS);
        let mut b = session(&db, "postgres", SETTINGS);
        must(&mut a, "BEGIN", "session A");
        record(&mut a, a_path, USERS[2]).unwrap_or_else(|e| panic!("session A ({a_path:?}): {e}"));
        // A is open. B records for the same user, day and labels: on its own
        // (autocommit) and in an explicit transaction that commits first.
        match record(&mut b, b_path, USERS[2]) {
            Ok(_) => committed += 1,
            Err(e) => failures.push(format!(
                "B ({b_path:?}, autocommit) while A ({a_path:?}) is open: {e}"
            )),
        }
        let explicit = pg(b.batch_execute("BEGIN"))
            .and_then(|_| record(&mut b, b_path, USERS[2]))
            .and_then(|_| pg(b.batch_execute("COMMIT")));
        match explicit {
            Ok(_) => committed += 1,
            Err(e) => {
                let _ = b.batch_execute("ROLLBACK");
                failures.push(format!(
                    "B ({b_path:?}, in a transaction) while A ({a_path:?}) is open: {e}"
                ));
            }
        }
        must(&mut a, "COMMIT", "session A");
        committed += 1;
    }
    assert!(
        failures.is_empty(),
        "a writer must not wait for another writer's open transaction:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        committed
    );
    assert_totals_match_rows(&mut owner, "after overlapping writers");
}

// ---------------------------------------------------------------------------
// 3. Price changes reach sessions at their next transaction

const COST_SQL: &str =
    "SELECT trim_scale(usage_analytics.calculate_cost('openai', 'gpt-3.5-turbo', 1000, 1000))::text";

/// cost_usd of a row recorded now for 1000/1000 gpt-3.5-turbo tokens, through
/// track_detailed_usage and through a plain INSERT.
fn recorded_costs(client: &mut Client) -> Result<Vec<Option<String>>, String> {
    let tracked: Uuid = pg(client.query_one(
        "SELECT usage_analytics.track_detailed_usage($1, 'price-probe', NULL, 'langchain', 'openai', 'chat',
                1000, 1000, 100, true, NULL, '{}', 'gpt-3.5-turbo')",
        &[&Uuid::parse_str(USERS[3]).unwrap()],
    ))?
    .get(0);
    let inserted = Uuid::new_v4();
    pg(client.execute(
        "INSERT INTO usage_analytics.agent_usage_detailed
                (id, user_id, agent_id, provider, model, input_tokens, output_tokens)
         VALUES ($1, $2, 'price-probe', 'openai', 'gpt-3.5-turbo', 1000, 1000)",
        &[&inserted, &Uuid::parse_str(USERS[3]).unwrap()],
    ))?;
    let mut costs = Vec::new();
    for id in [tracked, inserted] {
        costs.push(
            pg(client.query_one(
                "SELECT trim_scale(cost_usd)::text FROM usage_analytics.agent_usage_detailed WHERE id = $1",
                &[&id],
            ))?
            .get(0),
        );
    }
    Ok(costs)
}

/// Cost of 1000/1000 tokens at the race's i-th price, in micro-dollars:
/// input 0.010 + 0.001 i, output 0.020 + 0.001 i per 1k.
fn race_cost_micro(i: usize) -> i64 {
    30_000 + 2_000 * i as i64
}

fn micro(cost: &str) -> i64 {
    (cost.parse::<f64>().unwrap_or_else(|_| panic!("cost {cost:?}")) * 1e6).round() as i64
}

#[test]
fn a_price_change_reaches_repeatable_read_sessions() {
    const SETTINGS: &str = "SET lock_timeout = '10s'; SET statement_timeout = '30s'";
    let c = cluster();
    let db = c.fresh_db("pricechange");
    let mut admin = session(&db, "postgres", SETTINGS);
    let old = scalar(&mut admin, COST_SQL).expect("gpt-3.5-turbo is priced");
    assert_ne!(
        old, "0.005",
        "the test needs a price change that changes the cost"
    );

    // Sessions holding a REPEATABLE READ snapshot with their price cache
    // loaded. Some then take a new lock in that snapshot (which processes the
    // pending invalidation) and price again, so a cache rebuilt from the old
    // snapshot would be kept. Their next transaction is RR or RC.
    let variants = [
        (true, "REPEATABLE READ"),
        (true, "READ COMMITTED"),
        (false, "REPEATABLE READ"),
        (false, "READ COMMITTED"),
    ];
    let mut sessions: Vec<Client> = variants
        .iter()
        .map(|_| {
            let mut s = session(&db, "postgres", SETTINGS);
            must(&mut s, "BEGIN ISOLATION LEVEL REPEATABLE READ", "session S");
            assert_eq!(scalar(&mut s, COST_SQL).as_ref(), Some(&old));
            s
        })
        .collect();

    // effective_from: a minute ago, but never before a price row the
    // installation may itself have created moments ago (a price catalog
    // installed with effective_from = now() would otherwise supersede it).
    must(
        &mut admin,
        "SELECT usage_analytics.set_model_price('openai', 'gpt-3.5-turbo', 0.002, 0.003,
                greatest(now() - interval '1 minute',
                         (SELECT max(effective_from) + interval '1 millisecond' FROM usage_analytics.model_pricing
                           WHERE provider = 'openai' AND model = 'gpt-3.5-turbo')))",
        "admin",
    );
    assert_eq!(
        scalar(&mut admin, COST_SQL).as_deref(),
        Some("0.005"),
        "the admin's own next statement"
    );

    let mut problems = Vec::new();
    for ((consume, next), s) in variants.iter().zip(sessions.iter_mut()) {
        let name = format!(
            "S ({}next transaction {next})",
            if *consume {
                "took a new lock in the old snapshot, "
            } else {
                ""
            }
        );
        if *consume {
            must(s, "SELECT count(*) FROM usage_analytics.system_analytics", &name);
        }
        let during = scalar(s, COST_SQL);
        if during.as_ref() != Some(&old) && during.as_deref() != Some("0.005") {
            problems.push(format!(
                "{name}: inside the old snapshot the cost was {during:?}, neither {old} nor 0.005"
            ));
        }
        must(s, "COMMIT", &name);
        must(s, &format!("BEGIN ISOLATION LEVEL {next}"), &name);
        let cost = scalar(s, COST_SQL);
        let rows = recorded_costs(s);
        must(s, "COMMIT", &name);
        if cost.as_deref() != Some("0.005") {
            problems.push(format!(
                "{name}: calculate_cost gave {cost:?}, want 0.005 (the new price)"
            ));
        }
        match rows {
            Ok(rows) if rows.iter().all(|r| r.as_deref() == Some("0.005")) => {}
            Ok(rows) => problems.push(format!(
                "{name}: recorded rows cost {rows:?} (track_detailed_usage, INSERT), want 0.005"
            )),
            Err(e) => problems.push(format!("{name}: recording failed: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "a committed price change must reach every session's next transaction:\n{}",
        problems.join("\n")
    );

    // READ COMMITTED race: one session prices continuously (calculate_cost
    // and priced INSERTs alternately) while the admin changes the price N
    // times. Each transaction that begins after change k committed must
    // price at change k or later (prices only go up).
    const N: usize = 20;
    let committed = Arc::new(AtomicUsize::new(0));
    let checked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let pricer = {
        let (committed, checked, stop) = (committed.clone(), checked.clone(), stop.clone());
        let mut p = session(&db, "postgres", SETTINGS);
        std::thread::spawn(move || {
            let mut problems = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let k = committed.load(Ordering::SeqCst);
                let (how, observed) = if i.is_multiple_of(2) {
                    ("calculate_cost", pg(p.query_one(COST_SQL, &[])))
                } else {
                    (
                        "INSERT … RETURNING cost_usd",
                        pg(p.query_one(
                            "INSERT INTO usage_analytics.agent_usage_detailed
                                    (user_id, agent_id, provider, model, input_tokens, output_tokens)
                             VALUES ($1, 'price-race', 'openai', 'gpt-3.5-turbo', 1000, 1000)
                             RETURNING trim_scale(cost_usd)::text",
                            &[&Uuid::parse_str(USERS[4]).unwrap()],
                        )),
                    )
                };
                match observed.map(|row| row.get::<_, Option<String>>(0)) {
                    Ok(Some(cost)) if k == 0 || micro(&cost) >= race_cost_micro(k) => {}
                    Ok(cost) => {
                        if problems.len() < 10 {
                            problems.push(format!(
                                "{how}: after change {k} had committed, the next transaction priced at {cost:?}, \
                                 want at least {}",
                                race_cost_micro(k) as f64 / 1e6
                            ));
                        }
                    }
                    Err(e) => {
                        if problems.len() < 10 {
                            problems.push(format!("{how}: {e}"));
                        }
                    }
                }
                checked.fetch_max(k, Ordering::SeqCst);
                i += 1;
            }
            (problems, i)
        })
    };
    let mut stalls = Vec::new();
    for k in 1..=N {
        admin
            .execute(
                "SELECT usage_analytics.set_model_price('openai', 'gpt-3.5-turbo',
                        0.010 + 0.001 * $1::int, 0.020 + 0.001 * $1::int)",
                &[&(k as i32)],
            )
            .unwrap_or_else(|e| panic!("price change {k}: {}", describe(&e)));
        committed.store(k, Ordering::SeqCst);
        // Let the pricing session finish a transaction that began after this
        // commit before the next change (bounded; a stall is reported).
        let deadline = Instant::now() + Duration::from_secs(30);
        while checked.load(Ordering::SeqCst) < k {
            if Instant::now() > deadline {
                stalls.push(format!(
                    "the pricing session ran no transaction within 30 s of change {k}"
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (mut race_problems, transactions) = pricer.join().expect("pricing thread panicked");
    race_problems.extend(stalls);
    assert!(
        race_problems.is_empty(),
        "READ COMMITTED race ({transactions} pricing transactions, {N} price changes):\n{}",
        race_problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 4. A rollup in progress blocks no writer or reader

#[test]
fn writers_are_not_blocked_during_a_rollup() {
    const WRITER: &str = "SET lock_timeout = '5s'; SET statement_timeout = '5s'";
    let c = cluster();
    let db = c.fresh_db("rollupwriters");
    let mut owner = c.connect(&db);
    load_sample(&mut owner, 2000, 1);
    let writer_role = format!("{db}_writer");
    must(
        &mut owner,
        &format!("CREATE ROLE {writer_role} LOGIN; GRANT usage_analytics_writer TO {writer_role}"),
        "setup",
    );

    let mut rollup = session(
        &db,
        "postgres",
        "SET lock_timeout = '10s'; SET statement_timeout = '60s'",
    );
    must(
        &mut rollup,
        "BEGIN; SELECT usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date)",
        "session R",
    );

    // R is open. Owner and writer-role sessions record and read today.
    let mut failures = Vec::new();
    let mut inserted = 0;
    let mut w = session(&db, "postgres", WRITER);
    let mut wr = session(&db, &writer_role, WRITER);
    for (who, client) in [("owner", &mut w), ("writer role", &mut wr)] {
        for (i, path) in [Path::Track, Path::Insert, Path::Track, Path::Insert]
            .into_iter()
            .enumerate()
        {
            match record(client, path, USERS[i]) {
                Ok(_) => inserted += 1,
                Err(e) => failures.push(format!("{who} {path:?} for {}: {e}", USERS[i])),
            }
        }
    }
    let copied = pg(w.copy_in(
        "COPY usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens, output_tokens)
         FROM STDIN",
    ))
    .and_then(|mut copy| {
        copy.write_all(format!("{}\t{AGENT}\topenai\tgpt-4o\t10\t20\n", USERS[5]).as_bytes())
            .map_err(|e| e.to_string())?;
        pg(copy.finish())
    });
    match copied {
        Ok(n) => inserted += n as i64,
        Err(e) => failures.push(format!("owner COPY: {e}")),
    }
    for sql in [
        "SELECT usage_analytics.get_usage_summary()::text",
        "SELECT usage_analytics.get_usage_summary(jsonb_build_object('start_date', (now() AT TIME ZONE 'UTC')::date))::text",
        "SELECT count(*)::text FROM usage_analytics.get_usage_records('{}', 10)",
        "SELECT count(*)::text FROM usage_analytics.usage_trend('day')",
    ] {
        if let Err(e) = pg(w.simple_query(sql)) {
            failures.push(format!("owner read {sql}: {e}"));
        }
    }
    must(&mut rollup, "COMMIT", "session R");
    assert!(
        failures.is_empty(),
        "writers and readers must not wait for a rollup in progress:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        2000 + inserted
    );
    assert_totals_match_rows(&mut owner, "after writes during a rollup");
}

// ---------------------------------------------------------------------------
// 5. Maintenance cannot be stalled by other sessions' locks

/// The partition of the month three months ahead (ensure_partitions'
/// default horizon).
const AHEAD_PARTITION: &str = "'agent_usage_detailed_p'
      || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months', 'YYYY_MM')";

#[test]
fn hostile_lock_holders_cannot_stall_maintenance() {
    const WRITER: &str = "SET lock_timeout = '5s'; SET statement_timeout = '5s'";
    let c = cluster();
    let db = c.fresh_db("hostile");
    let mut owner = c.connect(&db);
    load_sample(&mut owner, 1000, 2);
    let (hostile_role, reader_role, writer_role) = (
        format!("{db}_hostile"),
        format!("{db}_reader"),
        format!("{db}_writer"),
    );
    must(
        &mut owner,
        &format!(
            "CREATE ROLE {hostile_role} LOGIN; GRANT CONNECT ON DATABASE {db} TO {hostile_role};
             CREATE ROLE {reader_role} LOGIN; GRANT usage_analytics_reader TO {reader_role};
             CREATE ROLE {writer_role} LOGIN; GRANT usage_analytics_writer TO {writer_role};
             INSERT INTO usage_analytics.user_role_map VALUES ('{reader_role}', '{}');",
            USERS[0]
        ),
        "setup",
    );
    // Maintenance must create a partition: drop the one 3 months ahead.
    let partition = scalar(
        &mut owner,
        &format!(
            "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass AND c.relname = {AHEAD_PARTITION}"
        ),
    )
    .expect("the partition 3 months ahead exists after CREATE EXTENSION");
    // (A partition that is a member of the extension is released first.)
    must(
        &mut owner,
        &format!(
            "DO $$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass
                             AND objid = '{partition}'::regclass AND deptype = 'e') THEN
                 ALTER EXTENSION pg_usage_analytics DROP TABLE {partition};
               END IF;
             END $$;
             DROP TABLE {partition};"
        ),
        "setup",
    );

    // A role with no grants on the extension holds the advisory locks
    // maintenance used to take, and stays connected.
    let mut hostile = c.connect_as(&db, &hostile_role);
    must(
        &mut hostile,
        "SELECT pg_advisory_lock(hashtext('usage_analytics.rollup_daily'), (current_date - date '2000-01-01'));
         SELECT pg_advisory_lock(hashtext('usage_analytics.rollup_daily'), (current_date - 1 - date '2000-01-01'));
         SELECT pg_advisory_lock(hashtext('usage_analytics.ensure_partitions'));",
        "hostile",
    );
    // A reader and an owner session idle in transaction after reading.
    let mut idle_reader = c.connect_as(&db, &reader_role);
    must(
        &mut idle_reader,
        "BEGIN; SELECT count(*) FROM usage_analytics.get_usage_records('{}', 10)",
        "idle reader",
    );
    let mut idle_owner = c.connect(&db);
    must(
        &mut idle_owner,
        "BEGIN; SELECT count(*) FROM usage_analytics.agent_usage_detailed",
        "idle owner",
    );

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let writes = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for w in 0..2 {
        handles.push(spawn_loop(
            format!("writer {w}"),
            session(&db, &writer_role, WRITER),
            stop.clone(),
            writes.clone(),
            Duration::from_millis(5),
            move |client, i| {
                let path = if i.is_multiple_of(2) {
                    Path::Track
                } else {
                    Path::Insert
                };
                record(client, path, USERS[(w + i) % 4]).map(Some)
            },
        ));
    }
    handles.push(spawn_loop(
        "reader".to_string(),
        session(&db, &reader_role, WRITER),
        stop.clone(),
        reads.clone(),
        Duration::from_millis(5),
        |client, i| {
            let sql = if i.is_multiple_of(2) {
                "SELECT count(*)::text FROM usage_analytics.get_usage_records('{}', 10)"
            } else {
                "SELECT usage_analytics.get_usage_summary()::text"
            };
            pg(client.simple_query(sql)).map(|_| None)
        },
    ));
    wait_for(&writes, 4, "writers before maintenance");
    wait_for(&reads, 2, "reader before maintenance");

    // Separate round trips: a CALL in a multi-statement string runs in an
    // implicit transaction block, where the procedure could not commit.
    let mut maintenance = session(&db, "postgres", "SET statement_timeout = '60s'");
    let first = pg(maintenance.batch_execute("CALL usage_analytics.run_maintenance()"));
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<Outcome> = handles
        .into_iter()
        .map(|h| h.join().expect("load thread panicked"))
        .collect();

    if let Err(e) = &first {
        panic!(
            "CALL usage_analytics.run_maintenance() must complete while other sessions hold its advisory locks \
             and idle transactions hold table locks (skipping what it cannot lock is fine): {e}"
        );
    }
    let failures = failures_of(&outcomes);
    assert!(
        failures.is_empty(),
        "writers and readers must never fail during maintenance:\n{}",
        failures.join("\n")
    );
    let ids: Vec<Uuid> = outcomes.iter().flat_map(|o| o.ids.clone()).collect();
    assert_eq!(
        owner
            .query_one(
                "SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE id = ANY($1)",
                &[&ids]
            )
            .unwrap()
            .get::<_, i64>(0),
        ids.len() as i64,
        "rows committed by writers during maintenance are missing"
    );

    // The lock holders go away; the next run creates the partition.
    must(&mut hostile, "SELECT pg_advisory_unlock_all()", "hostile");
    drop(hostile);
    must(&mut idle_reader, "ROLLBACK", "idle reader");
    must(&mut idle_owner, "COMMIT", "idle owner");
    if let Err(e) = pg(maintenance.batch_execute("CALL usage_analytics.run_maintenance()")) {
        panic!("run_maintenance() once nobody holds its locks: {e}");
    }
    assert_eq!(
        scalar(
            &mut owner,
            &format!("SELECT to_regclass('usage_analytics.' || {AHEAD_PARTITION})::text")
        )
        .as_deref(),
        Some(partition.as_str()),
        "run_maintenance() did not re-create the partition 3 months ahead once unblocked"
    );
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.system_analytics WHERE date = (now() AT TIME ZONE 'UTC')::date"
        ),
        1,
        "run_maintenance() did not roll up today once unblocked"
    );
    assert_totals_match_rows(&mut owner, "after maintenance");
}

// ---------------------------------------------------------------------------
// 6. Moving rows out of the default partition

#[test]
fn moving_rows_out_of_the_default_partition_loses_none() {
    const BEFORE: i64 = 20_000;
    let c = cluster();
    let db = c.fresh_db("moverows");
    let mut owner = c.connect(&db);
    let lo = scalar(
        &mut owner,
        "SELECT ((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '8 months') AT TIME ZONE 'UTC')::text",
    )
    .unwrap();
    let partition = scalar(
        &mut owner,
        "SELECT 'usage_analytics.agent_usage_detailed_p'
                || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '8 months', 'YYYY_MM')",
    )
    .unwrap();
    let month = format!(
        "\"timestamp\" >= '{lo}'::timestamptz AND \"timestamp\" < '{lo}'::timestamptz + interval '1 month'"
    );
    // The months before it exist already, so ensure_partitions(9) starts
    // with this month (no earlier DDL of its transaction blocks the writers).
    must(&mut owner, "SELECT usage_analytics.ensure_partitions(7)", "setup");
    assert_eq!(
        scalar(&mut owner, &format!("SELECT to_regclass('{partition}')::text")),
        None,
        "setup: the month 8 months ahead must not have a partition yet"
    );
    must(
        &mut owner,
        &format!(
            "INSERT INTO usage_analytics.agent_usage_detailed
                    (user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\")
             SELECT (ARRAY['{}']::uuid[])[1 + g % 8], 'mover', 'openai', 'gpt-4o', g % 1000, g % 500,
                    '{lo}'::timestamptz + make_interval(secs => (g * 7919) % 2332800)
               FROM generate_series(1, {BEFORE}) g",
            USERS.join("','")
        ),
        "setup",
    );
    assert_eq!(
        count(
            &mut owner,
            &format!("SELECT count(*) FROM usage_analytics.agent_usage_detailed_default WHERE {month}")
        ),
        BEFORE,
        "setup: the rows must start in the default partition"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let writes = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..2)
        .map(|w| {
            let lo = lo.clone();
            spawn_loop(
                format!("writer {w}"),
                session(
                    &db,
                    "postgres",
                    "SET lock_timeout = '30s'; SET statement_timeout = '30s'",
                ),
                stop.clone(),
                writes.clone(),
                Duration::ZERO,
                move |client, i| {
                    let id = Uuid::new_v4();
                    pg(client.execute(
                        &format!(
                            "INSERT INTO usage_analytics.agent_usage_detailed
                                    (id, user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\")
                             VALUES ($1, $2, 'mover-live', 'openai', 'gpt-4o', 10, 10,
                                     '{lo}'::timestamptz + random() * interval '27 days')"
                        ),
                        &[&id, &Uuid::parse_str(USERS[(w + i) % 8]).unwrap()],
                    ))
                    .map(|_| Some(id))
                },
            )
        })
        .collect();
    wait_for(&writes, 40, "writers into the default partition");
    let mut mover = session(&db, "postgres", "SET statement_timeout = '60s'");
    let moved = pg(mover.query_one("SELECT usage_analytics.ensure_partitions(9)", &[]));
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<Outcome> = handles
        .into_iter()
        .map(|h| h.join().expect("writer thread panicked"))
        .collect();

    if let Err(e) = &moved {
        panic!("ensure_partitions(9) with writers inserting into the month it moves: {e}");
    }
    let ids: Vec<Uuid> = outcomes.iter().flat_map(|o| o.ids.clone()).collect();
    let found: i64 = owner
        .query_one(
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE id = ANY($1)",
            &[&ids],
        )
        .unwrap()
        .get(0);
    let in_month = count(
        &mut owner,
        &format!("SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {month}"),
    );
    assert_eq!(
        (found, in_month),
        (ids.len() as i64, BEFORE + ids.len() as i64),
        "rows lost while moving the month out of the default partition: {} of {} rows committed during the move \
         are missing; the month holds {in_month} rows, want {BEFORE} from before plus {} committed during",
        ids.len() as i64 - found,
        ids.len(),
        ids.len()
    );
    assert_eq!(
        scalar(&mut owner, &format!("SELECT to_regclass('{partition}')::text")).as_deref(),
        Some(partition.as_str()),
        "ensure_partitions(9) did not create the month's partition"
    );
    assert_eq!(
        count(
            &mut owner,
            &format!("SELECT count(*) FROM usage_analytics.agent_usage_detailed_default WHERE {month}")
        ),
        0,
        "the default partition still holds rows of the month that now has a partition"
    );
    // No row is ever rejected for lack of a partition: an insert routed to
    // the default partition just before the month's partition is attached
    // (23514 "violates partition constraint") is such a rejection.
    let failures = failures_of(&outcomes);
    assert!(
        failures.is_empty(),
        "no insert may be rejected while ensure_partitions creates the month it is writing to:\n{}",
        failures.join("\n")
    );
    assert_totals_match_rows(&mut owner, "after moving rows");
}

/// The raw GROUP BY a system-wide summary must equal: totals, breakdowns
/// and users, computed from the rows themselves.
const RAW_SUMMARY: &str = "
    SELECT jsonb_build_object(
        'total_requests', count(*), 'successful_requests', count(*) FILTER (WHERE success),
        'total_input_tokens', coalesce(sum(input_tokens), 0), 'total_output_tokens', coalesce(sum(output_tokens), 0),
        'total_cost_usd', coalesce(sum(cost_usd), 0), 'unpriced_requests', count(*) FILTER (WHERE cost_usd IS NULL),
        'unique_users', count(DISTINCT user_id))::text
      FROM usage_analytics.agent_usage_detailed
     WHERE \"timestamp\" >= now() - interval '5 days'";
const SUMMARY_SUBSET: &str = "
    SELECT (SELECT jsonb_object_agg(k, s -> k)
              FROM jsonb_object_keys(jsonb_build_object('total_requests', 0, 'successful_requests', 0,
                       'total_input_tokens', 0, 'total_output_tokens', 0, 'total_cost_usd', 0,
                       'unpriced_requests', 0, 'unique_users', 0)) k)::text
      FROM usage_analytics.get_usage_summary(jsonb_build_object('start_date', now() - interval '5 days')) s";

/// Writers record into today (and delete) while an admin dashboard reads the
/// system-wide summary: every summary equals the raw rows of the same
/// snapshot, at every moment, with no rollup run in between (issue: live
/// summaries).
#[test]
fn system_wide_summaries_are_exact_while_writers_record() {
    let c = cluster();
    let db = c.fresh_db("live_summary");
    let mut owner = session(&db, "postgres", "");
    load_sample(&mut owner, 3000, 3);
    must(
        &mut owner,
        "SELECT usage_analytics.rollup_range(current_date - 4, current_date)",
        "rollup",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, written) = (stop.clone(), written.clone());
            let mut s = session(&db, "postgres", "");
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) && i < 2000 {
                    let sql = if i % 50 == 49 {
                        // Now and then a delete, so the per-day totals go down too.
                        "DELETE FROM usage_analytics.agent_usage_detailed
                          WHERE id = (SELECT id FROM usage_analytics.agent_usage_detailed
                                       WHERE agent_id = 'live-writer' ORDER BY \"timestamp\" LIMIT 1)"
                            .to_string()
                    } else {
                        format!(
                            "INSERT INTO usage_analytics.agent_usage_detailed
                                 (user_id, agent_id, provider, model, input_tokens, output_tokens, success)
                             VALUES ('{}', 'live-writer', 'openai', 'gpt-4o', {}, {}, {})",
                            USERS[(w + i) % USERS.len()],
                            10 + i,
                            5 + w,
                            !i.is_multiple_of(7)
                        )
                    };
                    s.batch_execute(&sql).expect("writer");
                    written.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    let mut reader = session(&db, "postgres", "");
    let mut compared = 0;
    let mut mismatches = Vec::new();
    while compared < 30 || written.load(Ordering::SeqCst) < 200 {
        must(&mut reader, "BEGIN ISOLATION LEVEL REPEATABLE READ", "reader");
        let summary = scalar(&mut reader, SUMMARY_SUBSET);
        let raw = scalar(&mut reader, RAW_SUMMARY);
        must(&mut reader, "COMMIT", "reader");
        let parse =
            |s: &Option<String>| serde_json::from_str::<serde_json::Value>(s.as_deref().unwrap()).unwrap();
        if parse(&summary) != parse(&raw) {
            mismatches.push(format!("summary {summary:?}\n    raw {raw:?}"));
        }
        compared += 1;
        if compared > 400 {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        written.load(Ordering::SeqCst) >= 200,
        "the writers wrote too little to test anything"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} summaries differed from the raw rows of their snapshot, e.g.\n{}",
        mismatches.len(),
        mismatches.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
    );
    // And once the writers stop.
    assert_eq!(
        scalar(&mut reader, SUMMARY_SUBSET).map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap()),
        scalar(&mut reader, RAW_SUMMARY).map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap())
    );
}

// ---------------------------------------------------------------------------
// 7. A long transaction of single-row writes keeps the bookkeeping exact

/// The per-day totals and per-day users agree with the rows, group by group.
fn assert_day_tables_match_rows(client: &mut Client, context: &str) {
    for (what, bookkeeping, raw) in [
        (
            "usage_daily_totals",
            "SELECT date::text, agent_id, sum(total_requests)::text, sum(total_input_tokens)::text,
                    trim_scale(sum(total_cost_usd))::text
               FROM usage_analytics.usage_daily_totals GROUP BY 1, 2 HAVING sum(total_requests) <> 0 ORDER BY 1, 2",
            "SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date::text, agent_id, count(*)::text, sum(input_tokens)::text,
                    trim_scale(sum(cost_usd))::text
               FROM usage_analytics.agent_usage_detailed GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "usage_daily_user",
            "SELECT day::text, user_id::text, sum(requests)::text, sum(output_tokens)::text
               FROM usage_analytics.usage_daily_user GROUP BY 1, 2 HAVING sum(requests) <> 0 ORDER BY 1, 2",
            "SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date::text, user_id::text, count(*)::text,
                    sum(output_tokens)::text
               FROM usage_analytics.agent_usage_detailed GROUP BY 1, 2 ORDER BY 1, 2",
        ),
    ] {
        assert_eq!(
            text_rows(client, bookkeeping),
            text_rows(client, raw),
            "{context}: {what} differs from the rows"
        );
    }
}

#[test]
fn a_long_transaction_of_single_row_writes_keeps_the_bookkeeping_exact() {
    // Past its first statements, a transaction rewrites an active-user
    // sketch at the position it last wrote it (src/active_users.rs); a
    // savepoint rolled back and a delete in between must not throw the
    // positions off. Every row brings a new user, so every statement
    // changes the sketches; up to 384 users their estimate is exact.
    let c = cluster();
    let db = c.fresh_db("longtxn");
    let mut s = c.connect(&db);
    must(&mut s, "BEGIN", "long transaction");
    let record_many = |s: &mut Client, n: usize| {
        for i in 0..n {
            let path = if i % 3 == 0 { Path::Track } else { Path::Insert };
            record(s, path, &Uuid::new_v4().to_string()).unwrap_or_else(|e| panic!("row {i}: {e}"));
        }
    };
    let active_last_hour = |client: &mut Client| {
        count(
            client,
            "SELECT users FROM usage_analytics.metrics_active_users() WHERE \"window\" = '1h'",
        )
    };
    record_many(&mut s, 40);
    assert_totals_match_rows(&mut s, "40 rows into an open transaction");
    assert_day_tables_match_rows(&mut s, "40 rows into an open transaction");
    assert_eq!(
        active_last_hour(&mut s),
        40,
        "active users after 40 rows, before COMMIT"
    );
    must(&mut s, "SAVEPOINT half", "long transaction");
    record_many(&mut s, 12);
    must(&mut s, "ROLLBACK TO SAVEPOINT half", "long transaction");
    record_many(&mut s, 20);
    must(
        &mut s,
        "DELETE FROM usage_analytics.agent_usage_detailed
          WHERE id = (SELECT id FROM usage_analytics.agent_usage_detailed ORDER BY id LIMIT 1)",
        "one row deleted",
    );
    record_many(&mut s, 20);
    // The exporter's counters and sketches never go down: they keep the
    // deleted row and its user.
    let after_delete = |client: &mut Client, context: &str, users: i64| {
        let rows = count(
            client,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
        );
        let counted = count(
            client,
            "SELECT sum(requests) FROM usage_analytics.metrics_usage_counters()",
        );
        assert_eq!(
            counted,
            rows + 1,
            "{context}: counters are the rows plus the deleted one"
        );
        let summary = count(
            client,
            "SELECT (usage_analytics.get_usage_summary() ->> 'total_requests')::bigint",
        );
        assert_eq!(
            summary, rows,
            "{context}: get_usage_summary() total_requests differs from count(*)"
        );
        assert_day_tables_match_rows(client, context);
        assert_eq!(
            active_last_hour(client),
            users,
            "{context}: active users in the last hour"
        );
    };
    after_delete(
        &mut s,
        "after a rolled-back savepoint and a delete, before COMMIT",
        80,
    );
    must(&mut s, "COMMIT", "long transaction");
    assert_eq!(
        count(
            &mut s,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        79
    );
    let mut other = c.connect(&db);
    after_delete(&mut other, "another session, after COMMIT", 80);
    // The next transaction of the same session starts over, and its rows
    // reach the same rows.
    must(&mut s, "BEGIN", "second transaction");
    record_many(&mut s, 15);
    must(&mut s, "COMMIT", "second transaction");
    after_delete(&mut other, "after a second transaction", 95);
}
