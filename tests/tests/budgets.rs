//! Budgets, reservations, threshold events, forecasts and recommendations
//! (issue 16).
//!
//! Concurrent sessions carry `lock_timeout`/`statement_timeout` as hang
//! detectors and meet at `Barrier`s that every thread reaches even after an
//! error, so a regression fails with its SQLSTATE instead of hanging.

use integration_tests::{cluster, db_error, scalar, text_rows, USERS};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use uuid::Uuid;

const TIMEOUTS: &str = "SET lock_timeout = '20s'; SET statement_timeout = '60s'";

/// A fresh database with the extension and sql/budgets.sql.
fn budget_db(name: &str) -> String {
    cluster().fresh_db(name)
}

fn session(db: &str) -> Client {
    let mut c = cluster().connect(db);
    c.batch_execute(TIMEOUTS).unwrap();
    c
}

fn num(client: &mut Client, sql: &str) -> f64 {
    scalar(client, sql)
        .unwrap_or_else(|| panic!("no value from {sql}"))
        .parse()
        .unwrap()
}

fn text(client: &mut Client, sql: &str) -> String {
    scalar(client, sql).unwrap_or_else(|| panic!("no value from {sql}"))
}

/// The SQLSTATE and message of the error `sql` must raise.
fn error_of(client: &mut Client, sql: &str) -> (String, String) {
    match client.batch_execute(sql) {
        Ok(()) => panic!("expected an error from {sql}"),
        Err(e) => db_error(&e),
    }
}

/// Records one gpt-4o request (1000 in, 1000 out = 0.0125 USD) for `user`.
fn track(client: &mut Client, user: &str, metadata: &str) -> Result<(), String> {
    client
        .batch_execute(&format!(
            "SELECT usage_analytics.track_detailed_usage('{user}', 'budget-agent', 'Budget agent', 'langchain',
                    'openai', 'chat', 1000, 1000, 100, true, NULL, '{metadata}', 'gpt-4o')"
        ))
        .map_err(|e| format!("{:?}", db_error(&e)))
}

const GPT4O_1K_1K: f64 = 0.0125;

#[test]
fn bad_input_is_refused_with_22023_naming_it() {
    let db = budget_db("budget_bad_input");
    let mut c = session(&db);
    for (sql, names) in [
        ("SELECT usage_analytics.set_budget('b', '{}', 'day', -1)", "limit_usd"),
        ("SELECT usage_analytics.set_budget('b', '{}', 'day', 'NaN')", "limit_usd"),
        ("SELECT usage_analytics.set_budget('b', '{\"team\": \"x\"}', 'day', 1)", "team"),
        ("SELECT usage_analytics.set_budget('b', '{\"user_id\": \"nope\"}', 'day', 1)", "user_id"),
        ("SELECT usage_analytics.set_budget('b', '[]', 'day', 1)", "scope"),
        ("SELECT usage_analytics.set_budget('b', '{}', 'year', 1)", "period"),
        ("SELECT usage_analytics.set_budget('b', '{}', 'day', 1, 'strict')", "enforcement"),
        ("SELECT usage_analytics.set_budget('b', '{}', 'day', 1, 'hard', 'Mars/Olympus')", "timezone"),
        ("SELECT usage_analytics.set_budget('b', '{}', 'day', 1, 'hard', 'UTC', '{0, 1}')", "alert_thresholds"),
        ("SELECT usage_analytics.set_budget('', '{}', 'day', 1)", "name"),
        (
            "SELECT usage_analytics.authorize_request(gen_random_uuid(), 'a', 'openai', 'gpt-4o', -1, 10)",
            "estimated_input_tokens",
        ),
        (
            "SELECT usage_analytics.authorize_request(gen_random_uuid(), 'a', 'openai', 'gpt-4o', 1, 1, '-1 minute')",
            "ttl",
        ),
        ("SELECT * FROM usage_analytics.forecast_cost(0)", "horizon_days"),
        ("SELECT * FROM usage_analytics.cost_recommendations('{}', '-1 day')", "lookback"),
    ] {
        let (code, message) = error_of(&mut c, sql);
        assert_eq!(code, "22023", "{sql}: {message}");
        assert!(message.contains(names), "{sql}: message {message:?} should name {names}");
    }
    assert_eq!(num(&mut c, "SELECT count(*) FROM usage_analytics.budgets"), 0.0);

    // Not an admin: refused (and nothing written).
    let role = format!("{db}_writer");
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT usage_analytics_writer TO {role}"
    ))
    .unwrap();
    let mut w = cluster().connect_as(&db, &role);
    let (code, _) = error_of(&mut w, "SELECT usage_analytics.set_budget('b', '{}', 'day', 1)");
    assert_eq!(code, "42501");

    // Re-setting a name replaces it; both actions are audited.
    let id1 = text(&mut c, "SELECT usage_analytics.set_budget('b', '{}', 'day', 1)");
    let id2 = text(
        &mut c,
        "SELECT usage_analytics.set_budget('b', '{\"provider\": \"OpenAI\"}', 'month', 2, 'soft')",
    );
    assert_eq!(id1, id2);
    let rows = text_rows(
        &mut c,
        "SELECT scope::text, period, limit_usd::text, enforcement FROM usage_analytics.budget_status('b')",
    );
    assert_eq!(
        rows,
        vec![vec![
            Some("{\"provider\": \"openai\"}".into()),
            Some("month".into()),
            Some("2".into()),
            Some("soft".into())
        ]]
    );
    assert_eq!(
        num(
            &mut c,
            "SELECT count(*) FROM usage_analytics.admin_audit_log WHERE action = 'set_budget'"
        ),
        2.0
    );
    assert_eq!(text(&mut c, "SELECT usage_analytics.delete_budget('b')"), "t");
    assert_eq!(text(&mut c, "SELECT usage_analytics.delete_budget('b')"), "f");
}

