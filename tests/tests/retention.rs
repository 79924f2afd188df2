//! Retention (set_retention, apply_retention, retention_status) and fast
//! search (issue 19, items 2 and 3).

use integration_tests::{cluster, db_error, load_sample, scalar, text_rows, USERS};
use postgres::Client;

fn fresh(name: &str) -> (String, Client) {
    let c = cluster();
    let db = c.fresh_db(name);
    let client = c.connect(&db);
    (db, client)
}

/// The first day of the UTC month `months` before the current one.
fn month_start(client: &mut Client, months: i32) -> String {
    scalar(
        client,
        &format!(
            "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '{months} months')::date::text"
        ),
    )
    .unwrap()
}

/// Monthly partitions six months back, and `n` rows spread over the last
/// five months (and today), for the fixed users.
fn load_months(client: &mut Client, n: i64) {
    client
        .batch_execute(&format!(
            "SELECT usage_analytics.ensure_partitions(3, 6);
             INSERT INTO usage_analytics.agent_usage_detailed
               (user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
                response_time_ms, success, error_message, model, \"timestamp\")
             SELECT (ARRAY['{}']::uuid[])[1 + g % 8], 'agent-' || g % 5, 'Agent ' || g % 3,
                    (ARRAY['langchain', 'autogen'])[1 + g % 2], (ARRAY['openai', 'anthropic'])[1 + g % 2], 'chat',
                    g % 1000, g % 300, 100 + g % 900, g % 9 <> 0, CASE WHEN g % 9 = 0 THEN 'rate limited' END,
                    (ARRAY['gpt-4o', 'claude-3-haiku'])[1 + g % 2],
                    date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '5 months'
                      + (now() - (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '5 months'))
                        * (g::float8 / {n})
               FROM generate_series(1, {n}) g;",
            USERS.join("','")
        ))
        .unwrap();
}

fn json(client: &mut Client, sql: &str) -> serde_json::Value {
    client.query_one(sql, &[]).unwrap().get(0)
}

fn partitions(client: &mut Client) -> Vec<String> {
    text_rows(
        client,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass ORDER BY 1",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

/// Everything a reader of removed months gets, as text: summaries and trends
/// on both paths (admin per-day tables, rollups), and the exporter's counters.
fn observations(client: &mut Client, reader: &mut Client, from: &str, to: &str) -> Vec<String> {
    let range = format!("{{\"start_date\": \"{from}\", \"end_date\": \"{to}\"}}");
    let by_provider =
        format!("{{\"start_date\": \"{from}\", \"end_date\": \"{to}\", \"provider\": \"openai\"}}");
    let mut out = vec![
        json(
            client,
            &format!("SELECT usage_analytics.get_usage_summary('{range}')"),
        )
        .to_string(),
        json(client, "SELECT usage_analytics.get_usage_summary('{}')").to_string(),
        json(
            client,
            &format!("SELECT usage_analytics.get_usage_summary('{by_provider}')"),
        )
        .to_string(),
        json(
            reader,
            &format!("SELECT usage_analytics.get_usage_summary('{range}')"),
        )
        .to_string(),
    ];
    for (who, filters) in [
        ("admin", range.as_str()),
        ("admin", by_provider.as_str()),
        ("reader", range.as_str()),
    ] {
        for granularity in ["day", "month"] {
            let c = if who == "admin" {
                &mut *client
            } else {
                &mut *reader
            };
            out.push(format!(
                "{who} {granularity} {filters}: {:?}",
                text_rows(
                    c,
                    &format!(
                        "SELECT * FROM usage_analytics.usage_trend('{granularity}', '{filters}') ORDER BY 1"
                    )
                )
            ));
        }
    }
    out.push(format!(
        "{:?}",
        text_rows(
            client,
            "SELECT provider, framework, agent_id, model, message_type, success, sum(requests), sum(input_tokens),
                    sum(output_tokens), sum(cost_usd), sum(unpriced_requests), sum(response_time_count)
               FROM usage_analytics.usage_counters GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6"
        )
    ));
    out
}

/// A login role mapped to `user` (one role per test: roles are cluster-wide).
fn reader_for(db: &str, client: &mut Client, role: &str, user: &str) -> Client {
    client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT usage_analytics_reader TO {role};
             INSERT INTO usage_analytics.user_role_map VALUES ('{role}', '{user}')
                 ON CONFLICT (role_name) DO UPDATE SET user_id = excluded.user_id;"
        ))
        .unwrap();
    cluster().connect_as(db, role)
}

#[test]
fn dropping_old_months_keeps_summaries_trends_and_counters() {
    let (db, mut client) = fresh("retention_drop");
    load_months(&mut client, 6000);
    let mut reader = reader_for(&db, &mut client, "retention_reader_drop", USERS[2]);
    let removed_from = month_start(&mut client, 5);
    let kept_from = month_start(&mut client, 2);
    // Whole UTC days: summaries over removed months come from per-day tables and rollups.
    let before = observations(&mut client, &mut reader, &removed_from, &kept_from);
    let records_before = scalar(
        &mut client,
        &format!(
            "SELECT count(*) FROM usage_analytics.get_usage_records('{{\"end_date\": \"{kept_from}T00:00:00Z\"}}', 100000)"
        ),
    )
    .unwrap();
    assert_ne!(records_before, "0");

    // The collector's span claims: two in removed months, one in a kept month.
    client
        .batch_execute(&format!(
            "SELECT usage_analytics.collector_claim_spans(
                 ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid()],
                 ARRAY['{removed_from}'::timestamptz, '{kept_from}'::timestamptz - interval '1 second',
                       '{kept_from}'::timestamptz])"
        ))
        .unwrap();

    client
        .batch_execute("SELECT usage_analytics.set_retention(2)")
        .unwrap();
    let removed = text_rows(
        &mut client,
        "SELECT partition, action, rows FROM usage_analytics.apply_retention() ORDER BY 1",
    );
    assert_eq!(removed.len(), 4, "{removed:?}"); // months 6, 5, 4 and 3 back (6 back is empty)

    // The maintenance run then forgets the claims of removed months only.
    client
        .batch_execute("CALL usage_analytics.run_maintenance()")
        .unwrap();
    assert_eq!(
        text_rows(
            &mut client,
            "SELECT \"timestamp\" >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '2 months'
               FROM usage_analytics.collector_spans"
        ),
        vec![vec![Some("t".to_string())]]
    );
    assert_eq!(
        scalar(
            &mut client,
            "SELECT details->>'forgotten' FROM usage_analytics.admin_audit_log
              WHERE action = 'collector_forget_spans'"
        )
        .as_deref(),
        Some("2")
    );
    assert!(
        removed.iter().all(|r| r[1].as_deref() == Some("drop")),
        "{removed:?}"
    );
    let removed_rows: i64 = removed
        .iter()
        .map(|r| r[2].as_deref().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(removed_rows.to_string(), records_before);
    let parts = partitions(&mut client);
    assert!(parts.contains(&"agent_usage_detailed_default".to_string()));
    let kept_part = format!("agent_usage_detailed_p{}", kept_from[..7].replace('-', "_"));
    assert!(parts.contains(&kept_part), "{parts:?}");
    assert_eq!(
        parts
            .iter()
            .filter(|p| p.as_str() < kept_part.as_str() && p.as_str() != "agent_usage_detailed_default")
            .count(),
        0,
        "{parts:?}"
    );

    // Summaries and trends over the removed months are unchanged, on every path.
    assert_eq!(
        observations(&mut client, &mut reader, &removed_from, &kept_from),
        before
    );
    // The non-admin path reads the removed days from the rollups: still fresh.
    let fresh_days = scalar(
        &mut client,
        &format!(
            "SELECT count(*) FROM unnest(usage_analytics._fresh_rollup_days('{removed_from}', '{kept_from}'::date - 1))"
        ),
    )
    .unwrap();
    let days_with_rows = scalar(
        &mut client,
        &format!(
            "SELECT count(DISTINCT day) FROM usage_analytics.usage_daily_user
              WHERE day >= '{removed_from}' AND day < '{kept_from}'"
        ),
    )
    .unwrap();
    assert_eq!(fresh_days, days_with_rows);
    // Records and exports there return nothing.
    for sql in [
        format!("SELECT count(*) FROM usage_analytics.get_usage_records('{{\"end_date\": \"{kept_from}T00:00:00Z\"}}', 100000)"),
        format!("SELECT count(*) FROM usage_analytics.usage_export('{{\"end_date\": \"{kept_from}T00:00:00Z\"}}')"),
    ] {
        assert_eq!(scalar(&mut client, &sql).unwrap(), "0", "{sql}");
    }

    // Audited: the setting and each removal.
    let audit = text_rows(
        &mut client,
        "SELECT action, target, details->>'action', details->>'rows' FROM usage_analytics.admin_audit_log
          WHERE action IN ('set_retention', 'apply_retention') ORDER BY id",
    );
    assert_eq!(audit.len(), 5, "{audit:?}");
    assert_eq!(audit[0][0].as_deref(), Some("set_retention"));
    assert_eq!(audit[0][2].as_deref(), Some("drop"));
    for (row, partition) in audit[1..].iter().zip(&removed) {
        assert_eq!(row[1], partition[0]);
        assert_eq!(row[3], partition[2]);
    }

    let status = text_rows(&mut client, "SELECT * FROM usage_analytics.retention_status()");
    let next_due = scalar(
        &mut client,
        "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date::text",
    );
    assert_eq!(
        status,
        vec![vec![
            Some("2".into()),
            Some("drop".into()),
            Some(kept_from.clone()),
            next_due
        ]]
    );
    // Nothing more is due: a second run removes nothing.
    assert_eq!(
        text_rows(&mut client, "SELECT * FROM usage_analytics.apply_retention()"),
        Vec::<Vec<_>>::new()
    );
}

