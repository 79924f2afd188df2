//! Pricing, tracking, bad input, price history, cache invalidation and
//! partition routing, against a real cluster with the installed extension.

use integration_tests::{cluster, db_error, scalar};

/// (provider, model as SDKs send it, canonical model or "" for unknown, input, output).
/// An exact id of the shipped catalog wins (dated snapshots have their own
/// prices); the alias rules apply only when none matches.
const CASES: &[(&str, &str, &str, i64, i64)] = &[
    ("openai", "gpt-4o", "gpt-4o", 1000, 1000),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06", 1234, 567),
    ("openai", "GPT-4o-2024-05-13", "gpt-4o-2024-05-13", 1, 0),
    (
        "openai",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini-2024-07-18",
        2_000_000,
        300_000,
    ),
    ("openai", "openai/gpt-4o-mini", "gpt-4o-mini", 7, 9),
    (
        "openai",
        "gpt-4-turbo-2024-04-09",
        "gpt-4-turbo-2024-04-09",
        4096,
        1024,
    ),
    ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-0125", 15, 0),
    // A point release is another model, never its predecessor.
    ("openai", "gpt-4.1", "gpt-4.1", 1000, 1000),
    ("openai", "gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14", 10, 10),
    ("openai", "", "gpt-4o-mini", 100, 100),
    (
        "anthropic",
        "claude-3-5-sonnet-20241022",
        "claude-3-5-sonnet",
        3333,
        777,
    ),
    ("anthropic", "claude-3.5-sonnet", "claude-3-5-sonnet", 1, 1),
    (
        "anthropic",
        "claude-3-5-sonnet-latest",
        "claude-3-5-sonnet",
        10,
        10,
    ),
    (
        "anthropic",
        "claude-3-opus-20240229",
        "claude-3-opus",
        2_147_483_647,
        2_147_483_647,
    ),
    ("anthropic", "claude-3-haiku-20240307", "claude-3-haiku", 50, 5),
    (
        "anthropic",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "claude-3-haiku",
        8,
        8,
    ),
    (
        "perplexity",
        "llama-3.1-sonar-small-128k-online",
        "llama-3.1-sonar-small-128k-online",
        999,
        1,
    ),
    (
        "perplexity",
        "llama-3.1-sonar-large-128k-online",
        "llama-3.1-sonar-large-128k-online",
        10,
        20,
    ),
    (
        "perplexity",
        "llama-3.1-sonar-huge-128k-online",
        "llama-3.1-sonar-huge-128k-online",
        3,
        4,
    ),
    ("google", "gemini-1.5-pro-002", "gemini-1.5-pro", 128_000, 8192),
    (
        "google",
        "models/gemini-1.5-flash-001",
        "gemini-1.5-flash",
        100,
        0,
    ),
    ("google", "gemini-1.5-flash-latest", "gemini-1.5-flash", 33, 66),
    ("google", "gemini-1.5-flash-8b", "", 10, 10),
    ("openai", "gpt-4o-audio-preview", "", 10, 10),
    // Through a gateway ("other"), a catalog id is still priced.
    ("other", "mistral-large-latest", "mistral-large-latest", 10, 10),
    ("openai", "no-such-model-2025", "", 10, 10),
];

#[test]
fn calculate_cost_matches_an_independent_oracle() {
    let c = cluster();
    let db = c.fresh_db("oracle");
    let mut client = c.connect(&db);
    for (provider, model, canonical, input, output) in CASES {
        let resolved = scalar(
            &mut client,
            &format!("SELECT usage_analytics.resolve_model('{provider}', '{model}')"),
        );
        let expected_model = (!canonical.is_empty()).then(|| canonical.to_string());
        assert_eq!(resolved, expected_model, "resolve_model({provider}, {model})");
        // Oracle: exact numeric arithmetic straight from the price table:
        // the standard-tier row in force now (the caller's provider's, else
        // the first provider's), above-threshold prices past its threshold.
        let sql = format!(
            "SELECT (SELECT ({input}::numeric * CASE WHEN {input} > above_input_tokens
                                                      THEN coalesce(above_input_usd_per_1k, input_usd_per_1k)
                                                      ELSE input_usd_per_1k END
                             + {output}::numeric * CASE WHEN {input} > above_input_tokens
                                                        THEN coalesce(above_output_usd_per_1k, output_usd_per_1k)
                                                        ELSE output_usd_per_1k END) / 1000
                       FROM usage_analytics.model_pricing
                      WHERE model = '{canonical}' AND service_tier = 'standard'
                        AND effective_from <= now() AND (effective_to IS NULL OR effective_to > now())
                        AND provider = coalesce(
                              (SELECT provider FROM usage_analytics.model_pricing
                                WHERE model = '{canonical}' AND provider = '{provider}' LIMIT 1),
                              (SELECT min(provider) FROM usage_analytics.model_pricing WHERE model = '{canonical}'))
                      ORDER BY effective_from DESC LIMIT 1)
                    IS NOT DISTINCT FROM
                    usage_analytics.calculate_cost('{provider}', '{model}', {input}, {output})"
        );
        assert_eq!(
            scalar(&mut client, &sql).as_deref(),
            Some("t"),
            "cost of {provider}/{model}"
        );
    }
}