/// spent equals the exact cost of the matching rows in the period, whatever
/// path wrote them (track, INSERT, COPY, UPDATE, DELETE), including rows
/// recorded before the budget existed; periods follow the budget's timezone.
#[test]
fn spent_is_exact_for_every_write_path() {
    let db = budget_db("budget_spent");
    let mut c = session(&db);
    let u = USERS[0];
    // A second writer, connected before the budgets exist: whether any budget
    // exists is cached per backend, and creating one must reach this
    // backend's cache too (checked below: 'everything' counts its rows).
    let mut w = session(&db);
    track(&mut w, USERS[2], "{}").unwrap();
    // Before the budget exists.
    track(&mut c, u, "{}").unwrap();
    c.batch_execute(&format!(
        "SELECT usage_analytics.set_budget('user-week', '{{\"user_id\": \"{u}\"}}', 'week', 100, 'hard', 'America/New_York');
         SELECT usage_analytics.set_budget('anthropic-month', '{{\"provider\": \"anthropic\"}}', 'month', 100, 'soft', 'Asia/Kolkata');
         SELECT usage_analytics.set_budget('everything', '{{}}', 'total', 100);"
    ))
    .unwrap();
    track(&mut c, u, "{}").unwrap();
    track(&mut w, USERS[2], "{}").unwrap();
    c.batch_execute(&format!(
        "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens, output_tokens)
         SELECT '{u}', 'budget-agent', 'anthropic', 'claude-3-haiku', g * 10, g FROM generate_series(1, 50) g;
         INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens, output_tokens, cost_usd)
         VALUES ('{}', 'other', 'openai', 'gpt-4o', 1, 1, 0.333333333333);",
        USERS[1]
    ))
    .unwrap();
    let mut copy = c
        .copy_in(
            "COPY usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens, output_tokens) FROM STDIN",
        )
        .unwrap();
    std::io::Write::write_all(
        &mut copy,
        format!("{u}\tcopy-agent\tanthropic\tclaude-3-5-sonnet\t1234\t567\n{u}\tcopy-agent\topenai\tunknown-model\t5\t5\n")
            .as_bytes(),
    )
    .unwrap();
    copy.finish().unwrap();
    c.batch_execute(
        "UPDATE usage_analytics.agent_usage_detailed SET cost_usd = cost_usd * 3 WHERE agent_id = 'budget-agent' AND input_tokens = 100;
         DELETE FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'budget-agent' AND input_tokens = 200;",
    )
    .unwrap();

    let checks = [
        (
            "user-week",
            format!(
                "user_id = '{u}' AND \"timestamp\" >= date_trunc('week', now() AT TIME ZONE 'America/New_York') AT TIME ZONE 'America/New_York'"
            ),
        ),
        (
            "anthropic-month",
            "provider = 'anthropic' AND \"timestamp\" >= date_trunc('month', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata'"
                .to_string(),
        ),
        ("everything", "true".to_string()),
    ];
    for (name, condition) in checks {
        let expected = text(
            &mut c,
            &format!(
                "SELECT trim_scale(coalesce(sum(cost_usd), 0))::text FROM usage_analytics.agent_usage_detailed WHERE {condition}"
            ),
        );
        let spent = text(
            &mut c,
            &format!("SELECT trim_scale(spent_usd)::text FROM usage_analytics.budget_status('{name}')"),
        );
        assert_eq!(spent, expected, "{name}: spent differs from the rows");
    }
    // TRUNCATE empties the ledger with the table.
    c.batch_execute("TRUNCATE usage_analytics.agent_usage_detailed")
        .unwrap();
    assert_eq!(
        num(
            &mut c,
            "SELECT sum(spent_usd) FROM usage_analytics.budget_status()"
        ),
        0.0
    );
}