#[test]
fn detached_months_go_to_the_archive_for_admins_only() {
    let (db, mut client) = fresh("retention_detach");
    load_months(&mut client, 2000);
    client
        .batch_execute("SELECT usage_analytics.set_retention(3, 'detach')")
        .unwrap();
    let detached = text_rows(
        &mut client,
        "SELECT partition, action, rows FROM usage_analytics.apply_retention() WHERE rows > 0 ORDER BY 1",
    );
    assert_eq!(detached.len(), 2, "{detached:?}");
    for row in &detached {
        assert_eq!(row[1].as_deref(), Some("detach"));
        let rows = scalar(
            &mut client,
            &format!(
                "SELECT count(*) FROM usage_analytics_archive.{}",
                row[0].as_deref().unwrap()
            ),
        );
        assert_eq!(rows, row[2]);
    }
    let archived = detached[0][0].clone().unwrap();
    client
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE retention_admin LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             SELECT usage_analytics.grant_admin('retention_admin');",
        )
        .unwrap();
    let mut admin = cluster().connect_as(&db, "retention_admin");
    assert_eq!(
        scalar(
            &mut admin,
            &format!("SELECT count(*) FROM usage_analytics_archive.{archived}")
        ),
        detached[0][2]
    );
    let mut reader = reader_for(&db, &mut client, "retention_reader_detach", USERS[0]);
    let err = reader
        .query(
            &format!("SELECT count(*) FROM usage_analytics_archive.{archived}"),
            &[],
        )
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42501");
    for sql in [
        "SELECT usage_analytics.set_retention(1)",
        "SELECT * FROM usage_analytics.apply_retention()",
        "SELECT * FROM usage_analytics.retention_status()",
        "SELECT * FROM usage_analytics.retention_policy",
    ] {
        let err = reader.query(sql, &[]).unwrap_err();
        assert_eq!(db_error(&err).0, "42501", "{sql}");
    }
    // The admin reads the policy; the reader's failed calls changed nothing.
    assert_eq!(
        text_rows(
            &mut admin,
            "SELECT keep_months, action FROM usage_analytics.retention_policy"
        ),
        vec![vec![Some("3".into()), Some("detach".into())]]
    );
}