/// COPYs one CSV line of (user_id, agent_id, framework, provider,
/// message_type, input_tokens, output_tokens, model) into the usage table.
fn copy_usage_row(client: &mut postgres::Client, line: &str) {
    copy_usage_rows(client, line, 1);
}

/// COPYs `line` `times` times in one statement, written row by row: the
/// client then sends small messages (COPY holds a whole message in memory).
fn copy_usage_rows(client: &mut postgres::Client, line: &str, times: usize) {
    let mut writer = client
        .copy_in(
            "COPY usage_analytics.agent_usage_detailed (user_id, agent_id, framework, provider, message_type,
                  input_tokens, output_tokens, model) FROM STDIN WITH (FORMAT csv)",
        )
        .unwrap();
    let row = format!("{line}\n");
    for _ in 0..times {
        std::io::Write::write_all(&mut writer, row.as_bytes()).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn tracked_rows_carry_cost_total_and_canonical_model() {
    let c = cluster();
    let db = c.fresh_db("tracked");
    let mut client = c.connect(&db);
    let id: uuid::Uuid = client
        .query_one(
            "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'agent', 'Agent', ' LangChain ',
                    'OpenAI', 'Chat', 1234, 567, 850, true, NULL, '{}', 'gpt-4o-2024-08-06')",
            &[],
        )
        .unwrap()
        .get(0);
    let row = client
        .query_one(
            "SELECT u.cost_usd::text, u.total_tokens, u.model, u.requested_model, u.provider, u.framework
               FROM usage_analytics.agent_usage_detailed u WHERE u.id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "0.008755");
    assert_eq!(row.get::<_, i32>(1), 1801);
    assert_eq!(row.get::<_, String>(2), "gpt-4o-2024-08-06");
    assert_eq!(row.get::<_, String>(3), "gpt-4o-2024-08-06");
    assert_eq!(row.get::<_, String>(4), "openai");
    assert_eq!(row.get::<_, String>(5), "langchain");

    // Unknown model: unpriced (NULL, never 0), canonical model NULL.
    client
        .batch_execute(
            "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'unknown', NULL, 'hybrid',
                    'other', 'chat', 10, 10, 5, true, NULL, '{}', 'some-new-model')",
        )
        .unwrap();
    let unknown = client
        .query_one(
            "SELECT cost_usd IS NULL, model IS NULL FROM usage_analytics.agent_usage_detailed
              WHERE agent_id = 'unknown'",
            &[],
        )
        .unwrap();
    assert!(unknown.get::<_, bool>(0) && unknown.get::<_, bool>(1));

    // Bulk paths price exactly like track_detailed_usage; an explicit cost is kept.
    client
        .batch_execute(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, model)
             VALUES (gen_random_uuid(), 'bulk', 'autogen', 'anthropic', 'chat', 1000, 1000, 'claude-3-haiku-20240307');
             INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, model, cost_usd)
             VALUES (gen_random_uuid(), 'explicit', 'autogen', 'anthropic', 'chat', 1000, 1000, 'claude-3-haiku', 42);",
        )
        .unwrap();
    copy_usage_row(
        &mut client,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,copied,langchain,google,chat,100,0,gemini-1.5-flash-002",
    );
    let costs = |agent: &str, client: &mut postgres::Client| {
        scalar(
            client,
            &format!(
                "SELECT cost_usd::text FROM usage_analytics.agent_usage_detailed WHERE agent_id = '{agent}'"
            ),
        )
    };
    assert_eq!(costs("bulk", &mut client).as_deref(), Some("0.0015"));
    assert_eq!(costs("explicit", &mut client).as_deref(), Some("42"));
    assert_eq!(costs("copied", &mut client).as_deref(), Some("0.0000075"));
}