/// Many clients authorizing and recording against one hard limit (and
/// overlapping hard budgets locked in id order) never take spent + reserved
/// past the limit, never deadlock, and admit exactly floor(limit / cost).
#[test]
fn concurrent_authorizers_never_overshoot_a_hard_limit() {
    let db = budget_db("budget_hard_limit");
    let mut admin = session(&db);
    let allowed_requests = 37;
    let limit = GPT4O_1K_1K * allowed_requests as f64;
    // 'shared' is checked last (highest id) by some clients and first by none:
    // the per-user budgets have lower ids for half the users.
    admin
        .batch_execute(&format!(
            "SELECT usage_analytics.set_budget('user0', '{{\"user_id\": \"{}\"}}', 'day', 1000);
             SELECT usage_analytics.set_budget('shared', '{{\"agent_id\": \"budget-agent\"}}', 'day', {limit});
             SELECT usage_analytics.set_budget('user1', '{{\"user_id\": \"{}\"}}', 'day', 1000);
             SELECT usage_analytics.set_budget('soft-all', '{{}}', 'day', 0.01, 'soft');",
            USERS[0], USERS[1]
        ))
        .unwrap();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let db = db.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<(usize, usize), String> {
                let mut c = session(&db);
                let user = USERS[i % 2];
                barrier.wait();
                let (mut allowed, mut refused) = (0, 0);
                for _ in 0..15 {
                    let row = c
                        .query_one(
                            "SELECT usage_analytics.authorize_request($1, 'budget-agent', 'openai', 'gpt-4o', 1000, 1000)",
                            &[&Uuid::parse_str(user).unwrap()],
                        )
                        .map_err(|e| format!("authorize: {:?}", db_error(&e)))?;
                    let answer: serde_json::Value = row.get(0);
                    if answer["allowed"].as_bool() == Some(true) {
                        allowed += 1;
                        let rid = answer["reservation_id"].as_str().ok_or("no reservation id")?;
                        track(&mut c, user, &format!("{{\"reservation_id\": \"{rid}\"}}"))?;
                    } else {
                        assert_eq!(answer["reason"], "budget_exceeded", "{answer}");
                        assert_eq!(answer["blocked_by"], "shared", "{answer}");
                        refused += 1;
                    }
                }
                Ok((allowed, refused))
            })
        })
        .collect();
    let mut allowed = 0;
    for h in handles {
        let (a, _) = h.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        allowed += a;
    }
    assert_eq!(allowed, allowed_requests, "admitted requests");
    let rows = text_rows(
        &mut admin,
        "SELECT spent_usd::text, reserved_usd::text FROM usage_analytics.budget_status('shared')",
    );
    let spent: f64 = rows[0][0].as_deref().unwrap().parse().unwrap();
    assert!((spent - limit).abs() < 1e-12, "spent {spent} vs limit {limit}");
    assert_eq!(rows[0][1].as_deref(), Some("0"), "every reservation was released");
    assert_eq!(
        num(
            &mut admin,
            "SELECT count(*) FROM usage_analytics.budget_reservations"
        ),
        0.0
    );

    // Unpriceable under a hard budget: refused; under soft budgets only: allowed.
    let answer = text(
        &mut admin,
        &format!(
            "SELECT usage_analytics.authorize_request('{}', 'budget-agent', 'openai', 'no-such-model', 10, 10)",
            USERS[2]
        ),
    );
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["reason"], "unpriced");
    let answer = text(
        &mut admin,
        &format!(
            "SELECT usage_analytics.authorize_request('{}', 'elsewhere', 'openai', 'no-such-model', 10, 10)",
            USERS[2]
        ),
    );
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(answer["budgets"][0]["name"], "soft-all");
}