#[test]
fn a_locked_table_skips_the_month_with_a_warning() {
    let (db, mut client) = fresh("retention_locked");
    load_months(&mut client, 1500);
    client
        .batch_execute("SELECT usage_analytics.set_retention(4)")
        .unwrap();
    let mut holder = cluster().connect(&db);
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM usage_analytics.agent_usage_detailed;")
        .unwrap();
    let started = std::time::Instant::now();
    let skipped = text_rows(
        &mut client,
        "SELECT partition, action FROM usage_analytics.apply_retention() ORDER BY 1",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(!skipped.is_empty());
    assert!(
        skipped.iter().all(|r| r[1].as_deref() == Some("skipped")),
        "{skipped:?}"
    );
    let before = partitions(&mut client);
    assert!(before.contains(skipped[0][0].as_ref().unwrap()));
    holder.batch_execute("COMMIT").unwrap();
    let removed = text_rows(
        &mut client,
        "SELECT partition, action FROM usage_analytics.apply_retention() ORDER BY 1",
    );
    assert_eq!(removed.len(), skipped.len());
    assert!(
        removed.iter().all(|r| r[1].as_deref() == Some("drop")),
        "{removed:?}"
    );
}

#[test]
fn retention_settings_are_validated() {
    let (_db, mut client) = fresh("retention_args");
    for (sql, needle) in [
        ("SELECT usage_analytics.set_retention(0)", "keep_months"),
        ("SELECT usage_analytics.set_retention(-3)", "keep_months"),
        ("SELECT usage_analytics.set_retention(12, 'archive')", "action"),
        ("SELECT usage_analytics.set_retention(12, NULL)", "action"),
    ] {
        let err = client.query(sql, &[]).unwrap_err();
        let (code, message) = db_error(&err);
        assert_eq!(code, "22023", "{sql}");
        assert!(message.contains(needle), "{sql}: {message}");
    }
    // No policy: nothing is removed, the status says so.
    assert_eq!(
        text_rows(&mut client, "SELECT * FROM usage_analytics.apply_retention()"),
        Vec::<Vec<_>>::new()
    );
    let status = text_rows(
        &mut client,
        "SELECT keep_months, action, next_due FROM usage_analytics.retention_status()",
    );
    assert_eq!(status, vec![vec![None, None, None]]);
    client
        .batch_execute(
            "SELECT usage_analytics.set_retention(12, 'DETACH'); SELECT usage_analytics.set_retention(NULL);",
        )
        .unwrap();
    assert_eq!(
        scalar(
            &mut client,
            "SELECT count(*) FROM usage_analytics.retention_policy"
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        scalar(
            &mut client,
            "SELECT count(*) FROM usage_analytics.admin_audit_log WHERE action = 'set_retention'"
        )
        .as_deref(),
        Some("2")
    );
}

/// ids of the rows the four ILIKEs of 0.2.0 select, newest first.
fn oracle_ids(client: &mut Client, term: &str) -> Vec<Vec<Option<String>>> {
    let pattern = format!(
        "%{}%",
        term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
    );
    let rows = client
        .query(
            "SELECT id::text FROM usage_analytics.agent_usage_detailed
              WHERE agent_id ILIKE $1 OR agent_name ILIKE $1 OR model ILIKE $1 OR error_message ILIKE $1
              ORDER BY \"timestamp\" DESC, id DESC",
            &[&pattern],
        )
        .unwrap();
    rows.iter().map(|r| vec![Some(r.get::<_, String>(0))]).collect()
}

fn search_ids(client: &mut Client, term: &str, limit: i32, offset: i32) -> Vec<Vec<Option<String>>> {
    let filters = serde_json::json!({ "search": term });
    client
        .query(
            "SELECT id::text FROM usage_analytics.get_usage_records($1, $2, $3)",
            &[&filters, &limit, &offset],
        )
        .unwrap()
        .iter()
        .map(|r| vec![Some(r.get::<_, String>(0))])
        .collect()
}

#[test]
fn search_selects_exactly_the_rows_of_the_four_ilikes() {
    let (_db, mut client) = fresh("search_same");
    load_sample(&mut client, 3000, 3);
    for term in [
        "coder",
        "CODER",
        "agent 1",
        "coder Agent", // would match across the separator of the indexed text
        "gpt-4o mini",
        "rate limited",
        "Q,\"uoted\"",
        "ünïcødé",
        "50%",
        "_",
        "\\",
        "o",
        "gpt",
        "=cmd|",
        "zzz-nothing",
    ] {
        let all = oracle_ids(&mut client, term);
        assert_eq!(search_ids(&mut client, term, 100000, 0), all, "search {term:?}");
        let page: Vec<_> = all.iter().take(100).cloned().collect();
        assert_eq!(search_ids(&mut client, term, 100, 0), page, "page 1 of {term:?}");
        let page3: Vec<_> = all.iter().skip(200).take(100).cloned().collect();
        assert_eq!(
            search_ids(&mut client, term, 100, 200),
            page3,
            "page 3 of {term:?}"
        );
        let filters = serde_json::json!({ "search": term });
        let exported: i64 = client
            .query_one(
                "SELECT count(*) FROM usage_analytics.usage_export($1)",
                &[&filters],
            )
            .unwrap()
            .get(0);
        assert_eq!(exported as usize, all.len(), "export {term:?}");
    }
}

fn plan(client: &mut Client, sql: &str) -> String {
    text_rows(client, &format!("EXPLAIN {sql}"))
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Three rows of agent 'zzqx-rare' at `at` (an SQL timestamp): a rare term.
fn add_rare_rows(client: &mut Client, at: &str) {
    client
        .batch_execute(&format!(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, agent_name, provider, input_tokens, output_tokens, \"timestamp\")
             SELECT gen_random_uuid(), 'zzqx-rare', 'Rare Agent', 'openai', 1, 1, {at}
               FROM generate_series(1, 3)"
        ))
        .unwrap();
}

#[test]
fn rare_terms_use_the_search_key_index_and_common_terms_the_timestamp_index() {
    let (_db, mut client) = fresh("search_plans");
    load_sample(&mut client, 40000, 20);
    // A rare term: three rows of one agent.
    add_rare_rows(&mut client, "now()");
    client
        .batch_execute("VACUUM ANALYZE usage_analytics.agent_usage_detailed")
        .unwrap();
    // Every partition carries the index (new months copy it), without statistics.
    client
        .batch_execute("SELECT usage_analytics.ensure_partitions(6, 3)")
        .unwrap();
    let missing = text_rows(
        &mut client,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass
            AND NOT EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid
                             AND pg_get_indexdef(x.indexrelid) LIKE '%_search_key(%')",
    );
    assert_eq!(missing, Vec::<Vec<_>>::new());

    // The statement get_usage_records runs for a rare term (_records_by_keys),
    // with the agent and key of its one text.
    let texts = scalar(
        &mut client,
        "SELECT cardinality(usage_analytics._matching_search_texts('%zzqx-rare%'))::text",
    )
    .unwrap();
    assert_eq!(texts, "1", "one text");
    let rare_sql = "SELECT r.* FROM (SELECT usage_analytics._search_text_agent(t) AS agent,
                                            usage_analytics._search_key(t) AS key
                                       FROM unnest(usage_analytics._matching_search_texts('%zzqx-rare%')) AS t) p
          CROSS JOIN LATERAL (
                SELECT u.* FROM usage_analytics.agent_usage_detailed u
                 WHERE u.agent_id = p.agent
                   AND usage_analytics._search_key(usage_analytics._search_text(u.agent_id, u.agent_name, u.model,
                                                                                u.error_message)) = p.key
                   AND usage_analytics._usage_matches(u, '{\"search\": \"zzqx-rare\"}')
                 ORDER BY u.\"timestamp\" DESC FETCH FIRST 100 ROWS WITH TIES) r
          ORDER BY r.\"timestamp\" DESC, r.id DESC LIMIT 100"
        .to_string();
    // Planned as _records_by_keys plans it (its settings, checked below).
    client
        .batch_execute("SET enable_sort = off; SET jit = off")
        .unwrap();
    let rare = plan(&mut client, &rare_sql);
    assert!(
        rare.contains("_agent_id__search_key_") && rare.contains("Merge Append"),
        "{rare}"
    );
    // At 10 million rows the planner, blind to the keys' row counts, started
    // parallel workers and JIT for it (100 ms instead of 2): the key route
    // turns both off. Too few rows here for the planner to try either, so
    // the settings themselves are checked.
    assert_eq!(
        scalar(
            &mut client,
            "SELECT array_to_string(proconfig, ',') FROM pg_proc
              WHERE oid = 'usage_analytics._records_by_keys'::regproc"
        )
        .as_deref(),
        Some("enable_sort=off,max_parallel_workers_per_gather=0,jit=off")
    );
    client.batch_execute("RESET enable_sort; RESET jit").unwrap();
    // The statement it runs when the newest rows hold the page (a common term).
    let common = plan(
        &mut client,
        "SELECT r.* FROM (SELECT u.* FROM usage_analytics.agent_usage_detailed u
                           WHERE usage_analytics._usage_matches(u, '{}')
                           ORDER BY u.\"timestamp\" DESC, u.id DESC LIMIT 2000) r
          WHERE usage_analytics._search_matches(r.agent_id, r.agent_name, r.model, r.error_message, '%coder%')
          ORDER BY r.\"timestamp\" DESC, r.id DESC LIMIT 100",
    );
    assert!(
        common.contains("Index Scan Backward")
            && !common.contains("_agent_id__search_key_")
            && !common.contains("Sort  "),
        "{common}"
    );
    // Page 1 of a rare term reads a few pages, not the table.
    let buffers = text_rows(
        &mut client,
        &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {rare_sql}"),
    );
    let doc: serde_json::Value = serde_json::from_str(buffers[0][0].as_deref().unwrap()).unwrap();
    let hit = doc[0]["Plan"]["Shared Hit Blocks"].as_i64().unwrap()
        + doc[0]["Plan"]["Shared Read Blocks"].as_i64().unwrap();
    let table_pages: i64 = scalar(
        &mut client,
        "SELECT sum(relpages)::bigint FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
          WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(hit * 10 < table_pages, "{hit} blocks read of {table_pages}");
    // No statistics on the indexed text: EXPLAIN must not reveal values.
    let with_stats = scalar(
        &mut client,
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'usage_analytics' AND tablename LIKE '%search_key%'",
    );
    assert_eq!(with_stats.as_deref(), Some("0"));
}

/// Scans of the usage table's partitions so far in the current transaction,
/// and the rows they read.
fn usage_reads(client: &mut Client) -> (i64, i64) {
    let row = text_rows(
        client,
        "SELECT coalesce(sum(s.seq_scan + coalesce(s.idx_scan, 0)), 0)::text,
                coalesce(sum(s.seq_tup_read + coalesce(s.idx_tup_fetch, 0)), 0)::text
           FROM pg_stat_xact_user_tables s
           JOIN pg_inherits i ON i.inhrelid = s.relid
          WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass",
    );
    let n = |i: usize| row[0][i].as_deref().unwrap().parse().unwrap();
    (n(0), n(1))
}

#[test]
fn absent_and_rare_terms_are_found_through_the_dictionary_without_the_probe() {
    let (db, mut owner) = fresh("search_absent");
    load_sample(&mut owner, 2000, 5);
    // A rare term: three old rows of one agent, which the probe of the
    // newest rows would read the whole table to miss.
    add_rare_rows(&mut owner, "now() - interval '40 days'");
    let mut reader = reader_for(&db, &mut owner, "absent_reader", USERS[0]);
    // Rows found by a page, and (scans, rows read) of the usage table.
    let page = |c: &mut Client, term: &str| {
        c.batch_execute("BEGIN").unwrap();
        let n = text_rows(
            c,
            &format!("SELECT id FROM usage_analytics.get_usage_records('{{\"search\": \"{term}\"}}')"),
        )
        .len();
        let reads = usage_reads(c);
        c.batch_execute("COMMIT").unwrap();
        (n, reads)
    };
    // The owner reads every row: no text holds the term, so no row is read.
    assert_eq!(page(&mut owner, "zzqx-absent"), (0, (0, 0)));
    // A rare term's rows, counted then read through their keys: a few
    // rows read, not the probe's 1,000 or more.
    let (found, (_, read)) = page(&mut owner, "zzqx-rare");
    assert_eq!(found, 3);
    assert!(read < 20, "{read} rows read");
    // A common term still reads rows and fills its page.
    let (found, (scans, _)) = page(&mut owner, "gpt");
    assert!(found == 100 && scans > 0, "{found} rows, {scans} scans");
    // A reader limited to its own rows may not consult the dictionary: its
    // search reads (its own) rows and finds nothing either.
    let (found, (scans, _)) = page(&mut reader, "zzqx-absent");
    assert_eq!(found, 0);
    assert!(scans > 0, "{scans} scans");
    assert_eq!(
        scalar(
            &mut reader,
            "SELECT (usage_analytics._matching_search_texts('%zzqx-absent%', 64) IS NULL)::text"
        )
        .as_deref(),
        Some("true")
    );
}

#[test]
fn texts_of_deleted_rows_leave_the_search_dictionary_and_writers_notice() {
    let (db, mut owner) = fresh("search_forget");
    let texts = |c: &mut Client, agent: &str| {
        scalar(
            c,
            &format!(
                "SELECT count(*) FROM usage_analytics.search_texts
                  WHERE usage_analytics._search_text_agent(search_text) = '{agent}'"
            ),
        )
        .unwrap()
    };
    let insert = |agent: &str| {
        format!(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, provider, input_tokens, output_tokens, success, error_message)
             VALUES ('{}', '{agent}', 'openai', 1, 1, false, 'card 4111 declined')",
            USERS[0]
        )
    };
    let delete_and_forget = |c: &mut Client| {
        c.batch_execute("DELETE FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'forget-agent'")
            .unwrap();
        scalar(c, "SELECT usage_analytics.forget_unused_search_texts()")
    };
    // A second session records a row under the text first: it now knows it.
    let mut writer = cluster().connect(&db);
    writer.batch_execute(&insert("forget-agent")).unwrap();
    owner.batch_execute(&insert("keep-agent")).unwrap();
    assert_eq!(texts(&mut owner, "forget-agent"), "1");

    assert_eq!(delete_and_forget(&mut owner).as_deref(), Some("1"));
    assert_eq!(texts(&mut owner, "forget-agent"), "0");
    assert_eq!(texts(&mut owner, "keep-agent"), "1", "texts still in use stay");
    assert_eq!(
        scalar(
            &mut owner,
            "SELECT details::text FROM usage_analytics.admin_audit_log WHERE action = 'forget_unused_search_texts'"
        )
        .as_deref(),
        Some("{\"texts\": 1}")
    );
    // The writer's next row under that text puts it back, and search finds it.
    writer.batch_execute(&insert("forget-agent")).unwrap();
    assert_eq!(texts(&mut owner, "forget-agent"), "1");
    let found = text_rows(
        &mut owner,
        "SELECT agent_id FROM usage_analytics.get_usage_records('{\"search\": \"forget-agent\"}')",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    // Nothing left to drop; only admins may call it, at READ COMMITTED.
    assert_eq!(
        scalar(&mut owner, "SELECT usage_analytics.forget_unused_search_texts()").as_deref(),
        Some("0")
    );
    let err = owner
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT usage_analytics.forget_unused_search_texts()",
        )
        .unwrap_err();
    assert_eq!(db_error(&err).0, "25000", "{err:?}");
    owner.batch_execute("ROLLBACK").unwrap();

    // A REPEATABLE READ writer whose snapshot still shows a text dropped
    // since adds it again with its row.
    let mut rr = cluster().connect(&db);
    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .unwrap();
    assert_eq!(delete_and_forget(&mut owner).as_deref(), Some("1"));
    rr.batch_execute(&insert("forget-agent")).unwrap();
    rr.batch_execute("COMMIT").unwrap();
    assert_eq!(
        texts(&mut owner, "forget-agent"),
        "1",
        "the snapshot's text came back"
    );
    owner
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {db}_w LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT usage_analytics_writer TO {db}_w"
        ))
        .unwrap();
    let err = cluster()
        .connect_as(&db, &format!("{db}_w"))
        .batch_execute("SELECT usage_analytics.forget_unused_search_texts()")
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42501", "{err:?}");
}