#[test]
fn bad_input_names_the_argument_and_writes_nothing() {
    let c = cluster();
    let db = c.fresh_db("badinput");
    let mut client = c.connect(&db);
    let ok =
        "gen_random_uuid(), 'agent', 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true, NULL, '{}', NULL";
    let bad: &[(&str, &str)] = &[
        (
            "NULL, 'agent', 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true",
            "user_id",
        ),
        (
            "gen_random_uuid(), '', 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true",
            "agent_id",
        ),
        (
            "gen_random_uuid(), NULL, 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true",
            "agent_id",
        ),
        (
            "gen_random_uuid(), 'a', 'name', ' ', 'openai', 'chat', 1, 1, 1, true",
            "framework",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', NULL, 'chat', 1, 1, 1, true",
            "provider",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', '', 1, 1, 1, true",
            "message_type",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', 'chat', -1, 1, 1, true",
            "input_tokens",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', 'chat', 1, -1, 1, true",
            "output_tokens",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', 'chat', 1, 1, -5, true",
            "response_time_ms",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', 'chat', 1, 1, 1, NULL",
            "success",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', 'chat', 2147483647, 1, 1, true",
            "output_tokens",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true, NULL, '[1]'",
            "request_metadata",
        ),
        (
            "gen_random_uuid(), 'a', 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true, NULL,
             jsonb_build_object('blob', repeat('x', 2 * 1024 * 1024))",
            "request_metadata",
        ),
        (
            "gen_random_uuid(), repeat('a', 201), 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true",
            "agent_id",
        ),
        (
            "gen_random_uuid(), 'a' || chr(7), 'name', 'langchain', 'openai', 'chat', 1, 1, 1, true",
            "agent_id",
        ),
    ];
    for (args, argument) in bad {
        let err = client
            .query_one(
                &format!("SELECT usage_analytics.track_detailed_usage({args})"),
                &[],
            )
            .unwrap_err();
        let (code, message) = db_error(&err);
        assert_eq!(code, "22023", "{args}: {message}");
        assert!(
            message.contains(argument),
            "{args}: message {message:?} does not name {argument}"
        );
    }
    let count = scalar(
        &mut client,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
    assert_eq!(count.as_deref(), Some("0"), "refused calls wrote rows");
    let counters = scalar(&mut client, "SELECT count(*) FROM usage_analytics.usage_counters");
    assert_eq!(counters.as_deref(), Some("0"), "refused calls moved counters");
    client
        .query_one(&format!("SELECT usage_analytics.track_detailed_usage({ok})"), &[])
        .unwrap();
    let err = client
        .query_one(
            "SELECT usage_analytics.calculate_cost('openai', NULL, -1, 0)",
            &[],
        )
        .unwrap_err();
    assert!(db_error(&err).1.contains("input_tokens"));
}

#[test]
fn price_history_and_cache_invalidation_across_sessions() {
    let c = cluster();
    let db = c.fresh_db("history");
    let mut reader = c.connect(&db);
    let mut admin = c.connect(&db);
    let cost_at = |client: &mut postgres::Client, at: &str| {
        scalar(
            client,
            &format!("SELECT usage_analytics.calculate_cost('openai', 'gpt-4o', 1000, 0, {at})"),
        )
    };
    // The reader's backend loads and caches the prices.
    assert_eq!(cost_at(&mut reader, "now()").as_deref(), Some("0.0025"));
    let old_row = scalar(
        &mut reader,
        "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'a', NULL, 'langchain', 'openai', 'chat',
                1000, 0, 1, true, NULL, '{}', 'gpt-4o')::text",
    )
    .unwrap();

    // A future price changes nothing before its date.
    admin
        .batch_execute("SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 0.005, 0.02, now() + interval '30 days')")
        .unwrap();
    assert_eq!(cost_at(&mut reader, "now()").as_deref(), Some("0.0025"));
    assert_eq!(
        cost_at(&mut reader, "now() + interval '31 days'").as_deref(),
        Some("0.005")
    );

    // A price in force now is seen by the other session at once, no reconnect.
    admin
        .batch_execute("SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 0.004, 0.016, now() - interval '1 minute')")
        .unwrap();
    assert_eq!(cost_at(&mut reader, "now()").as_deref(), Some("0.004"));
    // Old rows keep their historical cost; history before the change is intact.
    let kept = scalar(
        &mut reader,
        &format!("SELECT cost_usd::text FROM usage_analytics.agent_usage_detailed WHERE id = '{old_row}'"),
    );
    assert_eq!(kept.as_deref(), Some("0.0025"));
    assert_eq!(
        cost_at(&mut reader, "now() - interval '1 day'").as_deref(),
        Some("0.0025")
    );
    // A direct INSERT into model_pricing (as a DBA would) is seen too.
    admin
        .batch_execute(
            "INSERT INTO usage_analytics.model_pricing (provider, model, input_usd_per_1k, output_usd_per_1k)
             VALUES ('openai', 'house-model', 0.00125, 0.01)",
        )
        .unwrap();
    assert_eq!(
        scalar(
            &mut reader,
            "SELECT usage_analytics.calculate_cost('openai', 'house-model-2025-08-07', 1000, 1000)"
        )
        .as_deref(),
        Some("0.01125")
    );
    // A rolled-back price change is never seen.
    admin
        .batch_execute(
            "BEGIN; SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 9, 9, now() - interval '1 second'); ROLLBACK;",
        )
        .unwrap();
    assert_eq!(cost_at(&mut reader, "now()").as_deref(), Some("0.004"));
}

