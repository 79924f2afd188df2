//! Faults (issue: reliability): the server stopped under writers, and a
//! backend killed in the middle of a rollup.

use integration_tests::{cluster, load_sample, scalar, text_rows, Cluster, USERS};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn committed_rows_survive_a_stop_during_writes() {
    let own = Cluster::init("stopwrites");
    // Durable settings for this one: the shared clusters trade them for speed.
    let conf = own.data_dir().join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n");
    std::fs::write(&conf, text).unwrap();
    own.pg_ctl_start();
    let db = own.fresh_db("stopwrites");
    let url = own.url(&db, "postgres");
    for mode in ["fast", "immediate"] {
        let committed = Arc::new(Mutex::new(Vec::<uuid::Uuid>::new()));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (url, committed) = (url.clone(), committed.clone());
                std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    // Write until the server goes away; remember what committed.
                    loop {
                        let result = client.query_one(
                            "SELECT usage_analytics.track_detailed_usage($1, 'fault-writer', NULL, 'langchain',
                                    'openai', 'chat', 10, 10, 100, true)",
                            &[&uuid::Uuid::parse_str(USERS[w]).unwrap()],
                        );
                        match result {
                            Ok(row) => committed.lock().unwrap().push(row.get(0)),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        own.pg_ctl_stop(mode);
        for w in writers {
            w.join().unwrap();
        }
        own.pg_ctl_start();
        let ids = committed.lock().unwrap().clone();
        assert!(ids.len() > 10, "{mode}: writers barely wrote");
        let mut client = own.connect(&db);
        let found: i64 = client
            .query_one(
                "SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE id = ANY($1)",
                &[&ids],
            )
            .unwrap()
            .get(0);
        assert_eq!(found as usize, ids.len(), "{mode} stop lost committed rows");
        // Counters stayed transactional with the rows through the crash.
        let (rows, counted) = (
            scalar(
                &mut client,
                "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
            )
            .unwrap(),
            scalar(
                &mut client,
                "SELECT sum(requests)::text FROM usage_analytics.metrics_usage_counters()",
            )
            .unwrap(),
        );
        assert_eq!(rows, counted, "{mode}: counters differ from rows after restart");
    }
}

#[test]
fn a_backend_killed_mid_rollup_leaves_the_rollups_as_they_were() {
    let c = cluster();
    let db = c.fresh_db("killrollup");
    let mut client = c.connect(&db);
    load_sample(&mut client, 3000, 1);
    client
        .batch_execute("SELECT usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date)")
        .unwrap();
    let snapshot = "SELECT (SELECT string_agg(concat_ws('/', user_id, agent_id, total_requests, total_cost_usd), ',' ORDER BY user_id, agent_id, framework, provider)
                              FROM usage_analytics.agent_performance_metrics),
                           (SELECT string_agg(concat_ws('/', date, total_requests, total_cost_usd), ',') FROM usage_analytics.system_analytics),
                           (SELECT string_agg(concat_ws('/', day, source_requests), ',') FROM usage_analytics.rollup_state)";
    let before = text_rows(&mut client, snapshot);
    // Many more rows today, so the next rollup differs and takes a while.
    load_sample(&mut client, 200_000, 1);

    let victim_pid: i32 = {
        let mut victim = c.connect(&db);
        let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let handle = std::thread::spawn(move || {
            victim.batch_execute(
                "SET max_parallel_workers_per_gather = 0;
                 SELECT usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date), pg_sleep(30);",
            )
        });
        // Kill it once it is inside rollup_daily (it has begun writing: it
        // holds its transaction id, taken when it locks the day's row).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let locked = scalar(
                &mut client,
                &format!("SELECT count(*) FROM pg_locks WHERE pid = {pid} AND locktype = 'transactionid'"),
            )
            .unwrap();
            if locked != "0" {
                break;
            }
            assert!(Instant::now() < deadline, "rollup never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        client
            .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
        assert!(handle.join().unwrap().is_err(), "the rollup was not interrupted");
        pid
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while scalar(
        &mut client,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {victim_pid}"),
    )
    .unwrap()
        != "0"
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        text_rows(&mut client, snapshot),
        before,
        "a killed rollup left partial results"
    );
    // And the next run completes normally.
    client
        .batch_execute("SELECT usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date)")
        .unwrap();
    assert_ne!(text_rows(&mut client, snapshot), before);
}