#[test]
fn rows_that_bypassed_the_statement_trigger_get_their_texts_back() {
    let (_db, mut owner) = fresh("search_missing");
    // Straight into a partition: the parent's statement trigger does not run.
    let partition = scalar(
        &mut owner,
        "WITH seed AS (INSERT INTO usage_analytics.agent_usage_detailed
                           (user_id, agent_id, provider, input_tokens, output_tokens, success)
                       VALUES (gen_random_uuid(), 'seed-agent', 'openai', 1, 1, true) RETURNING tableoid)
         SELECT tableoid::regclass::text FROM seed",
    )
    .unwrap();
    owner
        .batch_execute(&format!(
            "INSERT INTO {partition} (user_id, agent_id, provider, input_tokens, output_tokens, success)
             VALUES (gen_random_uuid(), 'bypass-agent', 'openai', 1, 1, true)"
        ))
        .unwrap();
    let found = |c: &mut Client| {
        text_rows(
            c,
            "SELECT agent_id FROM usage_analytics.get_usage_records('{\"search\": \"bypass-agent\"}')",
        )
        .len()
    };
    assert_eq!(found(&mut owner), 0, "its text is not in the dictionary yet");
    assert_eq!(
        scalar(&mut owner, "SELECT usage_analytics.add_missing_search_texts()").as_deref(),
        Some("1")
    );
    assert_eq!(found(&mut owner), 1);
    assert_eq!(
        scalar(&mut owner, "SELECT usage_analytics.add_missing_search_texts()").as_deref(),
        Some("0")
    );
}