#[test]
fn rows_route_to_monthly_partitions_and_the_default_catches_the_rest() {
    let c = cluster();
    let db = c.fresh_db("partitions");
    let mut client = c.connect(&db);
    client
        .batch_execute(
            "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider, \"timestamp\")
             VALUES (gen_random_uuid(), 'now', 'openai', now()),
                    (gen_random_uuid(), 'future', 'openai', now() + interval '5 years'),
                    (gen_random_uuid(), 'past', 'openai', now() - interval '7 months');",
        )
        .unwrap();
    let part = |agent: &str, client: &mut postgres::Client| {
        scalar(
            client,
            &format!("SELECT tableoid::regclass::text FROM usage_analytics.agent_usage_detailed WHERE agent_id = '{agent}'"),
        )
        .unwrap()
    };
    assert!(part("now", &mut client).starts_with("usage_analytics.agent_usage_detailed_p"));
    assert_eq!(
        part("future", &mut client),
        "usage_analytics.agent_usage_detailed_default"
    );
    assert_eq!(
        part("past", &mut client),
        "usage_analytics.agent_usage_detailed_default"
    );
    // Creating the past months moves the stranded row into its partition.
    let created = scalar(&mut client, "SELECT usage_analytics.ensure_partitions(3, 8)").unwrap();
    assert!(created.parse::<i32>().unwrap() >= 7, "created {created}");
    assert!(part("past", &mut client).starts_with("usage_analytics.agent_usage_detailed_p"));
    assert_eq!(
        scalar(&mut client, "SELECT usage_analytics.ensure_partitions(3, 8)").as_deref(),
        Some("0")
    );
    assert_eq!(
        scalar(
            &mut client,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        )
        .as_deref(),
        Some("3")
    );
    let err = client
        .query_one("SELECT usage_analytics.ensure_partitions(-1)", &[])
        .unwrap_err();
    assert!(db_error(&err).1.contains("months_ahead"));
}

#[test]
fn self_test_is_green_on_a_fresh_install() {
    let c = cluster();
    let db = c.fresh_db("selftest");
    let mut client = c.connect(&db);
    let failing = scalar(
        &mut client,
        "SELECT string_agg(check_name || ': ' || detail, '; ') FROM usage_analytics.self_test() WHERE NOT ok",
    );
    assert_eq!(failing, None);
    let checks = scalar(&mut client, "SELECT count(*) FROM usage_analytics.self_test()").unwrap();
    assert!(checks.parse::<i32>().unwrap() >= 8);
}

