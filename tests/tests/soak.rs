//! A bounded soak (issue: reliability): 8 concurrent writers through
//! track_detailed_usage and COPY, some transactions rolled back, while
//! rollups re-run, the exporter is scraped and readers page through records.
//! Afterwards every committed row is present once, rolled-back rows are
//! absent, rollups equal the raw rows and the exporter equals the table.

use integration_tests::{cluster, scalar, text_rows, Exporter, USERS};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: usize = 8;
const SOAK: Duration = Duration::from_secs(30);

#[test]
fn soak_loses_and_double_counts_nothing() {
    let c = cluster();
    let db = c.fresh_db("soak");
    let role = format!("{db}_exporter");
    c.connect(&db)
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT usage_analytics_monitor TO {role};"
        ))
        .unwrap();
    let exporter = Exporter::start(&c.url(&db, &role), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + SOAK;

    // Writers: each transaction is tagged (agent_id) and either committed or
    // rolled back; half the writers use COPY batches.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = cluster().connect(&db);
                let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
                let mut tx = 0;
                while Instant::now() < deadline {
                    tx += 1;
                    let tag = format!("w{w}-t{tx}");
                    let rows: i32 = 1 + tx % 5;
                    let mut t = s.transaction().unwrap();
                    if w % 2 == 0 {
                        for i in 0..rows {
                            t.execute(
                                "SELECT usage_analytics.track_detailed_usage($1, $2, 'soak', 'langchain', 'openai',
                                        'chat', $3, 10, $4, $5, NULL, '{}', 'gpt-4o-mini')",
                                &[&uuid::Uuid::parse_str(USERS[w]).unwrap(), &tag, &i, &(i * 300), &(i != 3)],
                            )
                            .unwrap();
                        }
                    } else {
                        let mut copy = t
                            .copy_in(
                                "COPY usage_analytics.agent_usage_detailed (user_id, agent_id, framework, provider,
                                      model, input_tokens, output_tokens, response_time_ms) FROM STDIN",
                            )
                            .unwrap();
                        for i in 0..rows * 10 {
                            std::io::Write::write_all(
                                &mut copy,
                                format!("{}\t{tag}\tautogen\tanthropic\tclaude-3-haiku\t{i}\t5\t{}\n", USERS[w], i * 40)
                                    .as_bytes(),
                            )
                            .unwrap();
                        }
                        copy.finish().unwrap();
                    }
                    let expected_rows = if w % 2 == 0 { rows } else { rows * 10 };
                    if tx % 7 == 0 {
                        t.rollback().unwrap();
                        rolled_back.push(tag);
                    } else {
                        t.commit().unwrap();
                        committed.push((tag, expected_rows));
                    }
                }
                (committed, rolled_back)
            })
        })
        .collect();

    let rollups = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut s = cluster().connect(&db);
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                s.batch_execute("SELECT usage_analytics.run_scheduled_maintenance()")
                    .unwrap();
                runs += 1;
                std::thread::sleep(Duration::from_secs(3));
            }
            runs
        })
    };
    let scraper = {
        let (addr, stop, scrapes) = (exporter.addr.clone(), stop.clone(), scrapes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let (status, body) =
                    integration_tests::http_get(&addr, "/metrics", Duration::from_secs(5)).expect("scrape");
                assert_eq!(status, 200);
                assert!(
                    body.contains("ai_usage_exporter_up 1"),
                    "exporter down during soak"
                );
                scrapes.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = cluster().connect(&db);
                let mut pages = 0;
                while !stop.load(Ordering::SeqCst) {
                    let filters = if r == 0 {
                        "{}"
                    } else {
                        "{\"provider\": \"anthropic\"}"
                    };
                    s.query(
                        "SELECT * FROM usage_analytics.get_usage_records($1::text::jsonb, 50, 0)",
                        &[&filters],
                    )
                    .unwrap();
                    s.query(
                        "SELECT usage_analytics.get_usage_summary($1::text::jsonb)",
                        &[&filters],
                    )
                    .unwrap();
                    pages += 1;
                }
                pages
            })
        })
        .collect();

    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    for w in writers {
        let (c, r) = w.join().unwrap();
        committed.extend(c);
        rolled_back.extend(r);
    }
    stop.store(true, Ordering::SeqCst);
    let rollup_runs = rollups.join().unwrap();
    scraper.join().unwrap();
    let pages: i32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(rollup_runs >= 3 && pages > 10 && scrapes.load(Ordering::SeqCst) > 10);
    assert!(!rolled_back.is_empty() && committed.len() > 50);

    let mut client = c.connect(&db);
    // Every committed transaction's rows are present exactly once.
    let present: std::collections::HashMap<String, i64> = text_rows(
        &mut client,
        "SELECT agent_id, count(*) FROM usage_analytics.agent_usage_detailed GROUP BY 1",
    )
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].as_deref().unwrap().parse().unwrap()))
    .collect();
    for (tag, rows) in &committed {
        assert_eq!(present.get(tag), Some(&(*rows as i64)), "transaction {tag}");
    }
    let rolled: HashSet<&String> = rolled_back.iter().collect();
    assert!(
        present.keys().all(|k| !rolled.contains(k)),
        "a rolled-back row is present"
    );
    let total: i64 = committed.iter().map(|(_, n)| *n as i64).sum();
    assert_eq!(present.values().sum::<i64>(), total);

    // Rollups equal the raw rows once re-run; the exporter equals the table.
    client
        .batch_execute("SELECT usage_analytics.run_scheduled_maintenance()")
        .unwrap();
    let mismatch = scalar(
        &mut client,
        "SELECT count(*) FROM (
           (SELECT user_id, agent_id, date, total_requests, total_input_tokens, total_cost_usd
              FROM usage_analytics.agent_performance_metrics
            EXCEPT
            SELECT user_id, agent_id, (\"timestamp\" AT TIME ZONE 'UTC')::date, count(*)::int, sum(input_tokens),
                   coalesce(sum(cost_usd), 0)
              FROM usage_analytics.agent_usage_detailed GROUP BY 1, 2, 3)
           UNION ALL
           (SELECT user_id, agent_id, (\"timestamp\" AT TIME ZONE 'UTC')::date, count(*)::int, sum(input_tokens),
                   coalesce(sum(cost_usd), 0)
              FROM usage_analytics.agent_usage_detailed GROUP BY 1, 2, 3
            EXCEPT
            SELECT user_id, agent_id, date, total_requests, total_input_tokens, total_cost_usd
              FROM usage_analytics.agent_performance_metrics)) d",
    );
    assert_eq!(mismatch.as_deref(), Some("0"), "rollups differ from raw rows");
    let m = exporter.metrics();
    assert_eq!(m.sum("ai_usage_requests_total", &[]), total as f64);
    let input: f64 = scalar(
        &mut client,
        "SELECT sum(input_tokens) FROM usage_analytics.agent_usage_detailed",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert_eq!(m.sum("ai_usage_tokens_total", &[("direction", "input")]), input);
    let summary_total = scalar(
        &mut client,
        "SELECT usage_analytics.get_usage_summary() ->> 'total_requests'",
    );
    assert_eq!(summary_total, Some(total.to_string()));
    eprintln!(
        "soak: {} transactions committed ({total} rows), {} rolled back, {rollup_runs} rollup runs, {} scrapes, {pages} reader rounds",
        committed.len(),
        rolled_back.len(),
        scrapes.load(Ordering::SeqCst)
    );
}