/// An agent's rows live in the search index (agent, text key, time): a page
/// of them reads each of its texts' newest rows (_agent_keys, then
/// _records_by_keys), not every row of the agent nor the newer rows of
/// others, and equals the plain WHERE clause's page.
#[test]
fn an_agents_page_reads_its_texts_newest_rows() {
    let (_db, mut owner) = fresh("agent_route");
    load_sample(&mut owner, 4000, 5);
    // 3,000 old rows of one agent, in two texts, older than every other row.
    owner
        .batch_execute(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, agent_name, provider, model, input_tokens, output_tokens, \"timestamp\")
             SELECT gen_random_uuid(), 'old-agent', 'Old ' || (g % 2), 'openai', 'gpt-4o', 1, 1,
                    now() - interval '40 days' - make_interval(secs => g)
               FROM generate_series(1, 3000) AS g;
             ANALYZE usage_analytics.agent_usage_detailed",
        )
        .unwrap();
    for (filters, offset) in [
        (r#"{"agent_id": "old-agent"}"#, 0),
        (r#"{"agent_id": "old-agent"}"#, 25),
    ] {
        // Counted within the transaction: PostgreSQL 15 keeps a session's
        // counts pending across transactions until it reports them.
        owner.batch_execute("BEGIN").unwrap();
        let (_, before) = usage_reads(&mut owner);
        let got = text_rows(
            &mut owner,
            &format!("SELECT id::text FROM usage_analytics.get_usage_records('{filters}', 10, {offset})"),
        );
        let (_, after) = usage_reads(&mut owner);
        owner.batch_execute("COMMIT").unwrap();
        let read = after - before;
        let expected = text_rows(
            &mut owner,
            &format!(
                "SELECT id::text FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'old-agent'
                  ORDER BY \"timestamp\" DESC, id DESC LIMIT 10 OFFSET {offset}"
            ),
        );
        assert_eq!(got, expected, "offset {offset}");
        assert!(
            read <= 2 * (10 + offset) + 10,
            "offset {offset}: {read} rows read"
        );
    }
    // The largest limit, with an offset: no integer overflow on the way.
    let all = scalar(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.get_usage_records('{\"agent_id\": \"old-agent\"}', 2147483647, 1)",
    );
    assert_eq!(all.as_deref(), Some("2999"));
}

/// The dictionary may hold a text more than once (two writers adding it at
/// once). Taking the first 65 entries for "at most 64 texts" must not let
/// the copies of one text hide another, whose rows the search would then
/// never read.
#[test]
fn a_text_stored_many_times_does_not_hide_another() {
    let (_db, mut owner) = fresh("search_dupes");
    let insert = |agent: &str| {
        format!(
            "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, input_tokens, output_tokens)
             VALUES ('{}', '{agent}', 'openai', 1, 1)",
            USERS[0]
        )
    };
    owner.batch_execute(&insert("zq-dup-a")).unwrap();
    owner
        .batch_execute(
            "INSERT INTO usage_analytics.search_texts (search_text)
             SELECT s.search_text FROM usage_analytics.search_texts s, generate_series(1, 100)
              WHERE usage_analytics._search_text_agent(s.search_text) = 'zq-dup-a'",
        )
        .unwrap();
    owner.batch_execute(&insert("zq-dup-b")).unwrap();
    let found = text_rows(
        &mut owner,
        "SELECT agent_id FROM usage_analytics.get_usage_records('{\"search\": \"zq-dup\"}') ORDER BY 1",
    );
    assert_eq!(
        found,
        vec![
            vec![Some("zq-dup-a".to_string())],
            vec![Some("zq-dup-b".to_string())]
        ]
    );
}