/// A hard budget scoped to a framework checks an authorization that names no
/// framework (it may be one of that framework's requests), and leaves alone
/// one that names another framework.
#[test]
fn a_framework_scoped_hard_budget_checks_requests_of_unknown_framework() {
    let db = budget_db("budget_framework_scope");
    let mut c = session(&db);
    let u = USERS[4];
    c.batch_execute(&format!(
        "SELECT usage_analytics.set_budget('crewai-tiny', '{{\"framework\": \"crewai\"}}', 'month', {})",
        GPT4O_1K_1K / 2.0
    ))
    .unwrap();
    let reason = |c: &mut Client, framework: &str| -> String {
        text(
            c,
            &format!(
                "SELECT usage_analytics.authorize_request('{u}', 'a', 'openai', 'gpt-4o', 1000, 1000,
                        framework => {framework}) ->> 'reason'"
            ),
        )
    };
    assert_eq!(reason(&mut c, "NULL"), "budget_exceeded");
    assert_eq!(reason(&mut c, "'crewai'"), "budget_exceeded");
    assert_eq!(reason(&mut c, "'langchain'"), "no_budget");
    // The provider is required: without it no provider-scoped budget could apply.
    for provider in ["NULL", "' '"] {
        let (code, message) = error_of(
            &mut c,
            &format!(
                "SELECT usage_analytics.authorize_request('{u}', 'a', {provider}, 'gpt-4o', 1000, 1000)"
            ),
        );
        assert_eq!(code, "22023", "{message}");
        assert!(message.contains("provider"), "{message}");
    }
}

#[test]
fn reservations_expire_and_are_released() {
    let db = budget_db("budget_reservations");
    let mut c = session(&db);
    let u = USERS[3];
    c.batch_execute(&format!(
        "SELECT usage_analytics.set_budget('one-call', '{{\"user_id\": \"{u}\"}}', 'month', {GPT4O_1K_1K})"
    ))
    .unwrap();
    let authorize = |c: &mut Client, ttl: &str| -> serde_json::Value {
        let row = c
            .query_one(
                &format!(
                    "SELECT usage_analytics.authorize_request($1, 'a', 'openai', 'gpt-4o', 1000, 1000, '{ttl}')"
                ),
                &[&Uuid::parse_str(u).unwrap()],
            )
            .unwrap();
        row.get(0)
    };
    let first = authorize(&mut c, "1 second");
    assert_eq!(first["allowed"], true, "{first}");
    assert_eq!(first["estimated_cost_usd"].as_f64(), Some(GPT4O_1K_1K));
    assert_eq!(
        first["budgets"][0]["remaining_usd"].as_f64(),
        Some(0.0),
        "{first}"
    );
    let second = authorize(&mut c, "1 minute");
    assert_eq!(second["allowed"], false, "{second}");
    assert_eq!(
        num(
            &mut c,
            "SELECT reserved_usd FROM usage_analytics.budget_status('one-call')"
        ),
        GPT4O_1K_1K
    );
    std::thread::sleep(Duration::from_millis(1300));
    // Expired: no longer counts, and maintenance deletes it.
    assert_eq!(
        num(
            &mut c,
            "SELECT reserved_usd FROM usage_analytics.budget_status('one-call')"
        ),
        0.0
    );
    let third = authorize(&mut c, "1 minute");
    assert_eq!(third["allowed"], true, "{third}");
    // Any login can hold any advisory lock key: maintenance does not use one.
    let mut squatter = session(&db);
    squatter
        .batch_execute("SELECT pg_advisory_lock('usage_analytics.budget_spend'::regclass::oid::bigint)")
        .unwrap();
    assert_eq!(num(&mut c, "SELECT usage_analytics.budget_maintenance()"), 1.0);
    drop(squatter);

    // release_reservation gives it back; recording with it releases it too.
    let rid = third["reservation_id"].as_str().unwrap().to_string();
    assert_eq!(
        text(
            &mut c,
            &format!("SELECT usage_analytics.release_reservation('{rid}')")
        ),
        "t"
    );
    assert_eq!(
        num(
            &mut c,
            "SELECT reserved_usd FROM usage_analytics.budget_status('one-call')"
        ),
        0.0
    );
    let fourth = authorize(&mut c, "1 minute");
    let rid = fourth["reservation_id"].as_str().unwrap().to_string();
    track(&mut c, u, &format!("{{\"reservation_id\": \"{rid}\"}}")).unwrap();
    let status = text_rows(
        &mut c,
        "SELECT spent_usd::text, reserved_usd::text, remaining_usd::text FROM usage_analytics.budget_status('one-call')",
    );
    assert_eq!(status[0][1].as_deref(), Some("0"));
    assert_eq!(
        status[0][2].as_deref().map(|s| s.parse::<f64>().unwrap()),
        Some(0.0)
    );
    // A malformed reservation id never breaks recording.
    track(&mut c, u, "{\"reservation_id\": \"not-a-uuid\"}").unwrap();
}

