//! Daily rollups, summary, trend and pg_cron scheduling (issue: rollups).

use integration_tests::{cluster, db_error, load_sample, scalar, text_rows, CRON_DB, USERS};
use postgres::Client;

/// Rows of `a` EXCEPT `b` plus `b` EXCEPT `a`: empty when they are equal.
fn symmetric_difference(client: &mut Client, a: &str, b: &str) -> Vec<Vec<Option<String>>> {
    text_rows(
        client,
        &format!("(({a}) EXCEPT ALL ({b})) UNION ALL (({b}) EXCEPT ALL ({a}))"),
    )
}

const METRICS_FROM_ROLLUP: &str = "SELECT user_id, agent_id, framework, provider, date, total_requests,
        successful_requests, failed_requests, total_input_tokens, total_output_tokens, total_tokens,
        total_cost_usd, avg_response_time_ms, unpriced_requests, popular_actions
   FROM usage_analytics.agent_performance_metrics";

const METRICS_FROM_RAW: &str = "WITH d AS (SELECT u.*, (\"timestamp\" AT TIME ZONE 'UTC')::date AS day
                                        FROM usage_analytics.agent_usage_detailed u)
 SELECT user_id, agent_id, framework, provider, day, count(*)::int, count(*) FILTER (WHERE success)::int,
        count(*) FILTER (WHERE NOT success)::int, sum(input_tokens), sum(output_tokens),
        sum(input_tokens) + sum(output_tokens), coalesce(sum(cost_usd), 0), round(avg(response_time_ms))::int,
        count(*) FILTER (WHERE cost_usd IS NULL)::int,
        (SELECT jsonb_object_agg(action, n) FROM (
            SELECT coalesce(x.request_metadata->>'action', x.message_type) AS action, count(*) AS n
              FROM d x
             WHERE x.user_id = d.user_id AND x.agent_id = d.agent_id AND x.day = d.day
               AND x.framework IS NOT DISTINCT FROM d.framework AND x.provider IS NOT DISTINCT FROM d.provider
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5) a)
   FROM d
  GROUP BY user_id, agent_id, framework, provider, day";

const SYSTEM_FROM_ROLLUP: &str = "SELECT date, total_users, active_users, new_users, total_requests,
        successful_requests, failed_requests, total_input_tokens, total_output_tokens, total_cost_usd,
        success_rate, unpriced_requests, avg_response_time_ms
   FROM usage_analytics.system_analytics";

const SYSTEM_FROM_RAW: &str = "WITH d AS (SELECT u.*, (\"timestamp\" AT TIME ZONE 'UTC')::date AS day
                                        FROM usage_analytics.agent_usage_detailed u),
        firsts AS (SELECT user_id, min(day) AS first_day FROM d GROUP BY 1)
 SELECT day, (SELECT count(*) FROM firsts f WHERE f.first_day <= d.day)::int,
        count(DISTINCT user_id)::int,
        (SELECT count(*) FROM firsts f WHERE f.first_day = d.day)::int,
        count(*)::int, count(*) FILTER (WHERE success)::int, count(*) FILTER (WHERE NOT success)::int,
        sum(input_tokens), sum(output_tokens), coalesce(sum(cost_usd), 0),
        round(100.0 * count(*) FILTER (WHERE success) / count(*), 2),
        count(*) FILTER (WHERE cost_usd IS NULL)::int, round(avg(response_time_ms))::int
   FROM d GROUP BY day";

fn snapshot(client: &mut Client) -> Vec<Vec<Option<String>>> {
    let mut rows = text_rows(client, &format!("{METRICS_FROM_ROLLUP} ORDER BY 1, 2, 3, 4, 5"));
    rows.extend(text_rows(
        client,
        "SELECT date::text, cost_by_provider::text, popular_agents::text, framework_usage::text,
                provider_usage::text, top_users_by_usage::text
           FROM usage_analytics.system_analytics ORDER BY date",
    ));
    rows
}