/// Re-inserting rows (INSERT … SELECT, ETL) prices them from what the caller
/// sent (requested_model): an unknown model stays unpriced, never the
/// provider's default (issue: reliability).
#[test]
fn reinserted_rows_are_priced_from_what_was_sent() {
    let c = cluster();
    let db = c.fresh_db("reinsert");
    let mut client = c.connect(&db);
    client
        .batch_execute(
            "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'etl-unknown', NULL, 'hybrid',
                    'openai', 'chat', 100, 100, 5, true, NULL, '{}', 'no-such-model-x');
             SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'etl-known', NULL, 'hybrid',
                    'openai', 'chat', 100, 100, 5, true, NULL, '{}', 'gpt-4.1');
             CREATE TABLE staging AS SELECT * FROM usage_analytics.agent_usage_detailed;
             INSERT INTO usage_analytics.agent_usage_detailed
                    (user_id, agent_id, provider, model, requested_model, input_tokens, output_tokens, \"timestamp\")
             SELECT user_id, agent_id || '-copy', provider, model, requested_model, input_tokens, output_tokens,
                    \"timestamp\"
               FROM staging;",
        )
        .unwrap();
    let row = |agent: &str| {
        scalar(
            &mut c.connect(&db),
            &format!(
                "SELECT concat_ws('|', coalesce(cost_usd::text, 'NULL'), coalesce(model, 'NULL'), requested_model)
                   FROM usage_analytics.agent_usage_detailed WHERE agent_id = '{agent}'"
            ),
        )
        .unwrap()
    };
    assert_eq!(row("etl-unknown-copy"), "NULL|NULL|no-such-model-x");
    assert_eq!(row("etl-unknown-copy"), row("etl-unknown"));
    assert_eq!(row("etl-known-copy"), row("etl-known"));
    assert!(
        row("etl-known").ends_with("|gpt-4.1|gpt-4.1"),
        "{}",
        row("etl-known")
    );
}

/// A later BEFORE INSERT row trigger of the DBA's own is handed the checked
/// and priced row, and what it changes is stored along with the price:
/// COPY and INSERT alike.
#[test]
fn a_later_row_trigger_sees_the_priced_row_and_keeps_its_own_change() {
    let c = cluster();
    let db = c.fresh_db("latertrigger");
    let mut client = c.connect(&db);
    let copy_row = |client: &mut postgres::Client, agent: &str| {
        copy_usage_row(
            client,
            &format!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,{agent},LangChain, Google ,chat,100,0,gemini-1.5-flash-002"),
        )
    };
    let stored = |client: &mut postgres::Client, agent: &str| {
        scalar(
            client,
            &format!(
                "SELECT concat_ws('|', cost_usd, provider, framework, model, requested_model, agent_name)
                   FROM usage_analytics.agent_usage_detailed WHERE agent_id = '{agent}'"
            ),
        )
        .unwrap()
    };
    // The pricing trigger alone.
    copy_row(&mut client, "alone");
    let priced = "0.0000075|google|langchain|gemini-1.5-flash|gemini-1.5-flash-002";
    assert_eq!(stored(&mut client, "alone"), priced);

    client
        .batch_execute(
            "CREATE TABLE seen (agent_id text, seen text);
             CREATE FUNCTION note_row() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO seen VALUES (NEW.agent_id,
                     concat_ws('|', NEW.cost_usd, NEW.provider, NEW.framework, NEW.model, NEW.requested_model));
                 NEW.agent_name := 'noted';
                 RETURN NEW;
             END $$;
             CREATE TRIGGER zz_note_row BEFORE INSERT ON usage_analytics.agent_usage_detailed
                 FOR EACH ROW EXECUTE FUNCTION note_row();",
        )
        .unwrap();
    copy_row(&mut client, "copied");
    client
        .batch_execute(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, model)
             VALUES (gen_random_uuid(), 'inserted', 'LangChain', ' Google ', 'chat', 100, 0, 'gemini-1.5-flash-002')",
        )
        .unwrap();
    for agent in ["copied", "inserted"] {
        let seen = scalar(
            &mut client,
            &format!("SELECT seen FROM seen WHERE agent_id = '{agent}'"),
        );
        assert_eq!(
            seen.as_deref(),
            Some(priced),
            "{agent}: what the later trigger was handed"
        );
        assert_eq!(
            stored(&mut client, agent),
            format!("{priced}|noted"),
            "{agent}: what was stored"
        );
    }
}