/// Thresholds fire exactly once per period: many concurrent writers, and
/// two transactions that cross only together (each alone stays below).
#[test]
fn threshold_events_and_notifications_exactly_once() {
    let db = budget_db("budget_events");
    let mut admin = session(&db);
    let mut listener = session(&db);
    listener.batch_execute("LISTEN usage_analytics_budget").unwrap();
    // 20 requests = the limit; thresholds at 5, 8 and 20 requests (and 1.5x).
    admin
        .batch_execute(&format!(
            "SELECT usage_analytics.set_budget('events', '{{\"agent_id\": \"budget-agent\"}}', 'day', {}, 'soft', 'UTC', '{{0.25,0.4,1.0,1.5}}')",
            GPT4O_1K_1K * 20.0
        ))
        .unwrap();

    // Two transactions of 3 requests each (0.15 of the limit alone, 0.3
    // together... then 3 more each: 0.6 together) commit at the same time.
    let barrier = Arc::new(Barrier::new(2));
    let pair: Vec<_> = (0..2)
        .map(|i| {
            let db = db.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = session(&db);
                let r = (|| {
                    c.batch_execute("BEGIN")
                        .map_err(|e| format!("{:?}", db_error(&e)))?;
                    for _ in 0..3 {
                        track(&mut c, USERS[i], "{}")?;
                    }
                    Ok::<(), String>(())
                })();
                barrier.wait();
                r?;
                c.batch_execute("COMMIT")
                    .map_err(|e| format!("{:?}", db_error(&e)))
            })
        })
        .collect();
    for h in pair {
        h.join().unwrap().unwrap();
    }
    assert_eq!(
        text(
            &mut admin,
            "SELECT string_agg(threshold::text, ',' ORDER BY threshold) FROM usage_analytics.budget_events"
        ),
        "0.25",
        "6 of 20 requests together crossed 0.25 (5 requests), though each transaction alone (3) did not"
    );

    // Then 8 writers race through the rest, 4 requests each (38 in all).
    let barrier = Arc::new(Barrier::new(8));
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = session(&db);
                barrier.wait();
                for _ in 0..4 {
                    track(&mut c, USERS[i], "{}")?;
                }
                Ok(())
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap().unwrap();
    }
    let events = text_rows(
        &mut admin,
        "SELECT threshold::text, count(*)::text FROM usage_analytics.budget_events GROUP BY 1 ORDER BY 1",
    );
    let expected: Vec<Vec<Option<String>>> = ["0.25", "0.4", "1", "1.5"]
        .iter()
        .map(|t| vec![Some(t.to_string()), Some("1".to_string())])
        .collect();
    assert_eq!(events, expected, "one event per threshold");

    let mut got = Vec::new();
    let mut notes = listener.notifications();
    let mut it = notes.timeout_iter(Duration::from_secs(3));
    while let Some(n) = it.next().unwrap() {
        got.push(serde_json::from_str::<serde_json::Value>(n.payload()).unwrap());
    }
    let mut thresholds: Vec<String> = got.iter().map(|p| p["threshold"].to_string()).collect();
    thresholds.sort();
    assert_eq!(
        thresholds,
        vec!["0.25", "0.4", "1", "1.5"],
        "one notification per event: {got:?}"
    );
    assert!(got
        .iter()
        .all(|p| p["budget"] == "events" && p["spent_usd"].is_number()));
}