#[test]
fn rollups_equal_independent_group_bys_and_rerun_identically() {
    let c = cluster();
    let db = c.fresh_db("rollups");
    let mut client = c.connect(&db);
    load_sample(&mut client, 3000, 3);
    let written = scalar(
        &mut client,
        "SELECT usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 2, (now() AT TIME ZONE 'UTC')::date)",
    )
    .unwrap();
    assert!(written.parse::<i32>().unwrap() > 3);
    assert_eq!(
        symmetric_difference(&mut client, METRICS_FROM_ROLLUP, METRICS_FROM_RAW),
        Vec::<Vec<_>>::new()
    );
    assert_eq!(
        symmetric_difference(&mut client, SYSTEM_FROM_ROLLUP, SYSTEM_FROM_RAW),
        Vec::<Vec<_>>::new()
    );

    let before = snapshot(&mut client);
    client
        .batch_execute("SELECT usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date - 1)")
        .unwrap();
    assert_eq!(snapshot(&mut client), before, "a re-run changed the rollups");

    // A late row for yesterday is picked up by the next run.
    client
        .batch_execute(&format!(
            "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, framework, provider, message_type,
                    input_tokens, output_tokens, response_time_ms, \"timestamp\", model)
             VALUES ('{}', 'late-agent', 'langchain', 'openai', 'chat', 10, 10, 100,
                     date_trunc('day', now()) - interval '12 hours', 'gpt-4o');
             SELECT usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date - 1);",
            USERS[0]
        ))
        .unwrap();
    assert_eq!(
        symmetric_difference(&mut client, METRICS_FROM_ROLLUP, METRICS_FROM_RAW),
        Vec::<Vec<_>>::new()
    );
    assert_eq!(
        symmetric_difference(&mut client, SYSTEM_FROM_ROLLUP, SYSTEM_FROM_RAW),
        Vec::<Vec<_>>::new()
    );
    let err = client
        .query(
            "SELECT usage_analytics.rollup_range('2024-02-01', '2024-01-01')",
            &[],
        )
        .unwrap_err();
    assert!(db_error(&err).1.contains("before"));
}

