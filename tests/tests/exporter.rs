//! The real exporter binary over HTTP against a real cluster (issue: exporter).

use integration_tests::{
    cluster, db_error, load_sample, scalar, text_rows, Cluster, Exporter, Exposition, USERS,
};
use postgres::Client;
use std::process::Command;
use std::time::{Duration, Instant};

/// A database with the extension and a least-privilege exporter login.
fn monitored_db(c: &Cluster, name: &str) -> (String, String) {
    let db = c.fresh_db(name);
    let role = format!("{db}_exporter");
    c.connect(&db)
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT usage_analytics_monitor TO {role};"
        ))
        .unwrap();
    let url = c.url(&db, &role);
    (db, url)
}

fn promtool_check(text: &str) {
    let path = std::env::temp_dir().join(format!("exposition-{}.prom", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", path.display()))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every counter equals the SQL truth over the usage table.
fn assert_counters_match(client: &mut Client, m: &Exposition) {
    let rows = text_rows(
        client,
        "SELECT coalesce(provider, ''), coalesce(framework, ''), agent_id, coalesce(model, lower(requested_model), ''),
                coalesce(message_type, ''), CASE WHEN success THEN 'success' ELSE 'error' END,
                count(*), sum(input_tokens), sum(output_tokens), coalesce(sum(cost_usd), 0)::float8
           FROM usage_analytics.agent_usage_detailed GROUP BY 1, 2, 3, 4, 5, 6",
    );
    assert!(!rows.is_empty());
    let total: f64 = rows
        .iter()
        .map(|r| r[6].as_deref().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(m.sum("ai_usage_requests_total", &[]), total, "total requests");
    for r in &rows {
        let v = |i: usize| r[i].as_deref().unwrap();
        let labels = [
            ("provider", v(0)),
            ("framework", v(1)),
            ("agent_id", v(2)),
            ("model", v(3)),
            ("message_type", v(4)),
            ("status", v(5)),
        ];
        assert_eq!(
            m.sum("ai_usage_requests_total", &labels),
            v(6).parse::<f64>().unwrap(),
            "{labels:?}"
        );
    }
    let tokens = |dir: &str, m: &Exposition| m.sum("ai_usage_tokens_total", &[("direction", dir)]);
    let sql_tokens = scalar(
        client,
        "SELECT sum(input_tokens)::text FROM usage_analytics.agent_usage_detailed",
    )
    .unwrap();
    assert_eq!(tokens("input", m), sql_tokens.parse::<f64>().unwrap());
    let sql_tokens = scalar(
        client,
        "SELECT sum(output_tokens)::text FROM usage_analytics.agent_usage_detailed",
    )
    .unwrap();
    assert_eq!(tokens("output", m), sql_tokens.parse::<f64>().unwrap());
    let cost: f64 = scalar(
        client,
        "SELECT coalesce(sum(cost_usd), 0)::float8::text FROM usage_analytics.agent_usage_detailed",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(
        (m.sum("ai_usage_cost_usd_total", &[]) - cost).abs() <= 1e-9 * cost.max(1.0),
        "cost"
    );
    let unpriced: f64 = scalar(
        client,
        "SELECT count(*) FILTER (WHERE cost_usd IS NULL) FROM usage_analytics.agent_usage_detailed",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert_eq!(m.sum("ai_usage_unpriced_requests_total", &[]), unpriced);
    let timed: f64 = scalar(
        client,
        "SELECT count(response_time_ms) FROM usage_analytics.agent_usage_detailed",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert_eq!(m.sum("ai_usage_response_time_seconds_count", &[]), timed);
    // Every bucket, against the rows, at the bounds the extension declares.
    for le in text_rows(
        client,
        "SELECT b::text FROM unnest(usage_analytics.metrics_response_time_bucket_bounds()) AS b",
    )
    .into_iter()
    .map(|row| row[0].clone().unwrap())
    {
        let within: f64 = scalar(
            client,
            &format!(
                "SELECT count(*) FILTER (WHERE response_time_ms <= 1000 * {le}::float8)
                   FROM usage_analytics.agent_usage_detailed"
            ),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert_eq!(
            m.sum("ai_usage_response_time_seconds_bucket", &[("le", le.as_str())]),
            within,
            "bucket le={le}"
        );
    }
    assert_eq!(
        m.sum("ai_usage_response_time_seconds_bucket", &[("le", "+Inf")]),
        timed
    );
}

#[test]
fn counters_equal_sql_truth_through_every_write_path() {
    let c = cluster();
    let (db, url) = monitored_db(c, "exporter_truth");
    let mut client = c.connect(&db);
    load_sample(&mut client, 3000, 3);
    let exporter = Exporter::start(&url, &[]);
    let m = exporter.metrics();
    promtool_check(&m.text);
    assert_eq!(m.value("ai_usage_exporter_up"), Some(1.0));
    assert_counters_match(&mut client, &m);
    assert_eq!(m.sum("ai_usage_active_users", &[("window", "30d")]), 8.0);

    // Concurrent writers, some rolled back, plus COPY.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = cluster().connect(&db);
                for i in 0..40 {
                    let sql = format!(
                        "BEGIN; SELECT usage_analytics.track_detailed_usage('{}', 'writer-{w}', NULL, 'autogen',
                                'anthropic', 'chat', {i}, 7, {}, {}, NULL, '{{}}', 'claude-3-haiku'); {}",
                        USERS[w],
                        100 + i * 50,
                        i % 5 != 0,
                        if i % 4 == 0 { "ROLLBACK;" } else { "COMMIT;" }
                    );
                    s.batch_execute(&sql).unwrap();
                }
            })
        })
        .collect();
    let mut copy = client
        .copy_in(
            "COPY usage_analytics.agent_usage_detailed (user_id, agent_id, framework, provider, model, input_tokens,
                  output_tokens, response_time_ms) FROM STDIN",
        )
        .unwrap();
    for i in 0..500 {
        std::io::Write::write_all(
            &mut copy,
            format!(
                "{}\tcopied\tlangchain\topenai\tgpt-4o-mini\t{i}\t3\t{}\n",
                USERS[7],
                i * 10
            )
            .as_bytes(),
        )
        .unwrap();
    }
    copy.finish().unwrap();
    for w in writers {
        w.join().unwrap();
    }
    let m = exporter.metrics();
    assert_counters_match(&mut client, &m);
    assert_eq!(
        m.sum("ai_usage_requests_total", &[("agent_id", "writer-0")]),
        30.0,
        "rolled-back rows counted"
    );
    // Deleting rows (retention) never makes a counter go down.
    let before = m.sum("ai_usage_requests_total", &[]);
    client
        .batch_execute("DELETE FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'copied'")
        .unwrap();
    assert_eq!(exporter.metrics().sum("ai_usage_requests_total", &[]), before);
}

#[test]
fn hostile_label_values_make_valid_exposition() {
    let c = cluster();
    let (db, url) = monitored_db(c, "exporter_hostile");
    let mut client = c.connect(&db);
    // Everything the insert checks let through (no control characters, at
    // most 200 characters); newlines and 10,000-character ids are refused.
    let hostile = [
        "quote\"d".to_string(),
        "back\\slash".to_string(),
        "emoji 🚀🛳️ ünïcødé".to_string(),
        "a".repeat(200),
        "brace} and {x=\"y\"}".to_string(),
        "# HELP not_a_comment".to_string(),
    ];
    for refused in ["new\nline".to_string(), "a".repeat(10_000)] {
        let err = client
            .execute(
                "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, framework, model)
                 VALUES (gen_random_uuid(), $1, 'openai', 'langchain', 'gpt-4o')",
                &[&refused],
            )
            .expect_err("refused by the insert checks");
        assert_eq!(db_error(&err).0, "22023", "{:.40}", refused);
    }
    for agent in &hostile {
        client
            .execute(
                "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, framework, model)
                 VALUES (gen_random_uuid(), $1, 'openai', 'langchain', 'gpt-4o')",
                &[agent],
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let exporter = Exporter::start(&url, &[]);
    let m = exporter.metrics();
    promtool_check(&m.text);
    for agent in &hostile {
        assert_eq!(
            m.sum("ai_usage_requests_total", &[("agent_id", agent)]),
            1.0,
            "{:.40}",
            agent
        );
    }
}

#[test]
fn golden_exposition_for_a_fixed_data_set() {
    let c = cluster();
    let (db, url) = monitored_db(c, "exporter_golden");
    let mut client = c.connect(&db);
    client
        .batch_execute(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, response_time_ms,
                  success, model, \"timestamp\")
             VALUES ('a0000000-0000-4000-8000-000000000001', 'research', 'langchain', 'openai', 'chat', 1000, 500, 80, true, 'gpt-4o-2024-08-06', now()),
                    ('a0000000-0000-4000-8000-000000000001', 'research', 'langchain', 'openai', 'chat', 10, 5, 1500, false, 'gpt-4o', now()),
                    ('a0000000-0000-4000-8000-000000000002', 'writer', 'autogen', 'anthropic', 'tool_execution', 2000, 100, 45000, true, 'claude-3-haiku', now()),
                    ('a0000000-0000-4000-8000-000000000003', 'search', 'perplexity', 'perplexity', 'chat', 300, 300, NULL, true, NULL, now()),
                    ('a0000000-0000-4000-8000-000000000003', 'search', 'hybrid', 'google', 'chat', 5, 5, 70000, true, 'gemini-exp-1206', now());",
        )
        .unwrap();
    let exporter = Exporter::start(&url, &[]);
    // Self-metrics and the rollup timestamp vary from run to run.
    let stable: String = exporter
        .get("/metrics")
        .1
        .lines()
        .filter(|l| {
            !l.contains("ai_usage_exporter_scrape_duration_seconds")
                && !l.contains("ai_usage_rollup_last_success")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/exporter_golden.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &stable).unwrap();
    }
    let expected = std::fs::read_to_string(&golden)
        .expect("fixtures/exporter_golden.prom (create it with UPDATE_GOLDEN=1 cargo test -p integration-tests --test exporter golden)");
    assert_eq!(
        stable, expected,
        "exposition changed; review and re-run with UPDATE_GOLDEN=1 if intended"
    );
}

#[test]
fn database_stop_and_restart_and_exporter_kill() {
    // A cluster of its own, so stopping it disturbs no other test.
    let own = Cluster::init("faults");
    own.pg_ctl_start();
    let (db, url) = monitored_db(&own, "exporter_faults");
    let mut client = own.connect(&db);
    load_sample(&mut client, 500, 2);
    let mut exporter = Exporter::start(&url, &["--query-timeout", "800ms"]);
    assert_eq!(exporter.metrics().value("ai_usage_exporter_up"), Some(1.0));
    assert_eq!(exporter.get("/health").0, 200);
    drop(client);

    for mode in ["fast", "immediate"] {
        own.pg_ctl_stop(mode);
        let started = Instant::now();
        let m = exporter.metrics();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "/metrics hung while the database was down"
        );
        assert_eq!(m.value("ai_usage_exporter_up"), Some(0.0), "{mode}");
        assert_eq!(
            m.sum("ai_usage_requests_total", &[]),
            0.0,
            "stale counters passed off as fresh"
        );
        assert!(m.value("ai_usage_exporter_scrape_errors_total").unwrap_or(0.0) >= 1.0);
        assert_eq!(exporter.get("/health").0, 503);
        own.pg_ctl_start();
        let deadline = Instant::now() + Duration::from_secs(30);
        while exporter.metrics().value("ai_usage_exporter_up") != Some(1.0) {
            assert!(
                Instant::now() < deadline,
                "exporter did not reconnect after {mode} stop"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(exporter.get("/health").0, 200);
    }
    let mut client = own.connect(&db);
    assert_counters_match(&mut client, &exporter.metrics());

    // SIGKILL and restart: the counters live in the database, so they are exact again.
    exporter.child.kill().unwrap();
    exporter.child.wait().unwrap();
    let exporter = Exporter::start(&url, &[]);
    assert_counters_match(&mut client, &exporter.metrics());
}

#[test]
fn the_exporter_login_can_read_nothing_else() {
    let c = cluster();
    let (db, _) = monitored_db(c, "exporter_privs");
    let role = format!("{db}_exporter");
    let mut client = c.connect_as(&db, &role);
    for sql in [
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
        "SELECT count(*) FROM usage_analytics.get_usage_records()",
        "SELECT count(*) FROM usage_analytics.agent_performance_metrics",
        "SELECT count(*) FROM usage_analytics.usage_counters",
    ] {
        assert!(
            client.batch_execute(sql).is_err(),
            "exporter role could run {sql}"
        );
    }
    client
        .batch_execute("SELECT * FROM usage_analytics.metrics_usage_counters()")
        .unwrap();
}

#[test]
fn a_locked_table_or_a_scrape_storm_neither_hangs_nor_piles_up_connections() {
    let c = cluster();
    let (db, url) = monitored_db(c, "exporter_storm");
    let mut client = c.connect(&db);
    load_sample(&mut client, 300, 1);
    let exporter = Exporter::start(&url, &["--query-timeout", "500ms", "--pool-size", "2"]);
    assert_eq!(exporter.metrics().value("ai_usage_exporter_up"), Some(1.0));

    // A lock held on the counters: the scrape answers within its timeout, up 0.
    let mut locker = c.connect(&db);
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE usage_analytics.usage_counters IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let started = Instant::now();
    let m = exporter.metrics();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "scrape hung behind a lock: {:?}",
        started.elapsed()
    );
    assert_eq!(m.value("ai_usage_exporter_up"), Some(0.0));
    tx.rollback().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while exporter.metrics().value("ai_usage_exporter_up") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "no recovery after the lock was released"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // 60 concurrent scrapes: all answered, at most pool-size connections.
    let scrapes: Vec<_> = (0..60)
        .map(|_| {
            let addr = exporter.addr.clone();
            std::thread::spawn(move || {
                integration_tests::http_get(&addr, "/metrics", Duration::from_secs(10)).map(|(s, _)| s)
            })
        })
        .collect();
    let mut peak = 0;
    let role = format!("{db}_exporter");
    for _ in 0..20 {
        let n: i64 = scalar(
            &mut client,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"),
        )
        .unwrap()
        .parse()
        .unwrap();
        peak = peak.max(n);
        std::thread::sleep(Duration::from_millis(10));
    }
    for s in scrapes {
        assert_eq!(s.join().unwrap().unwrap(), 200);
    }
    assert!(peak <= 2, "{peak} exporter connections for a pool of 2");
}