/// Daily totals of a synthetic series with trend and weekly seasonality.
fn synthetic_cost(day_index: i64, weekday: u32) -> f64 {
    let season = [4.0, 6.0, 5.0, 5.5, 3.0, -10.0, -13.5]; // Mon..Sun
    let noise = ((day_index * 7919) % 13) as f64 / 13.0 - 0.5; // deterministic, in [-0.5, 0.5)
    20.0 + 0.4 * day_index as f64 + season[weekday as usize] + noise
}

#[test]
fn forecast_beats_the_naive_mean_on_trend_and_seasonality() {
    let db = budget_db("budget_forecast");
    let mut c = session(&db);
    // 70 days ending yesterday (UTC), one row a day at noon with the day's cost.
    let days = 70;
    c.batch_execute(&format!(
        "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, cost_usd, \"timestamp\")
         SELECT '{}', 'forecast-agent', 'openai', 'gpt-4o', 0, (current_date - g) + time '12:00' FROM generate_series(1, {days}) g",
        USERS[4]
    ))
    .unwrap();
    let rows = text_rows(
        &mut c,
        "SELECT ((\"timestamp\" AT TIME ZONE 'UTC')::date - (current_date - 70))::text,
                (extract(isodow FROM \"timestamp\" AT TIME ZONE 'UTC')::int - 1)::text, id::text
           FROM usage_analytics.agent_usage_detailed ORDER BY \"timestamp\"",
    );
    let mut actual = Vec::new();
    for r in &rows {
        let index: i64 = r[0].as_deref().unwrap().parse().unwrap();
        let weekday: u32 = r[1].as_deref().unwrap().parse().unwrap();
        let cost = synthetic_cost(index, weekday);
        actual.push(cost);
        c.batch_execute(&format!(
            "UPDATE usage_analytics.agent_usage_detailed SET cost_usd = {cost} WHERE id = '{}'",
            r[2].as_deref().unwrap()
        ))
        .unwrap();
    }
    // Backtest: origin 14 days ago; history is the 56 days before it.
    let horizon = 14;
    let forecast = |c: &mut Client, filters: &str| -> Vec<(f64, f64, f64)> {
        text_rows(
            c,
            &format!(
                "SELECT expected_cost_usd::text, low_usd::text, high_usd::text
                   FROM usage_analytics.forecast_cost({horizon}, '{filters}') ORDER BY day"
            ),
        )
        .into_iter()
        .map(|r| {
            let f = |i: usize| r[i].as_deref().unwrap().parse::<f64>().unwrap();
            (f(0), f(1), f(2))
        })
        .collect()
    };
    let origin = text(
        &mut c,
        "SELECT to_char(current_date - 14, 'YYYY-MM-DD') || 'T00:00:00Z'",
    );
    let predicted = forecast(&mut c, &format!("{{\"end_date\": \"{origin}\"}}"));
    assert_eq!(predicted.len(), horizon);
    let truth = &actual[actual.len() - horizon..];
    let history = &actual[..actual.len() - horizon];
    let naive = history[history.len() - 7..].iter().sum::<f64>() / 7.0;
    let mae_model = predicted
        .iter()
        .zip(truth)
        .map(|(p, t)| (p.0 - t).abs())
        .sum::<f64>()
        / horizon as f64;
    let mae_naive = truth.iter().map(|t| (naive - t).abs()).sum::<f64>() / horizon as f64;
    assert!(
        mae_model < mae_naive / 3.0,
        "model MAE {mae_model:.3} should beat the naive mean-of-last-7 MAE {mae_naive:.3} clearly"
    );
    let covered = predicted
        .iter()
        .zip(truth)
        .filter(|(p, t)| p.1 <= **t && **t <= p.2)
        .count();
    assert!(
        covered >= horizon - 2,
        "interval covers {covered} of {horizon} actual days"
    );
    assert!(predicted.iter().all(|p| p.1 <= p.0 && p.0 <= p.2));

    // A noiseless linear series is extrapolated exactly.
    c.batch_execute(
        "UPDATE usage_analytics.agent_usage_detailed
            SET cost_usd = 5 + 0.25 * ((\"timestamp\" AT TIME ZONE 'UTC')::date - (current_date - 70))",
    )
    .unwrap();
    let predicted = forecast(&mut c, "{}");
    for (h, p) in predicted.iter().enumerate() {
        let expected = 5.0 + 0.25 * (70 + h) as f64;
        assert!((p.0 - expected).abs() < 1e-6, "day {h}: {} vs {expected}", p.0);
        assert!((p.2 - p.1) < 1e-6, "no residuals, no interval: {p:?}");
    }
    // The non-date path (usage_trend under row-level security) agrees.
    let by_user = forecast(&mut c, &format!("{{\"user_id\": \"{}\"}}", USERS[4]));
    assert_eq!(by_user, predicted);
    // No usage: zeros.
    let none = forecast(&mut c, &format!("{{\"user_id\": \"{}\"}}", USERS[5]));
    assert!(none.iter().all(|p| *p == (0.0, 0.0, 0.0)));
}

#[test]
fn recommendations_reprice_the_same_rows_exactly() {
    let db = budget_db("budget_recommend");
    let mut c = session(&db);
    let u = USERS[6];
    c.batch_execute(&format!(
        "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens, output_tokens)
         SELECT '{u}', 'writer-bot', 'openai', 'gpt-4o', 100 + g * 37, 20 + g * 11 FROM generate_series(1, 40) g;
         INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens, output_tokens)
         SELECT '{u}', 'writer-bot', 'anthropic', 'claude-3-haiku', 500, 50 FROM generate_series(1, 5);
         INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\")
         VALUES ('{u}', 'old-bot', 'openai', 'gpt-4o', 1000, 1000, now() - interval '40 days');
         -- An economy model that has no price: never suggested, even when listed.
         INSERT INTO usage_analytics.model_tiers VALUES ('openai', 'gpt-unpriced-nano', 'economy');"
    ))
    .unwrap();
    let rows = text_rows(
        &mut c,
        "SELECT agent_id, provider, current_model, suggested_model, requests::text, current_cost_usd::text,
                suggested_cost_usd::text, savings_usd::text, reason
           FROM usage_analytics.cost_recommendations()",
    );
    assert_eq!(
        rows.len(),
        1,
        "gpt-4o only (haiku is the cheapest anthropic model; old-bot is outside the lookback): {rows:?}"
    );
    let r = &rows[0];
    assert_eq!(r[0].as_deref(), Some("writer-bot"));
    assert_eq!(r[3].as_deref(), Some("gpt-4o-mini"));
    assert_eq!(r[4].as_deref(), Some("40"));
    let recomputed = text_rows(
        &mut c,
        "SELECT sum(usage_analytics.calculate_cost('openai', 'gpt-4o', input_tokens, output_tokens))::text,
                sum(usage_analytics.calculate_cost('openai', 'gpt-4o-mini', input_tokens, output_tokens))::text,
                (sum(usage_analytics.calculate_cost('openai', 'gpt-4o', input_tokens, output_tokens))
                 - sum(usage_analytics.calculate_cost('openai', 'gpt-4o-mini', input_tokens, output_tokens)))::text
           FROM usage_analytics.agent_usage_detailed
          WHERE agent_id = 'writer-bot' AND model = 'gpt-4o'",
    );
    assert_eq!(
        r[5..8].to_vec(),
        recomputed[0],
        "current, suggested and savings recomputed from the rows"
    );
    assert!(r[8].as_deref().unwrap().contains("economy"), "{:?}", r[8]);

    // Token classes count on both sides: cache reads and reasoning at each
    // model's own prices, not as plain input and output.
    c.batch_execute(&format!(
        "INSERT INTO usage_analytics.agent_usage_detailed
                (user_id, agent_id, provider, model, input_tokens, output_tokens, cache_read_tokens, reasoning_tokens)
         SELECT '{u}', 'cache-bot', 'openai', 'gpt-4o', 10000 + g, 2000, 8000, 500 FROM generate_series(1, 7) g"
    ))
    .unwrap();
    let cached = text_rows(
        &mut c,
        "SELECT suggested_model, current_cost_usd::text, suggested_cost_usd::text
           FROM usage_analytics.cost_recommendations('{\"agent_id\": \"cache-bot\"}')",
    );
    let by_classes = text_rows(
        &mut c,
        "SELECT sum(usage_analytics.calculate_cost('openai', m, jsonb_build_object(
                    'input_tokens', input_tokens, 'output_tokens', output_tokens,
                    'cache_read_tokens', cache_read_tokens, 'reasoning_tokens', reasoning_tokens)))::text
           FROM usage_analytics.agent_usage_detailed, (VALUES (1, 'gpt-4o'), (2, 'gpt-4o-mini')) v(k, m)
          WHERE agent_id = 'cache-bot' GROUP BY k ORDER BY k",
    );
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(cached[0][0].as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        cached[0][1..].to_vec(),
        vec![by_classes[0][0].clone(), by_classes[1][0].clone()],
        "priced with the cache reads at the cached price"
    );
    let plain = scalar(
        &mut c,
        "SELECT sum(usage_analytics.calculate_cost('openai', 'gpt-4o-mini', input_tokens, output_tokens))::text
           FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'cache-bot'",
    );
    assert_ne!(cached[0][2], plain, "plain input/output would overstate it");

    // Filters apply, and a longer lookback brings old-bot in.
    let old = text_rows(
        &mut c,
        "SELECT suggested_model, savings_usd::text FROM usage_analytics.cost_recommendations('{\"agent_id\": \"old-bot\"}', '60 days')",
    );
    assert_eq!(old.len(), 1);
    assert_eq!(old[0][0].as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        num(
            &mut c,
            "SELECT count(*) FROM usage_analytics.cost_recommendations('{\"provider\": \"anthropic\"}')"
        ),
        0.0
    );
}