/// popular_actions through parallel workers: the aggregate's partial states
/// are serialized, sent to the leader and combined there, and rank the
/// actions as the SQL ranking does (byte order on equal counts). The rollup
/// tests above cover its serial use; a day this small is never read in
/// parallel by rollup_daily, so the aggregate is run directly.
#[test]
fn popular_actions_through_parallel_workers_equal_a_sql_ranking() {
    let c = cluster();
    let db = c.fresh_db("top_actions_parallel");
    let mut client = c.connect(&db);
    load_sample(&mut client, 3000, 3);
    client
        .batch_execute(
            "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
             SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
             SET enable_sort = off;",
        )
        .unwrap();
    let action = "coalesce(request_metadata->>'action', message_type, 'unknown')";
    let aggregate = format!(
        "SELECT user_id, agent_id, framework, provider, usage_analytics._top_actions({action})
           FROM usage_analytics.agent_usage_detailed GROUP BY 1, 2, 3, 4"
    );
    let plan = format!("{:?}", text_rows(&mut client, &format!("EXPLAIN {aggregate}")));
    assert!(
        plan.contains("Partial") && plan.contains("Gather"),
        "not a parallel aggregate: {plan}"
    );
    let ranking = format!(
        "SELECT user_id, agent_id, framework, provider,
                (SELECT jsonb_object_agg(a, n) FROM (
                     SELECT {action} AS a, count(*) AS n FROM usage_analytics.agent_usage_detailed x
                      WHERE x.user_id = d.user_id AND x.agent_id = d.agent_id
                        AND x.framework IS NOT DISTINCT FROM d.framework
                        AND x.provider IS NOT DISTINCT FROM d.provider
                      GROUP BY 1 ORDER BY 2 DESC, {action} COLLATE \"C\" LIMIT 5) r)
           FROM usage_analytics.agent_usage_detailed d GROUP BY 1, 2, 3, 4"
    );
    assert_eq!(
        symmetric_difference(&mut client, &aggregate, &ranking),
        Vec::<Vec<_>>::new()
    );
}

/// The summary computed straight from raw rows: the shared oracle
/// (tests/fixtures/raw_summary.sql, also the benchmark's baseline).
fn raw_summary(client: &mut Client, clause: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/raw_summary.sql");
    let sql = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("{where}", clause);
    client.query_one(&sql, &[]).unwrap().get(0)
}

fn summary(client: &mut Client, filters: &str) -> serde_json::Value {
    client
        .query_one(
            &format!("SELECT usage_analytics.get_usage_summary($${filters}$$)"),
            &[],
        )
        .unwrap()
        .get(0)
}

/// jsonb compares numbers by value (6425 = 6425.000).
fn same_json(client: &mut Client, a: &serde_json::Value, b: &serde_json::Value) -> bool {
    client
        .query_one("SELECT $1::jsonb = $2::jsonb", &[a, b])
        .unwrap()
        .get(0)
}

fn trend_matches_raw(client: &mut Client, granularity: &str, filters: &str, clause: &str) {
    let got = format!(
        "SELECT period_start, requests, successful_requests, input_tokens, output_tokens, cost_usd,
                avg_response_time_ms FROM usage_analytics.usage_trend('{granularity}', $${filters}$$)"
    );
    let raw = format!(
        "SELECT date_trunc('{granularity}', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*),
                count(*) FILTER (WHERE success), sum(input_tokens)::bigint, sum(output_tokens)::bigint,
                coalesce(sum(cost_usd), 0), avg(response_time_ms)
           FROM usage_analytics.agent_usage_detailed WHERE {clause} GROUP BY 1"
    );
    assert_eq!(
        symmetric_difference(client, &got, &raw),
        Vec::<Vec<_>>::new(),
        "trend {granularity} {filters}"
    );
}

#[test]
fn summary_and_trend_equal_raw_in_every_rollup_state() {
    let c = cluster();
    let db = c.fresh_db("summary");
    let mut client = c.connect(&db);
    load_sample(&mut client, 4000, 5);
    let day = |offset: i64| format!("((now() AT TIME ZONE 'UTC')::date - {offset})");
    let d2 = scalar(&mut client, &format!("SELECT {}::text", day(2))).unwrap();
    let d1 = scalar(&mut client, &format!("SELECT {}::text", day(1))).unwrap();
    let cases: Vec<(String, String)> = vec![
        ("{}".into(), "true".into()),
        (format!("{{\"start_date\": \"{d2}\"}}"), format!("\"timestamp\" >= '{d2}'::date::timestamp AT TIME ZONE 'UTC'")),
        (
            format!("{{\"start_date\": \"{d2}\", \"end_date\": \"{d1}\"}}"),
            format!("\"timestamp\" >= '{d2}'::date::timestamp AT TIME ZONE 'UTC' AND \"timestamp\" < ('{d1}'::date + 1)::timestamp AT TIME ZONE 'UTC'"),
        ),
        (
            format!("{{\"start_date\": \"{d2}T06:30:00Z\", \"end_date\": \"{d1}T18:00:00Z\"}}"),
            format!("\"timestamp\" >= '{d2} 06:30:00+00' AND \"timestamp\" < '{d1} 18:00:00+00'"),
        ),
        (format!("{{\"user_id\": \"{}\"}}", USERS[1]), format!("user_id = '{}'", USERS[1])),
        (r#"{"provider": "anthropic", "framework": "autogen"}"#.into(), "provider = 'anthropic' AND framework = 'autogen'".into()),
        (r#"{"agent_id": "coder"}"#.into(), "agent_id = 'coder'".into()),
        (r#"{"model": "gpt-4o", "success": true}"#.into(), "model = 'gpt-4o' AND success".into()),
        (r#"{"message_type": "chat", "search": "agent 3"}"#.into(),
         "message_type = 'chat' AND (agent_id ILIKE '%agent 3%' OR agent_name ILIKE '%agent 3%' OR model ILIKE '%agent 3%' OR error_message ILIKE '%agent 3%')".into()),
    ];
    let check_all = |client: &mut Client, state: &str| {
        for (filters, clause) in &cases {
            let got = summary(client, filters);
            let expected = raw_summary(client, clause);
            assert!(
                same_json(client, &got, &expected),
                "{state}: summary {filters}\n got {got}\n raw {expected}"
            );
            for granularity in ["day", "week", "month"] {
                trend_matches_raw(client, granularity, filters, clause);
            }
        }
    };
    check_all(&mut client, "no rollups");
    client
        .batch_execute(&format!(
            "SELECT usage_analytics.rollup_range({}, {})",
            day(4),
            day(0)
        ))
        .unwrap();
    let fresh = scalar(
        &mut client,
        &format!(
            "SELECT cardinality(usage_analytics._fresh_rollup_days({}, {}))",
            day(4),
            day(0)
        ),
    );
    assert_eq!(
        fresh.as_deref(),
        Some("5"),
        "all five days should be readable from the rollups"
    );
    check_all(&mut client, "rolled up");
    // New rows after the last rollup's latest timestamp: today is read as its
    // rollup plus only those rows (partially fresh), and stays exact.
    client
        .batch_execute(&format!(
            "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, framework, provider, \"timestamp\",
                    input_tokens, response_time_ms, success, model)
             SELECT ('{}'::uuid), 'tail-agent', 'langchain', 'openai',
                    date_trunc('day', now()) + interval '23:59:59.999', g, 100 * g, g % 2 = 0, 'gpt-4o'
               FROM generate_series(1, 5) g",
            USERS[6]
        ))
        .unwrap();
    let partial = scalar(
        &mut client,
        "SELECT array_to_string(partial, ',') FROM usage_analytics._usage_fact_plan('{}')",
    );
    let today = scalar(&mut client, "SELECT ((now() AT TIME ZONE 'UTC')::date)::text");
    assert_eq!(partial, today, "today should be read as rollup + tail");
    check_all(&mut client, "partially fresh today");
    // Late rows make their day stale: it is read from raw rows until re-rolled.
    load_sample(&mut client, 300, 3);
    check_all(&mut client, "stale rollups");
    client
        .batch_execute(&format!("SELECT usage_analytics.rollup_daily({})", day(1)))
        .unwrap();
    check_all(&mut client, "partly re-rolled");
}

#[test]
fn trend_respects_iso_weeks_and_month_boundaries() {
    let c = cluster();
    let db = c.fresh_db("trend");
    let mut client = c.connect(&db);
    // 2024-12-29 is a Sunday, 2024-12-30 a Monday; 2025-01-01 starts a month.
    client
        .batch_execute(
            "SELECT usage_analytics.ensure_partitions(0, 0);
             INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, framework, provider, \"timestamp\", input_tokens)
             SELECT gen_random_uuid(), 'a', 'langchain', 'openai', t, 10
               FROM unnest(ARRAY['2024-12-29 23:59:59.999999+00', '2024-12-30 00:00:00+00', '2024-12-31 23:00:00+00',
                                 '2025-01-01 00:00:00+00', '2025-01-05 23:59:59+00', '2025-01-06 00:00:00+00']::timestamptz[]) t;",
        )
        .unwrap();
    let periods = |client: &mut Client, granularity: &str| -> Vec<(String, String)> {
        text_rows(
            client,
            &format!(
                "SELECT period_start::date::text, requests FROM usage_analytics.usage_trend('{granularity}')"
            ),
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
    };
    let weeks = periods(&mut client, "week");
    assert_eq!(
        weeks,
        vec![
            ("2024-12-23".into(), "1".into()),
            ("2024-12-30".into(), "4".into()),
            ("2025-01-06".into(), "1".into())
        ]
    );
    assert_eq!(
        periods(&mut client, "Month"),
        vec![
            ("2024-12-01".into(), "3".into()),
            ("2025-01-01".into(), "3".into())
        ]
    );
    client
        .batch_execute("SELECT usage_analytics.rollup_range('2024-12-29', '2025-01-06')")
        .unwrap();
    let after = periods(&mut client, "week");
    assert_eq!(after, weeks, "rolled-up days changed the trend");
}

#[test]
fn concurrent_rollups_of_the_same_day_are_safe() {
    let c = cluster();
    let db = c.fresh_db("concurrent");
    let mut client = c.connect(&db);
    load_sample(&mut client, 2000, 1);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut session = cluster().connect(&db);
                for _ in 0..3 {
                    session
                        .batch_execute(
                            "SELECT usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date)",
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        symmetric_difference(&mut client, METRICS_FROM_ROLLUP, METRICS_FROM_RAW),
        Vec::<Vec<_>>::new()
    );
    assert_eq!(
        scalar(
            &mut client,
            "SELECT count(*) FROM usage_analytics.system_analytics"
        )
        .as_deref(),
        Some("1")
    );
}

#[test]
fn schedule_rollups_registers_one_named_pg_cron_job() {
    let c = cluster();
    // pg_cron lives in cron.database_name only.
    let mut cron = c.connect(CRON_DB);
    cron.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_cron; CREATE EXTENSION IF NOT EXISTS pg_usage_analytics CASCADE;",
    )
    .unwrap();
    let first: i64 = cron
        .query_one("SELECT usage_analytics.schedule_rollups()", &[])
        .unwrap()
        .get(0);
    let second: i64 = cron
        .query_one("SELECT usage_analytics.schedule_rollups('*/5 * * * *')", &[])
        .unwrap()
        .get(0);
    assert_eq!(first, second, "a second call must replace the job, not add one");
    let jobs = text_rows(
        &mut cron,
        "SELECT schedule, command FROM cron.job WHERE jobname = 'usage_analytics_rollups'",
    );
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0][0].as_deref(), Some("*/5 * * * *"));
    assert!(jobs[0][1]
        .as_deref()
        .unwrap()
        .contains("CALL usage_analytics.run_maintenance()"));
    // The job's command works on its own, and so does the one-transaction form.
    cron.batch_execute("CALL usage_analytics.run_maintenance()")
        .unwrap();
    cron.batch_execute("SELECT usage_analytics.run_scheduled_maintenance()")
        .unwrap();
    let checks = scalar(
        &mut cron,
        "SELECT string_agg(check_name || ': ' || detail, '; ') FROM usage_analytics.self_test() WHERE NOT ok",
    );
    assert_eq!(checks, None);
    let audited = scalar(
        &mut cron,
        "SELECT count(*) FROM usage_analytics.admin_audit_log WHERE action = 'schedule_rollups'",
    );
    assert_eq!(audited.as_deref(), Some("2"));

    // Elsewhere: a clear error naming pg_cron.
    let db = c.fresh_db("nocron");
    let mut client = c.connect(&db);
    let err = client
        .query("SELECT usage_analytics.schedule_rollups()", &[])
        .unwrap_err();
    assert!(db_error(&err).1.contains("pg_cron is not installed"));
}
