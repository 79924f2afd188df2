//! get_usage_records, filters, paging, CSV export and COPY (issue: records).

use integration_tests::{cluster, db_error, load_sample, scalar, text_rows, USERS};
use postgres::Client;

fn ids(client: &mut Client, sql: &str) -> Vec<String> {
    text_rows(client, sql)
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

fn record_ids(client: &mut Client, filters: &str, limit: i64, offset: i64) -> Vec<String> {
    ids(
        client,
        &format!(
            "SELECT id FROM usage_analytics.get_usage_records($${filters}$$::jsonb, {limit}::int, {offset}::int)"
        ),
    )
}

/// Filter documents and the independent WHERE clause each must equal.
fn cases() -> Vec<(String, String)> {
    let u = USERS[2];
    vec![
        ("{}".into(), "true".into()),
        (format!("{{\"user_id\": \"{u}\"}}"), format!("user_id = '{u}'")),
        (format!("{{\"user_id\": \"{}\"}}", u.to_uppercase()), format!("user_id = '{u}'")),
        (r#"{"agent_id": "coder"}"#.into(), "agent_id = 'coder'".into()),
        (r#"{"agent_id": "Q,\"uoted\""}"#.into(), "agent_id = 'Q,\"uoted\"'".into()),
        (r#"{"framework": "AutoGen"}"#.into(), "framework = 'autogen'".into()),
        (r#"{"provider": "google"}"#.into(), "provider = 'google'".into()),
        (r#"{"model": "gpt-4o"}"#.into(), "model = 'gpt-4o'".into()),
        (r#"{"message_type": "tool_execution"}"#.into(), "message_type = 'tool_execution'".into()),
        (r#"{"success": false}"#.into(), "NOT success".into()),
        (r#"{"success": true, "provider": "anthropic"}"#.into(), "success AND provider = 'anthropic'".into()),
        (
            r#"{"search": "RATE"}"#.into(),
            "(agent_id ILIKE '%rate%' OR agent_name ILIKE '%rate%' OR model ILIKE '%rate%' OR error_message ILIKE '%rate%')".into(),
        ),
        (
            r#"{"search": "sonar-small"}"#.into(),
            "(agent_id ILIKE '%sonar-small%' OR agent_name ILIKE '%sonar-small%' OR model ILIKE '%sonar-small%' OR error_message ILIKE '%sonar-small%')".into(),
        ),
        (r#"{"search": "%"}"#.into(), "(strpos(agent_id, '%') > 0 OR strpos(coalesce(agent_name, ''), '%') > 0 OR strpos(coalesce(model, ''), '%') > 0 OR strpos(coalesce(error_message, ''), '%') > 0)".into()),
        (r#"{"search": "_"}"#.into(), "(strpos(agent_id, '_') > 0 OR strpos(coalesce(agent_name, ''), '_') > 0 OR strpos(coalesce(model, ''), '_') > 0 OR strpos(coalesce(error_message, ''), '_') > 0)".into()),
        (
            "{\"start_date\": \"START\"}".into(),
            "\"timestamp\" >= 'START'::date::timestamp AT TIME ZONE 'UTC'".into(),
        ),
        (
            "{\"end_date\": \"START\"}".into(),
            "\"timestamp\" < ('START'::date + 1)::timestamp AT TIME ZONE 'UTC'".into(),
        ),
        (
            "{\"start_date\": \"STARTT12:00:00Z\", \"end_date\": \"ENDT06:00:00+02:00\"}".into(),
            "\"timestamp\" >= 'START 12:00:00+00' AND \"timestamp\" < 'END 06:00:00+02'".into(),
        ),
        (
            format!("{{\"user_id\": \"{u}\", \"provider\": \"openai\", \"success\": true, \"start_date\": \"START\", \"end_date\": \"END\", \"framework\": \"langchain\"}}"),
            format!("user_id = '{u}' AND provider = 'openai' AND success AND \"timestamp\" >= 'START'::date::timestamp AT TIME ZONE 'UTC' AND \"timestamp\" < ('END'::date + 1)::timestamp AT TIME ZONE 'UTC' AND framework = 'langchain'"),
        ),
        (r#"{"agent_id": "x' OR '1'='1"}"#.into(), "false".into()),
        (r#"{"search": "'; DROP TABLE usage_analytics.model_pricing; --"}"#.into(), "false".into()),
    ]
}

#[test]
fn every_filter_equals_an_independent_where_clause() {
    let c = cluster();
    let db = c.fresh_db("filters");
    let mut client = c.connect(&db);
    let prices_before = scalar(&mut client, "SELECT count(*) FROM usage_analytics.model_pricing");
    load_sample(&mut client, 3000, 4);
    let start = scalar(&mut client, "SELECT ((now() AT TIME ZONE 'UTC')::date - 2)::text").unwrap();
    let end = scalar(&mut client, "SELECT ((now() AT TIME ZONE 'UTC')::date - 1)::text").unwrap();
    for (filters, clause) in cases() {
        let filters = filters.replace("START", &start).replace("END", &end);
        let clause = clause.replace("START", &start).replace("END", &end);
        let expected = ids(
            &mut client,
            &format!(
                "SELECT id FROM usage_analytics.agent_usage_detailed WHERE {clause} ORDER BY \"timestamp\" DESC, id DESC"
            ),
        );
        let got = record_ids(&mut client, &filters, 1_000_000, 0);
        assert_eq!(got, expected, "get_usage_records({filters}) vs WHERE {clause}");
        let mut exported = ids(
            &mut client,
            &format!("SELECT id FROM usage_analytics.usage_export($${filters}$$)"),
        );
        exported.reverse();
        assert_eq!(exported, expected, "usage_export({filters})");
        let summary_requests = scalar(
            &mut client,
            &format!("SELECT usage_analytics.get_usage_summary($${filters}$$) ->> 'total_requests'"),
        );
        assert_eq!(
            summary_requests,
            Some(expected.len().to_string()),
            "summary({filters})"
        );
    }
    assert!(
        !record_ids(&mut client, r#"{"search": "rate"}"#, 10, 0).is_empty(),
        "the search case is not vacuous"
    );
    assert_eq!(
        scalar(&mut client, "SELECT count(*) FROM usage_analytics.model_pricing"),
        prices_before,
        "injection attempt changed data"
    );
}

#[test]
fn pages_tile_with_offset_and_with_keyset() {
    let c = cluster();
    let db = c.fresh_db("paging");
    let mut client = c.connect(&db);
    load_sample(&mut client, 1000, 3);
    let all = record_ids(&mut client, r#"{"provider": "openai"}"#, 1_000_000, 0);
    assert!(all.len() > 100);
    let mut tiled = Vec::new();
    let mut offset = 0;
    loop {
        let page = record_ids(&mut client, r#"{"provider": "openai"}"#, 37, offset);
        if page.is_empty() {
            break;
        }
        offset += page.len() as i64;
        tiled.extend(page);
    }
    assert_eq!(tiled, all, "offset pages leave gaps or repeats");

    let mut keyset = Vec::new();
    let mut position: Option<(String, String)> = None;
    loop {
        let filters = match &position {
            None => r#"{"provider": "openai"}"#.to_string(),
            Some((ts, id)) => {
                format!(r#"{{"provider": "openai", "after_timestamp": "{ts}", "after_id": "{id}"}}"#)
            }
        };
        let page = text_rows(
            &mut client,
            &format!(
                "SELECT id, to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
                   FROM usage_analytics.get_usage_records($${filters}$$, 50)"
            ),
        );
        let Some(last) = page.last() else { break };
        position = Some((last[1].clone().unwrap(), last[0].clone().unwrap()));
        keyset.extend(page.into_iter().map(|r| r[0].clone().unwrap()));
    }
    assert_eq!(keyset, all, "keyset pages leave gaps or repeats");
}

/// Pages filtered on columns without statistics are read from the newest
/// rows (1,000 per row asked for) when those hold the page, and planned
/// otherwise: small pages over 3,000 rows take both routes, dense and rare
/// filters alike, and every page equals an independent WHERE clause.
#[test]
fn filtered_pages_equal_the_where_clause_on_both_routes() {
    let c = cluster();
    let db = c.fresh_db("filtered_pages");
    let mut client = c.connect(&db);
    load_sample(&mut client, 3000, 4);
    let cases = [
        // Every fifth row: the newest rows hold any small page.
        (
            r#"{"provider": "openai", "model": "gpt-4o"}"#,
            "provider = 'openai' AND model = 'gpt-4o'",
        ),
        // Only on an older day (the sample's framework follows the day).
        (
            r#"{"framework": "hybrid", "message_type": "chat"}"#,
            "framework = 'hybrid' AND message_type = 'chat'",
        ),
        (
            r#"{"provider": "google", "success": false}"#,
            "provider = 'google' AND NOT success",
        ),
        (
            r#"{"provider": "google", "model": "gemini-exp-1206", "message_type": "chat", "success": false}"#,
            "provider = 'google' AND model = 'gemini-exp-1206' AND message_type = 'chat' AND NOT success",
        ),
        (
            r#"{"provider": "openai", "model": "no-such-model"}"#,
            "provider = 'openai' AND model = 'no-such-model'",
        ),
    ];
    let mut routes = std::collections::BTreeSet::new();
    for (filters, clause) in cases {
        let matching = ids(
            &mut client,
            &format!("SELECT id FROM usage_analytics.agent_usage_detailed WHERE {clause}"),
        )
        .len();
        for (limit, offset) in [(1, 0), (2, 1), (1, 5), (5, 0), (40, 0)] {
            let expected = ids(
                &mut client,
                &format!(
                    "SELECT id FROM usage_analytics.agent_usage_detailed WHERE {clause}
                      ORDER BY \"timestamp\" DESC, id DESC LIMIT {limit} OFFSET {offset}"
                ),
            );
            let got = record_ids(&mut client, filters, limit, offset);
            assert_eq!(got, expected, "get_usage_records({filters}, {limit}, {offset})");
            // Which route served it: the newest rows hold the page, or not.
            let window = (limit + offset) * 1000;
            let in_window: i64 = scalar(
                &mut client,
                &format!(
                    "SELECT count(*) FROM (SELECT * FROM usage_analytics.agent_usage_detailed
                                           ORDER BY \"timestamp\" DESC, id DESC LIMIT {window}) u
                      WHERE {clause}"
                ),
            )
            .unwrap()
            .parse()
            .unwrap();
            routes.insert((window < 3000, in_window >= limit + offset, matching > 0));
        }
    }
    for route in [
        (true, true, true),
        (true, false, true),
        (true, false, false),
        (false, true, true),
    ] {
        assert!(
            routes.contains(&route),
            "no case took route {route:?}: {routes:?}"
        );
    }
}

#[test]
fn bad_filters_and_limits_are_refused_naming_the_problem() {
    let c = cluster();
    let db = c.fresh_db("badfilters");
    let mut client = c.connect(&db);
    let cases = [
        (r#"{"usr_id": "x"}"#, "usr_id"),
        (r#"{"success": "yes"}"#, "success"),
        (r#"{"user_id": "42"}"#, "user_id"),
        (r#"{"start_date": "last tuesday"}"#, "start_date"),
        (r#"{"end_date": 20240101}"#, "end_date"),
        (r#"{"provider": {"$ne": null}}"#, "provider"),
        (r#"[1, 2]"#, "filters"),
    ];
    for (filters, key) in cases {
        for function in [
            format!("SELECT count(*) FROM usage_analytics.get_usage_records($${filters}$$)"),
            format!("SELECT usage_analytics.get_usage_summary($${filters}$$)"),
            format!("SELECT count(*) FROM usage_analytics.usage_trend('day', $${filters}$$)"),
            format!("SELECT usage_analytics.export_usage_csv($${filters}$$)"),
            format!("SELECT count(*) FROM usage_analytics.usage_export($${filters}$$)"),
        ] {
            let err = client.query(&function, &[]).unwrap_err();
            let (code, message) = db_error(&err);
            assert_eq!(code, "22023", "{function}: {message}");
            assert!(
                message.contains(key),
                "{function}: {message:?} does not name {key}"
            );
        }
    }
    for (limit, offset, word) in [(-1, 0, "limit"), (10, -5, "offset")] {
        let err = client
            .query(
                &format!("SELECT * FROM usage_analytics.get_usage_records('{{}}', {limit}, {offset})"),
                &[],
            )
            .unwrap_err();
        assert!(db_error(&err).1.contains(word));
    }
    let err = client
        .query("SELECT * FROM usage_analytics.usage_trend('hour')", &[])
        .unwrap_err();
    assert!(db_error(&err).1.contains("granularity"));
}

#[test]
fn csv_export_and_copy_round_trip_through_a_csv_reader() {
    let c = cluster();
    let db = c.fresh_db("csvexport");
    let mut client = c.connect(&db);
    load_sample(&mut client, 500, 2);
    let document: String = client
        .query_one(
            "SELECT usage_analytics.export_usage_csv('{\"provider\": \"openai\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(document.ends_with("\r\n"));
    let mut reader = csv::Reader::from_reader(document.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header[0], "id");
    assert!(header.contains(&"request_metadata".to_string()) && header.contains(&"cost_usd".to_string()));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let expected = text_rows(
        &mut client,
        "SELECT id, agent_id, coalesce(error_message, ''), request_metadata::text, coalesce(cost_usd::text, ''),
                to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
           FROM usage_analytics.agent_usage_detailed WHERE provider = 'openai' ORDER BY \"timestamp\", id",
    );
    assert_eq!(records.len(), expected.len());
    let mut neutralised = 0;
    for (record, row) in records.iter().zip(&expected) {
        assert_eq!(record.get(col("id")), row[0].as_deref());
        assert_eq!(
            record.get(col("agent_id")),
            row[1].as_deref(),
            "agent_id round trip"
        );
        let error = row[2].as_deref().unwrap();
        let cell = record.get(col("error_message")).unwrap();
        if error.starts_with(['=', '+', '-', '@']) {
            assert_eq!(cell, format!("'{error}"), "formula not neutralised");
            neutralised += 1;
        } else {
            assert_eq!(cell, error, "error_message round trip");
        }
        let metadata: serde_json::Value =
            serde_json::from_str(record.get(col("request_metadata")).unwrap()).unwrap();
        assert_eq!(
            metadata,
            serde_json::from_str::<serde_json::Value>(row[3].as_deref().unwrap()).unwrap()
        );
        assert_eq!(record.get(col("cost_usd")), row[4].as_deref());
        assert_eq!(record.get(col("timestamp")), row[5].as_deref());
    }
    assert!(neutralised > 0, "the sample has formula-like error messages");

    // COPY of usage_export: the analysts' path.
    let mut out = Vec::new();
    let mut copy = client
        .copy_out(
            "COPY (SELECT * FROM usage_analytics.usage_export('{\"provider\": \"openai\"}')) TO STDOUT WITH (FORMAT csv, HEADER)",
        )
        .unwrap();
    std::io::Read::read_to_end(&mut copy, &mut out).unwrap();
    let mut reader = csv::Reader::from_reader(out.as_slice());
    let copied: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(copied.len(), expected.len());
    let agent_col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "agent_id")
        .unwrap();
    for (record, row) in copied.iter().zip(&expected) {
        assert_eq!(record.get(0), row[0].as_deref());
        assert_eq!(record.get(agent_col), row[1].as_deref());
    }
}

#[test]
fn a_page_is_an_index_scan() {
    let c = cluster();
    let db = c.fresh_db("plans");
    let mut client = c.connect(&db);
    load_sample(&mut client, 20000, 3);
    client
        .batch_execute("ANALYZE usage_analytics.agent_usage_detailed")
        .unwrap();
    let plan = |client: &mut Client, filters: &str| {
        text_rows(
            client,
            &format!(
                // The statement get_usage_records runs (EXECUTE plans it with the document as a constant).
                "EXPLAIN SELECT u.* FROM usage_analytics.agent_usage_detailed u
                  WHERE usage_analytics._usage_matches(u, '{filters}')
                  ORDER BY u.\"timestamp\" DESC, u.id DESC LIMIT 100"
            ),
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
    };
    let by_user = plan(&mut client, &format!("{{\"user_id\": \"{}\"}}", USERS[0]));
    assert!(by_user.contains("user_id_timestamp_idx"), "{by_user}");
    let by_agent = plan(
        &mut client,
        "{\"agent_id\": \"coder\", \"start_date\": \"2020-01-01\"}",
    );
    assert!(by_agent.contains("Index"), "{by_agent}");
    let newest = plan(&mut client, "{}");
    assert!(
        newest.contains("Index Scan Backward") && !newest.contains("Sort  "),
        "{newest}"
    );
}