/// Readers see only budgets scoped to their own user; the monitor reads the
/// exporter's gauges and nothing else.
#[test]
fn readers_see_their_own_budgets_and_monitors_the_gauges() {
    let db = budget_db("budget_security");
    let mut c = session(&db);
    let (reader, monitor) = (format!("{db}_reader"), format!("{db}_monitor"));
    c.batch_execute(&format!(
        "CREATE ROLE {reader} LOGIN; GRANT usage_analytics_reader TO {reader};
         CREATE ROLE {monitor} LOGIN; GRANT usage_analytics_monitor TO {monitor};
         INSERT INTO usage_analytics.user_role_map VALUES ('{reader}', '{u0}');
         SELECT usage_analytics.set_budget('mine', '{{\"user_id\": \"{u0}\"}}', 'day', 1);
         SELECT usage_analytics.set_budget('theirs', '{{\"user_id\": \"{u1}\"}}', 'day', 1);
         SELECT usage_analytics.set_budget('global', '{{}}', 'day', 1);",
        u0 = USERS[0],
        u1 = USERS[1]
    ))
    .unwrap();
    track(&mut c, USERS[0], "{}").unwrap();
    let mut r = cluster().connect_as(&db, &reader);
    assert_eq!(
        text_rows(
            &mut r,
            "SELECT name, spent_usd::text FROM usage_analytics.budget_status()"
        ),
        vec![vec![Some("mine".to_string()), Some(GPT4O_1K_1K.to_string())]]
    );
    let (code, _) = error_of(&mut r, "SELECT * FROM usage_analytics.budgets");
    assert_eq!(code, "42501");
    // Recommendations run as the caller: a reader gets those for its own rows.
    let recommend = "SELECT agent_id, current_model, suggested_model, savings_usd::text
                       FROM usage_analytics.cost_recommendations(FILTER) ORDER BY 1, 2";
    let own = text_rows(&mut r, &recommend.replace("FILTER", ""));
    assert!(!own.is_empty(), "a gpt-4o row has a cheaper economy model");
    assert_eq!(
        own,
        text_rows(
            &mut c,
            &recommend.replace("FILTER", &format!("'{{\"user_id\": \"{}\"}}'", USERS[0]))
        )
    );
    let (code, _) = error_of(&mut r, "SELECT * FROM usage_analytics.metrics_budgets()");
    assert_eq!(code, "42501");
    let mut m = cluster().connect_as(&db, &monitor);
    let gauges = text_rows(
        &mut m,
        "SELECT budget, limit_usd::text, spent_usd::text, utilization_ratio::text FROM usage_analytics.metrics_budgets()",
    );
    assert_eq!(gauges.len(), 3);
    assert_eq!(gauges[1][0].as_deref(), Some("mine"));
    assert_eq!(gauges[1][3].as_deref(), Some("0.012500"));
    let (code, _) = error_of(&mut m, "SELECT * FROM usage_analytics.budget_events");
    assert_eq!(code, "42501");
}