/// The pricing trigger hands the row back in the executor's slot for bulk
/// loads and restores (src/usage.rs, `handed_back`); the copy of the row
/// PostgreSQL made for it must be freed, or a COPY or INSERT … SELECT keeps
/// one row per row until the statement ends. A later statement trigger
/// reads the backend's memory while the statement's executor memory is
/// still there: ten times the rows must not take more memory.
#[test]
fn a_bulk_load_keeps_no_row_per_row_in_memory() {
    let c = cluster();
    let db = c.fresh_db("bulkmemory");
    let mut client = c.connect(&db);
    client
        .batch_execute(
            // The transition tables spill to disk beyond work_mem.
            "SET work_mem = '64kB';
             CREATE TABLE memory (how text, row_count bigint, used_bytes bigint);
             CREATE FUNCTION note_memory() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO memory SELECT TG_ARGV[0], (SELECT count(*) FROM new_rows), sum(used_bytes)
                   FROM pg_backend_memory_contexts;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER zz_note_memory AFTER INSERT ON usage_analytics.agent_usage_detailed
                 REFERENCING NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION note_memory('');",
        )
        .unwrap();
    let row = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,bulk,LangChain,Google,chat,100,10,gemini-1.5-flash-002";
    for rows in [2_000, 20_000] {
        copy_usage_rows(&mut client, row, rows);
        client
            .batch_execute(&format!(
                "UPDATE memory SET how = 'copy' WHERE how = '';
                 INSERT INTO usage_analytics.agent_usage_detailed
                     (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, model)
                 SELECT gen_random_uuid(), 'bulk', 'LangChain', 'Google', 'chat', 100, 10, 'gemini-1.5-flash-002'
                   FROM generate_series(1, {rows});
                 UPDATE memory SET how = 'insert' WHERE how = '';
                 -- As a restore loads rows (src/usage.rs, `restoring`): kept as given.
                 SET row_security = off;
                 INSERT INTO usage_analytics.agent_usage_detailed
                     (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, model)
                 SELECT gen_random_uuid(), 'restored', 'langchain', 'google', 'chat', 100, 10, 'Gemini-1.5-Flash-002'
                   FROM generate_series(1, {rows});
                 RESET row_security;
                 UPDATE memory SET how = 'restore' WHERE how = '';"
            ))
            .unwrap();
    }
    for how in ["copy", "insert", "restore"] {
        let (few, many): (i64, i64) = {
            let r = client
                .query_one(
                    "SELECT min(used_bytes) FILTER (WHERE row_count = 2000)::bigint,
                            min(used_bytes) FILTER (WHERE row_count = 20000)::bigint
                       FROM memory WHERE how = $1",
                    &[&how],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        // A row kept per row would be 18,000 rows of about 300 bytes: 5 MB.
        assert!(
            many - few < 1 << 20,
            "{how}: 2,000 rows took {few} bytes, 20,000 took {many}"
        );
    }
    let priced = scalar(
        &mut client,
        "SELECT count(*) FILTER (WHERE cost_usd = 0.0000105 AND model = 'gemini-1.5-flash') || '/' || count(*)
           FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'bulk'",
    );
    assert_eq!(priced.as_deref(), Some("44000/44000"));
    let kept = scalar(
        &mut client,
        "SELECT count(*) FILTER (WHERE cost_usd IS NULL AND model = 'Gemini-1.5-Flash-002') || '/' || count(*)
           FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'restored'",
    );
    assert_eq!(kept.as_deref(), Some("22000/22000"));
}

/// The pricing trigger's function runs as a BEFORE INSERT row trigger only:
/// its in-place path frees the tuple it is handed, which another event's
/// tuple (an INSTEAD OF trigger's on a view, an UPDATE's old row) must not be.
#[test]
fn the_pricing_function_refuses_other_trigger_events() {
    let c = cluster();
    let db = c.fresh_db("pricingevents");
    let mut client = c.connect(&db);
    client
        .batch_execute(
            "CREATE TABLE t (a int);
             INSERT INTO t VALUES (1);
             CREATE VIEW v AS SELECT a FROM t;
             CREATE TRIGGER misused INSTEAD OF UPDATE ON v
                 FOR EACH ROW EXECUTE FUNCTION usage_analytics.price_usage_row();
             CREATE TRIGGER misused BEFORE UPDATE ON usage_analytics.agent_usage_detailed
                 FOR EACH ROW EXECUTE FUNCTION usage_analytics.price_usage_row();",
        )
        .unwrap();
    copy_usage_row(
        &mut client,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,misused,LangChain,Google,chat,100,0,gemini-1.5-flash-002",
    );
    for update in [
        "UPDATE v SET a = 2",
        "UPDATE usage_analytics.agent_usage_detailed SET input_tokens = 1",
    ] {
        let err = client.batch_execute(update).unwrap_err();
        let (_, message) = db_error(&err);
        assert!(
            message.contains("price_usage_row must fire BEFORE INSERT"),
            "{update}: {message}"
        );
    }
}
