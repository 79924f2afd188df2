//! Hostile inputs (issue: security review of 0.1.0): each test is one
//! regression found by the review, checked through every path a client can
//! take (the API functions, plain `INSERT`, `COPY … FROM STDIN`), with real
//! login roles, on a database of its own.

use integration_tests::{cluster, db_error, load_sample, scalar, text_rows, USERS};
use postgres::Client;
use std::io::Write;

const USAGE: &str = "usage_analytics.agent_usage_detailed";

/// Login roles of one test database, named after it (roles are cluster-wide).
struct Db {
    name: String,
}

impl Db {
    fn new(test: &str) -> (Db, Client) {
        let c = cluster();
        let db = Db {
            name: c.fresh_db(test),
        };
        let owner = c.connect(&db.name);
        (db, owner)
    }

    fn role(&self, who: &str) -> String {
        format!("{}_{who}", self.name)
    }

    /// `CREATE ROLE <db>_<who> LOGIN` granted `group`; a reader is mapped to `user`.
    fn login(&self, owner: &mut Client, who: &str, group: &str, user: Option<&str>) -> String {
        let role = self.role(who);
        let mut sql = format!("CREATE ROLE {role} LOGIN; GRANT {group} TO {role};");
        if group == "usage_analytics_admin" {
            // Admin rights are per database: listed by grant_admin.
            sql.push_str(&format!("SELECT usage_analytics.grant_admin('{role}');"));
        }
        if let Some(user) = user {
            sql.push_str(&format!(
                "INSERT INTO usage_analytics.user_role_map VALUES ('{role}', '{user}');"
            ));
        }
        must(owner, &sql);
        role
    }

    fn connect(&self, role: &str) -> Client {
        cluster().connect_as(&self.name, role)
    }
}

fn must(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {:?}", db_error(&e)));
}

fn count(client: &mut Client, sql: &str) -> i64 {
    scalar(client, sql)
        .unwrap_or_else(|| panic!("no value from {sql}"))
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A refused statement: (SQLSTATE, message, detail).
struct Refusal {
    code: String,
    message: String,
    detail: Option<String>,
}

fn refusal(err: postgres::Error) -> Refusal {
    let detail = err.as_db_error().and_then(|d| d.detail()).map(str::to_string);
    let (code, message) = db_error(&err);
    Refusal {
        code,
        message,
        detail,
    }
}

fn refused(client: &mut Client, sql: &str) -> Refusal {
    let shown: String = sql.chars().take(300).collect();
    let err = client
        .batch_execute(sql)
        .err()
        .unwrap_or_else(|| panic!("expected refusal of {shown}"));
    refusal(err)
}

/// Asserts the refusal has one of `codes` and a message containing `naming`.
fn assert_refused(r: &Refusal, codes: &[&str], naming: &str, context: &str) {
    assert!(
        codes.contains(&r.code.as_str()),
        "{context}: expected SQLSTATE {codes:?}, got {} {}",
        r.code,
        r.message
    );
    assert!(
        r.message.contains(naming),
        "{context}: message does not name {naming:?}: [{}] {}",
        r.code,
        r.message
    );
}

/// `COPY table (columns) FROM STDIN` in text format; Err when refused.
fn copy_in(client: &mut Client, columns: &str, data: &str) -> Result<u64, postgres::Error> {
    let mut writer = client.copy_in(&format!("COPY {USAGE} ({columns}) FROM STDIN"))?;
    writer.write_all(data.as_bytes()).expect("write COPY data");
    writer.finish()
}

/// One field of COPY's text format.
fn copy_field(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// A SQL string literal (E'' form, so control characters are visible in failures).
fn lit(value: &str) -> String {
    let mut out = String::from("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn rows_in_table(owner: &mut Client) -> i64 {
    count(owner, &format!("SELECT count(*) FROM {USAGE}"))
}

/// (requests, input tokens, output tokens, cost) summed over the exporter's counters.
fn counter_totals(owner: &mut Client) -> Vec<Vec<Option<String>>> {
    text_rows(
        owner,
        "SELECT coalesce(sum(requests), 0)::text, coalesce(sum(input_tokens), 0)::text,
                coalesce(sum(output_tokens), 0)::text, trim_scale(coalesce(sum(cost_usd), 0))::text
           FROM usage_analytics.metrics_usage_counters()",
    )
}

#[test]
fn non_finite_costs_are_refused_on_every_path() {
    let (db, mut owner) = Db::new("hostile_costs");
    let writer_role = db.login(&mut owner, "writer", "usage_analytics_writer", None);
    let mut writer = db.connect(&writer_role);
    load_sample(&mut owner, 200, 1);
    let rows_before = rows_in_table(&mut owner);
    let counters_before = counter_totals(&mut owner);
    let user = USERS[0];

    for cost in ["NaN", "Infinity", "-Infinity", "-1", "-0.000001"] {
        let sql = format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, cost_usd)
             VALUES ('{user}', 'cost-agent', 'openai', 'gpt-4o', 10, 10, '{cost}')"
        );
        for (who, client) in [("writer", &mut writer), ("owner", &mut owner)] {
            let r = refused(client, &sql);
            assert!(
                matches!(r.code.as_str(), "23514" | "22023"),
                "{who}: INSERT cost_usd {cost}: expected a check violation, got {} {}",
                r.code,
                r.message
            );
        }
        let r = refusal(
            copy_in(
                &mut owner,
                "user_id, agent_id, provider, model, input_tokens, output_tokens, cost_usd",
                &format!("{user}\tcost-agent\topenai\tgpt-4o\t10\t10\t{cost}\n"),
            )
            .err()
            .unwrap_or_else(|| panic!("COPY with cost_usd {cost} was accepted")),
        );
        assert!(
            matches!(r.code.as_str(), "23514" | "22023"),
            "COPY cost_usd {cost}: expected a check violation, got {} {}",
            r.code,
            r.message
        );
    }
    assert_eq!(
        rows_in_table(&mut owner),
        rows_before,
        "a refused cost wrote a row"
    );
    assert_eq!(
        counter_totals(&mut owner),
        counters_before,
        "a refused cost moved the exporter's counters"
    );
    // The connections are still usable after the refusals.
    assert_eq!(scalar(&mut writer, "SELECT 1").as_deref(), Some("1"));

    // A finite caller-supplied cost is stored exactly, on each path.
    let exact = "0.123456789012345678901234567890";
    must(
        &mut writer,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, cost_usd)
             VALUES ('{user}', 'finite-writer', 'openai', 'gpt-4o', 10, 10, 0.5)"
        ),
    );
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, cost_usd)
             VALUES ('{user}', 'finite-owner', 'openai', 'gpt-4o', 10, 10, {exact})"
        ),
    );
    copy_in(
        &mut owner,
        "user_id, agent_id, provider, model, input_tokens, output_tokens, cost_usd",
        &format!("{user}\tfinite-copy\topenai\tgpt-4o\t10\t10\t0.5\n"),
    )
    .unwrap_or_else(|e| panic!("COPY with a finite cost: {:?}", db_error(&e)));
    let stored = text_rows(
        &mut owner,
        &format!(
            "SELECT agent_id, cost_usd::text FROM {USAGE}
              WHERE agent_id IN ('finite-writer', 'finite-owner', 'finite-copy') ORDER BY agent_id"
        ),
    );
    assert_eq!(
        stored,
        vec![
            vec![Some("finite-copy".into()), Some("0.5".into())],
            vec![Some("finite-owner".into()), Some(exact.into())],
            vec![Some("finite-writer".into()), Some("0.5".into())],
        ]
    );
    assert_eq!(rows_in_table(&mut owner), rows_before + 3);
    let after = counter_totals(&mut owner);
    assert_eq!(
        after[0][0].as_deref().map(|v| v.parse::<i64>().unwrap()),
        Some(rows_before + 3),
        "counters: {after:?}"
    );
    let cost_delta = scalar(
        &mut owner,
        &format!(
            "SELECT trim_scale({}::numeric - {}::numeric)::text",
            after[0][3].as_deref().unwrap(),
            counters_before[0][3].as_deref().unwrap()
        ),
    );
    assert_eq!(
        cost_delta.as_deref(),
        Some("1.12345678901234567890123456789"),
        "the counters carry the exact caller-supplied costs"
    );
}

#[test]
fn non_finite_timestamps_are_refused() {
    let (db, mut owner) = Db::new("hostile_timestamps");
    let writer_role = db.login(&mut owner, "writer", "usage_analytics_writer", None);
    let mut writer = db.connect(&writer_role);
    let user = USERS[0];
    let counters_before = counter_totals(&mut owner);
    for ts in ["infinity", "-infinity"] {
        let sql = format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\")
             VALUES ('{user}', 'ts-agent', 'openai', 'gpt-4o', 10, 10, '{ts}')"
        );
        for (who, client) in [("writer", &mut writer), ("owner", &mut owner)] {
            let r = refused(client, &sql);
            assert_refused(
                &r,
                &["22023"],
                "timestamp",
                &format!("{who}: INSERT timestamp {ts}"),
            );
        }
        let r = refusal(
            copy_in(
                &mut owner,
                "user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\"",
                &format!("{user}\tts-agent\topenai\tgpt-4o\t10\t10\t{ts}\n"),
            )
            .err()
            .unwrap_or_else(|| panic!("COPY with timestamp {ts} was accepted")),
        );
        assert_refused(&r, &["22023"], "timestamp", &format!("COPY timestamp {ts}"));
    }
    assert_eq!(rows_in_table(&mut owner), 0, "a non-finite timestamp wrote a row");
    assert_eq!(counter_totals(&mut owner), counters_before);
    // A finite timestamp far in the past or future is fine.
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, \"timestamp\")
             VALUES ('{user}', 'ts-agent', '1999-12-31 23:59:59+00'), ('{user}', 'ts-agent', '2199-01-01 00:00:00+00')"
        ),
    );
    assert_eq!(rows_in_table(&mut owner), 2);
}

#[test]
fn identifiers_with_control_characters_or_too_long_are_refused_on_every_path() {
    let (db, mut owner) = Db::new("hostile_identifiers");
    let writer_role = db.login(&mut owner, "writer", "usage_analytics_writer", None);
    let mut writer = db.connect(&writer_role);
    let user = USERS[0];
    let counters_before = counter_totals(&mut owner);

    // (column, value) pairs that must be refused; every other column valid.
    let mut bad: Vec<(&str, String)> = vec![("agent_id", "a".repeat(201))];
    for column in ["agent_id", "provider", "framework", "message_type", "model"] {
        for c in ['\n', '\r', '\t', '\u{1}'] {
            bad.push((column, format!("bad{c}value")));
        }
        bad.push((column, "x".repeat(201)));
    }
    bad.push(("agent_name", "n".repeat(501)));
    bad.push(("error_message", "e".repeat(10_001)));

    let columns = "user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, \
                   output_tokens, response_time_ms, success, error_message, model";
    for (column, value) in &bad {
        let get = |name: &str, default: &str| -> String {
            if name == *column {
                value.clone()
            } else {
                default.to_string()
            }
        };
        let values = [
            get("agent_id", "id-agent"),
            get("agent_name", "Agent"),
            get("framework", "langchain"),
            get("provider", "openai"),
            get("message_type", "chat"),
            get("error_message", "oops"),
            get("model", "gpt-4o"),
        ];
        let [agent_id, agent_name, framework, provider, message_type, error_message, model] = &values;
        let context = |path: &str| {
            format!(
                "{path}: {column} = {:?}",
                value.chars().take(40).collect::<String>()
            )
        };

        // track_detailed_usage, as the writer: the message names the argument.
        let r = refused(
            &mut writer,
            &format!(
                "SELECT usage_analytics.track_detailed_usage('{user}', {}, {}, {}, {}, {}, 10, 10, 100, true, {},
                                                             '{{}}', {})",
                lit(agent_id),
                lit(agent_name),
                lit(framework),
                lit(provider),
                lit(message_type),
                lit(error_message),
                lit(model)
            ),
        );
        assert_refused(&r, &["22023"], column, &context("track_detailed_usage"));

        // Plain INSERT, as the writer and as the owner.
        let insert = format!(
            "INSERT INTO {USAGE} ({columns}) VALUES ('{user}', {}, {}, {}, {}, {}, 10, 10, 100, true, {}, {})",
            lit(agent_id),
            lit(agent_name),
            lit(framework),
            lit(provider),
            lit(message_type),
            lit(error_message),
            lit(model)
        );
        for (who, client) in [("writer", &mut writer), ("owner", &mut owner)] {
            let r = refused(client, &insert);
            assert_refused(&r, &["22023"], column, &context(&format!("INSERT as {who}")));
        }

        // COPY, as the owner.
        let line = [
            user.to_string(),
            copy_field(agent_id),
            copy_field(agent_name),
            copy_field(framework),
            copy_field(provider),
            copy_field(message_type),
            "10".into(),
            "10".into(),
            "100".into(),
            "t".into(),
            copy_field(error_message),
            copy_field(model),
        ]
        .join("\t");
        let r = refusal(
            copy_in(&mut owner, columns, &format!("{line}\n"))
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", context("COPY"))),
        );
        assert_refused(&r, &["22023"], column, &context("COPY"));
    }
    assert_eq!(rows_in_table(&mut owner), 0, "a refused identifier wrote a row");
    assert_eq!(counter_totals(&mut owner), counters_before);

    // Free text may carry tabs and newlines, within its bounds.
    let name = format!("Agent\twith\nlines\r\n{}", "n".repeat(480));
    assert!(name.chars().count() <= 500);
    let message = format!("first line\nsecond\tline\r\n{}", "e".repeat(9_000));
    must(
        &mut writer,
        &format!(
            "SELECT usage_analytics.track_detailed_usage('{user}', 'free-text', {}, 'langchain', 'openai', 'chat',
                                                         10, 10, 100, false, {}, '{{}}', 'gpt-4o')",
            lit(&name),
            lit(&message)
        ),
    );
    must(
        &mut writer,
        &format!(
            "INSERT INTO {USAGE} ({columns}) VALUES ('{user}', 'free-text', {}, 'langchain', 'openai', 'chat',
                                                     10, 10, 100, false, {}, 'gpt-4o')",
            lit(&name),
            lit(&message)
        ),
    );
    copy_in(
        &mut owner,
        columns,
        &format!(
            "{user}\tfree-text\t{}\tlangchain\topenai\tchat\t10\t10\t100\tf\t{}\tgpt-4o\n",
            copy_field(&name),
            copy_field(&message)
        ),
    )
    .unwrap_or_else(|e| panic!("COPY of free text with tabs and newlines: {:?}", db_error(&e)));
    assert_eq!(
        count(
            &mut owner,
            &format!(
                "SELECT count(*) FROM {USAGE} WHERE agent_id = 'free-text' AND agent_name = {} AND error_message = {}",
                lit(&name),
                lit(&message)
            )
        ),
        3,
        "free text with tabs and newlines is stored as sent"
    );
}

#[test]
fn one_bad_price_cannot_break_pricing() {
    let (db, mut owner) = Db::new("hostile_prices");
    let admin_role = db.login(&mut owner, "admin", "usage_analytics_admin", None);
    let mut admin = db.connect(&admin_role);
    let prices_before = count(&mut owner, "SELECT count(*) FROM usage_analytics.model_pricing");

    for (input, output) in [
        ("1e29", "0"),
        ("0", "1000001"),
        ("0.0000000000001", "0"),
        ("'NaN'", "0"),
    ] {
        let r = refused(
            &mut admin,
            &format!("SELECT usage_analytics.set_model_price('openai', 'my-model', {input}, {output})"),
        );
        assert!(
            r.code == "22023" || (input != "1e29" && r.code == "23514"),
            "set_model_price({input}, {output}): expected 22023, got {} {}",
            r.code,
            r.message
        );
    }
    for (input, output) in [
        ("1e29", "0"),
        ("0", "1e29"),
        ("0.0000000000001", "0"),
        ("0", "0.0000000000001"),
        ("'NaN'", "0"),
        ("0", "'NaN'"),
        ("'Infinity'", "0"),
    ] {
        let r = refused(
            &mut owner,
            &format!(
                "INSERT INTO usage_analytics.model_pricing (provider, model, input_usd_per_1k, output_usd_per_1k)
                 VALUES ('openai', 'my-model', {input}, {output})"
            ),
        );
        assert_eq!(
            r.code, "23514",
            "owner INSERT price ({input}, {output}): {}",
            r.message
        );
    }
    assert_eq!(
        count(&mut owner, "SELECT count(*) FROM usage_analytics.model_pricing"),
        prices_before,
        "a refused price was stored"
    );
    // The bounds themselves are accepted (1,000,000 per 1k, 12 decimal places).
    must(
        &mut admin,
        "SELECT usage_analytics.set_model_price('openai', 'my-model', 1000000, 0.000000000001)",
    );

    // Pricing still works, exactly, for every path.
    let expected = "(SELECT input_usd_per_1k + output_usd_per_1k FROM usage_analytics.model_pricing
                      WHERE provider = 'openai' AND model = 'gpt-4o' AND service_tier = 'standard'
                        AND effective_from <= now()
                        AND (effective_to IS NULL OR now() < effective_to)
                      ORDER BY effective_from DESC LIMIT 1)";
    for client in [&mut owner, &mut admin] {
        assert_eq!(
            scalar(
                client,
                &format!(
                    "SELECT (usage_analytics.calculate_cost('openai', 'gpt-4o', 1000, 1000) = {expected})::text"
                )
            )
            .as_deref(),
            Some("true"),
            "calculate_cost('openai', 'gpt-4o', 1000, 1000) differs from the price in force"
        );
    }
    let id = scalar(
        &mut owner,
        &format!(
            "SELECT usage_analytics.track_detailed_usage('{}', 'after-bad-price', NULL, 'langchain', 'openai', 'chat',
                                                         1000, 1000, 100, true, NULL, '{{}}', 'gpt-4o')::text",
            USERS[0]
        ),
    )
    .unwrap();
    assert_eq!(
        scalar(
            &mut owner,
            &format!(
                "SELECT (cost_usd = {expected})::text || ' ' || cost_usd FROM {USAGE} WHERE id = '{id}'"
            )
        )
        .as_deref()
        .map(|s| s.starts_with("true")),
        Some(true),
        "track_detailed_usage priced gpt-4o wrongly"
    );
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens)
             VALUES ('{}', 'after-bad-price-insert', 'openai', 'my-model', 1000, 1000)",
            USERS[0]
        ),
    );
    assert_eq!(
        scalar(
            &mut owner,
            &format!("SELECT cost_usd::text FROM {USAGE} WHERE agent_id = 'after-bad-price-insert'")
        )
        .map(|s| s.trim_end_matches('0').to_string())
        .as_deref(),
        Some("1000000.000000000001"),
        "the boundary price is applied exactly"
    );
}

#[test]
fn the_audit_log_names_the_login_behind_set_role() {
    let (db, mut owner) = Db::new("hostile_audit");
    let carol = db.login(&mut owner, "carol", "usage_analytics_admin", None);
    let dave = db.role("dave");
    must(&mut owner, &format!("CREATE ROLE {dave} LOGIN"));
    let last_id = count(
        &mut owner,
        "SELECT coalesce(max(id), 0) FROM usage_analytics.admin_audit_log",
    );

    let mut c = db.connect(&carol);
    must(&mut c, "SET ROLE usage_analytics_admin");
    assert_eq!(
        scalar(&mut c, "SELECT current_user::text").as_deref(),
        Some("usage_analytics_admin")
    );
    must(
        &mut c,
        "SELECT usage_analytics.set_model_price('openai', 'carol-model', 0.001, 0.002)",
    );
    must(
        &mut c,
        &format!(
            "INSERT INTO usage_analytics.user_role_map VALUES ('{dave}', '{}')",
            USERS[5]
        ),
    );

    let rows = text_rows(
        &mut owner,
        &format!(
            "SELECT action, target, actor_role::text, session_role::text FROM usage_analytics.admin_audit_log
              WHERE id > {last_id} ORDER BY id"
        ),
    );
    assert!(
        rows.iter().any(|r| r[1].as_deref() == Some("openai/carol-model")),
        "no audit row for the price change: {rows:?}"
    );
    assert!(
        rows.iter().any(|r| r[1].as_deref() == Some(dave.as_str())),
        "no audit row for the role mapping: {rows:?}"
    );
    for row in &rows {
        assert_eq!(
            (row[2].as_deref(), row[3].as_deref()),
            (Some("usage_analytics_admin"), Some(carol.as_str())),
            "audit row {row:?}"
        );
    }
}

/// Every "Plan Rows" of an `EXPLAIN (FORMAT JSON)` plan, depth first.
fn plan_rows(client: &mut Client, query: &str) -> Vec<f64> {
    fn walk(node: &serde_json::Value, out: &mut Vec<f64>) {
        if let Some(rows) = node.get("Plan Rows").and_then(|v| v.as_f64()) {
            out.push(rows);
        }
        if let Some(children) = node.get("Plans").and_then(|v| v.as_array()) {
            for child in children {
                walk(child, out);
            }
        }
    }
    let text = scalar(client, &format!("EXPLAIN (FORMAT JSON) {query}")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    walk(&json[0]["Plan"], &mut out);
    assert!(!out.is_empty(), "no plan rows in {text}");
    out
}

// What stays visible to a reader after this fix (documented in the README,
// "Planner statistics"): EXPLAIN ANALYZE of the reader's own query reports
// "Rows Removed by Filter", and for conditions the planner evaluates before
// the row-level security qual (leakproof operators) that count includes
// other users' rows the condition matched. That is a count, not a value, and
// readers who must not learn even counts should read only through the API
// functions. Table sizes (pg_class.reltuples) are public catalog data too.
#[test]
fn readers_cannot_recover_other_users_values_from_planner_estimates() {
    let (db, mut owner) = Db::new("hostile_estimates");
    let alice = db.login(&mut owner, "alice", "usage_analytics_reader", Some(USERS[0]));
    let secret = "sk-SECRET-4f9a1c7e2b";
    load_sample(&mut owner, 3000, 3);
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, success,
                                  error_message, \"timestamp\")
             SELECT '{}', 'leaky-agent', 'openai', 'gpt-4o', g % 1000, 7777, false, '{secret}',
                    now() - make_interval(secs => g)
               FROM generate_series(1, 5000) g;
             ANALYZE {USAGE};
             SELECT usage_analytics.ensure_partitions(6);",
            USERS[1]
        ),
    );
    let mut a = db.connect(&alice);
    // Every leak found, so one run reports all of them.
    let mut leaks: Vec<String> = Vec::new();

    let q = |cond: &str| format!("SELECT * FROM {USAGE} WHERE {cond}");
    // Equality: the secret is estimated like a string nobody has.
    let nobody = plan_rows(&mut a, &q("error_message = 'zz-nobody-has-this-string'"));
    let guess = plan_rows(&mut a, &q(&format!("error_message = '{secret}'")));
    if guess != nobody {
        leaks.push(format!(
            "error_message = '<secret>' estimated {guess:?}, a string nobody has {nobody:?}"
        ));
    }
    // Binary search: error_message < X for X around the secret, and the same
    // for other private columns (user B's output_tokens are all 7777). No
    // probe below 0 on the columns with CHECK (… >= 0): constraint exclusion
    // refutes those from the schema (an estimate of 0 that reveals nothing).
    for (column, probes) in [
        (
            "error_message",
            [
                "'a'",
                "'m'",
                "'sk-R'",
                "'sk-S'",
                "'sk-SECRET-4'",
                "'sk-SECRET-5'",
                "'sk-T'",
                "'z'",
            ],
        ),
        (
            "output_tokens",
            ["1", "100", "1000", "2000", "7776", "7778", "10000", "100000"],
        ),
        (
            "total_tokens",
            ["1", "100", "1000", "5000", "7777", "8777", "10000", "100000"],
        ),
        (
            "input_tokens",
            ["1", "100", "500", "1000", "2000", "4000", "5000", "100000"],
        ),
        (
            "cost_usd",
            ["0.0001", "0.001", "0.01", "0.05", "0.08", "0.1", "1", "100"],
        ),
        (
            "response_time_ms",
            ["1", "100", "1000", "10000", "35000", "50000", "70000", "100000"],
        ),
        (
            "agent_id",
            [
                "'a'",
                "'coder'",
                "'l'",
                "'leaky'",
                "'leaky-agent'",
                "'m'",
                "'s'",
                "'z'",
            ],
        ),
    ] {
        let estimates: Vec<(&str, Vec<f64>)> = probes
            .iter()
            .map(|x| (*x, plan_rows(&mut a, &q(&format!("{column} < {x}")))))
            .collect();
        let distinct: Vec<&(&str, Vec<f64>)> =
            estimates.iter().filter(|(_, e)| e != &estimates[0].1).collect();
        if !distinct.is_empty() {
            leaks.push(format!(
                "{column} < X estimates depend on X: {} gives {:?}, but {distinct:?}",
                estimates[0].0, estimates[0].1
            ));
        }
    }
    for (cond, other) in [
        ("output_tokens = 7777", "output_tokens = 7776"),
        ("total_tokens = 7777", "total_tokens = 7776"),
        ("agent_id = 'leaky-agent'", "agent_id = 'nobody-agent'"),
        ("model = 'gpt-4o'", "model = 'nobody-model'"),
        ("success = false", "success = true"),
        (
            &format!("user_id = '{}'", USERS[1]),
            "user_id = 'f0000000-0000-4000-8000-000000000000'",
        ),
    ] {
        let (x, y) = (plan_rows(&mut a, &q(cond)), plan_rows(&mut a, &q(other)));
        if x != y {
            leaks.push(format!("{cond} estimated {x:?} but {other} {y:?}"));
        }
    }

    // pg_stats shows the reader nothing about the table or its partitions.
    let visible = count(
        &mut a,
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'usage_analytics'
            AND tablename LIKE 'agent_usage_detailed%'",
    );
    if visible != 0 {
        leaks.push(format!("pg_stats shows a reader {visible} rows"));
    }
    // No statistics are even sampled for private columns (owner's view).
    let sampled = text_rows(
        &mut owner,
        "SELECT tablename::text || '.' || attname::text FROM pg_stats
          WHERE schemaname = 'usage_analytics' AND tablename LIKE 'agent_usage_detailed%'
            AND attname NOT IN ('id', 'timestamp') ORDER BY 1",
    );
    if !sampled.is_empty() {
        leaks.push(format!("statistics sampled by ANALYZE for {sampled:?}"));
    }
    // Every column but id and timestamp has STATISTICS 0, on the parent and
    // on every partition (including those ensure_partitions just created).
    let open = text_rows(
        &mut owner,
        &format!(
            "SELECT c.oid::regclass::text || '.' || a.attname || ' = ' || a.attstattarget
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE (c.oid = '{USAGE}'::regclass
                     OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = '{USAGE}'::regclass))
                AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attname NOT IN ('id', 'timestamp') AND a.attstattarget <> 0
              ORDER BY 1"
        ),
    );
    if !open.is_empty() {
        leaks.push(format!(
            "columns with statistics enabled (attstattarget <> 0): {open:?}"
        ));
    }
    assert!(
        count(
            &mut owner,
            &format!("SELECT count(*) FROM pg_inherits WHERE inhparent = '{USAGE}'::regclass")
        ) >= 7,
        "ensure_partitions(6) created the months ahead"
    );
    assert!(leaks.is_empty(), "planner statistics leak:\n{}", leaks.join("\n"));
}

#[test]
fn export_usage_csv_refuses_before_memory_runs_away() {
    let (db, mut owner) = Db::new("hostile_export");
    let alice = db.login(&mut owner, "alice", "usage_analytics_reader", Some(USERS[0]));
    // 4,500 rows x ~64 KiB of metadata: about 290 MiB of CSV, over the 256 MiB cap.
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, request_metadata)
             SELECT '{}', 'bulky-agent', 'openai', 'gpt-4o', 10, 10,
                    jsonb_build_object('blob', repeat('x', 65000), 'n', g)
               FROM generate_series(1, 4500) g",
            USERS[0]
        ),
    );
    let mut a = db.connect(&alice);
    assert_eq!(count(&mut a, &format!("SELECT count(*) FROM {USAGE}")), 4500);
    let r = refused(&mut a, "SELECT length(usage_analytics.export_usage_csv('{}'))");
    assert_refused(&r, &["22023"], "COPY", "export_usage_csv over 256 MiB");
    assert_eq!(
        scalar(&mut a, "SELECT 1").as_deref(),
        Some("1"),
        "the backend survives"
    );
    // A small export on the same connection still works.
    assert_eq!(
        count(
            &mut a,
            "SELECT array_length(string_to_array(usage_analytics.export_usage_csv(
                        '{\"agent_id\": \"no-such-agent\"}'), E'\\r\\n'), 1)"
        ),
        2,
        "header row only"
    );
}

/// `{"search": {"a": {"a": … 1 …}}}`, `depth` objects deep in total.
fn nested(key: &str, depth: usize) -> String {
    let mut s = String::with_capacity(depth * 8 + 16);
    s.push_str(&format!("{{\"{key}\": "));
    for _ in 1..depth {
        s.push_str("{\"a\": ");
    }
    s.push('1');
    for _ in 1..depth {
        s.push('}');
    }
    s.push('}');
    s
}

fn assert_clean_22023(r: &Refusal, context: &str) {
    assert_eq!(r.code, "22023", "{context}: {}", r.message);
    for leak in ["backtrace", ".rs:", "panicked"] {
        assert!(
            !r.message.contains(leak),
            "{context}: message leaks {leak:?}: {}",
            r.message
        );
        if let Some(detail) = &r.detail {
            assert!(
                !detail.contains(leak),
                "{context}: DETAIL leaks {leak:?}: {detail}"
            );
        }
    }
}

#[test]
fn deeply_nested_documents_are_22023_not_internal_errors() {
    let (db, mut owner) = Db::new("hostile_nesting");
    let alice = db.login(&mut owner, "alice", "usage_analytics_reader", Some(USERS[0]));
    let writer_role = db.login(&mut owner, "writer", "usage_analytics_writer", None);
    load_sample(&mut owner, 100, 1);
    let mut a = db.connect(&alice);
    let mut writer = db.connect(&writer_role);

    for depth in [200, 10_000] {
        let filters = nested("search", depth);
        let f = format!("'{filters}'::jsonb");
        for sql in [
            format!("SELECT count(*) FROM usage_analytics.get_usage_records({f})"),
            format!("SELECT usage_analytics.get_usage_summary({f})"),
            format!("SELECT count(*) FROM usage_analytics.usage_trend('day', {f})"),
            format!("SELECT length(usage_analytics.export_usage_csv({f}))"),
            format!("SELECT count(*) FROM usage_analytics.usage_export({f})"),
        ] {
            let name = sql.split('(').nth(1).unwrap_or("").to_string();
            for (who, client) in [("reader", &mut a), ("owner", &mut owner)] {
                let r = refused(client, &sql);
                assert_clean_22023(&r, &format!("{who}: {name} with filters {depth} deep"));
            }
        }
    }
    let rows_before = rows_in_table(&mut owner);
    let metadata = nested("a", 200);
    for (who, client) in [("writer", &mut writer), ("owner", &mut owner)] {
        let r = refused(
            client,
            &format!(
                "SELECT usage_analytics.track_detailed_usage('{}', 'deep', NULL, 'langchain', 'openai', 'chat',
                                                             1, 1, 1, true, NULL, '{metadata}'::jsonb, 'gpt-4o')",
                USERS[0]
            ),
        );
        assert_clean_22023(
            &r,
            &format!("{who}: track_detailed_usage with request_metadata 200 deep"),
        );
    }
    assert_eq!(rows_in_table(&mut owner), rows_before);
    let r = refused(
        &mut owner,
        "SELECT usage_analytics.calculate_cost('openai', 'gpt-4o', -1, 0)",
    );
    assert_clean_22023(&r, "calculate_cost with -1 input tokens");
    // Every connection is still usable.
    for client in [&mut a, &mut writer, &mut owner] {
        assert_eq!(scalar(client, "SELECT 1").as_deref(), Some("1"));
    }
}

/// Rows where the admin summary and a raw GROUP BY of the table disagree.
fn summary_mismatches(owner: &mut Client, context: &str) {
    let totals = text_rows(
        owner,
        &format!(
            "WITH s AS (SELECT usage_analytics.get_usage_summary('{{}}') AS s),
                  r AS (SELECT count(*) AS requests, count(DISTINCT user_id) AS users,
                               coalesce(sum(cost_usd), 0) AS cost FROM {USAGE})
             SELECT (s ->> 'total_requests') || ' vs ' || r.requests,
                    (s ->> 'unique_users') || ' vs ' || r.users,
                    (s ->> 'total_cost_usd') || ' vs ' || r.cost,
                    ((s ->> 'total_requests')::bigint = r.requests
                     AND (s ->> 'unique_users')::bigint = r.users
                     AND coalesce((s ->> 'total_cost_usd')::numeric, 0) = r.cost)::text
               FROM s, r"
        ),
    );
    assert_eq!(
        totals[0][3].as_deref(),
        Some("true"),
        "{context}: summary (requests, users, cost) vs raw: {totals:?}"
    );
    let top = text_rows(
        owner,
        &format!(
            "WITH s AS (SELECT (e ->> 'user_id')::uuid AS user_id, (e ->> 'requests')::bigint AS requests,
                               coalesce((e ->> 'cost_usd')::numeric, 0) AS cost
                          FROM jsonb_array_elements(usage_analytics.get_usage_summary('{{}}') -> 'top_users') e),
                  r AS (SELECT user_id, count(*) AS requests, coalesce(sum(cost_usd), 0) AS cost
                          FROM {USAGE} GROUP BY user_id ORDER BY 3 DESC LIMIT 10),
                  d AS ((SELECT 'summary' AS side, * FROM s EXCEPT SELECT 'summary', * FROM r)
                        UNION ALL (SELECT 'raw', * FROM r EXCEPT SELECT 'raw', * FROM s))
             SELECT side || ' ' || user_id || ' ' || requests || ' ' || cost FROM d ORDER BY 1"
        ),
    );
    assert!(top.is_empty(), "{context}: top_users differ from raw: {top:?}");
    let trend = text_rows(
        owner,
        &format!(
            "WITH t AS (SELECT period_start, requests, successful_requests, input_tokens, output_tokens,
                               coalesce(cost_usd, 0) AS cost FROM usage_analytics.usage_trend('day')),
                  r AS (SELECT date_trunc('day', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                               count(*), count(*) FILTER (WHERE success), sum(input_tokens),
                               sum(output_tokens), coalesce(sum(cost_usd), 0)
                          FROM {USAGE} GROUP BY 1),
                  d AS ((SELECT 'trend' AS side, * FROM t EXCEPT SELECT 'trend', * FROM r)
                        UNION ALL (SELECT 'raw', * FROM r EXCEPT SELECT 'raw', * FROM t))
             SELECT side || ' ' || period_start || ' ' || requests || ' ' || cost FROM d ORDER BY 1"
        ),
    );
    assert!(
        trend.is_empty(),
        "{context}: usage_trend('day') differs from raw: {trend:?}"
    );
}

fn top_user_ids(owner: &mut Client) -> Vec<String> {
    text_rows(
        owner,
        "SELECT user_id::text FROM usage_analytics.metrics_top_users(10) ORDER BY rank",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

#[test]
fn deleted_rows_leave_summaries_and_the_top_users() {
    let (_db, mut owner) = Db::new("hostile_deletes");
    let (keep, gone) = (USERS[0], USERS[1]);
    // Two users, yesterday and today (UTC), costs priced by the trigger.
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, framework, provider, model, input_tokens, output_tokens,
                                  response_time_ms, success, \"timestamp\")
             SELECT CASE WHEN g % 3 = 0 THEN '{keep}'::uuid ELSE '{gone}'::uuid END,
                    'agent-' || g % 4, 'langchain', 'openai',
                    (ARRAY['gpt-4o', 'gpt-4o-mini', 'unknown-model'])[1 + g % 3],
                    100 + g, 50 + g, 100 + g, g % 7 <> 0,
                    date_trunc('day', now()) - make_interval(days => g % 2) + make_interval(secs => g * 7)
               FROM generate_series(1, 600) g;
             SELECT usage_analytics.rollup_range(current_date - 1, current_date);"
        ),
    );
    summary_mismatches(&mut owner, "before the delete");
    assert!(
        top_user_ids(&mut owner).contains(&gone.to_string()),
        "the user to delete is among today's top users before the delete"
    );
    let counters_before = counter_totals(&mut owner);

    must(
        &mut owner,
        &format!("DELETE FROM {USAGE} WHERE user_id = '{gone}'"),
    );
    assert!(rows_in_table(&mut owner) > 0);
    summary_mismatches(&mut owner, "after deleting one user's rows");
    let top = top_user_ids(&mut owner);
    assert!(
        !top.contains(&gone.to_string()),
        "metrics_top_users still lists the deleted user: {top:?}"
    );
    assert!(top.contains(&keep.to_string()), "{top:?}");
    assert_eq!(
        counter_totals(&mut owner),
        counters_before,
        "the exporter's counters changed on DELETE (they must never go down)"
    );

    must(
        &mut owner,
        &format!(
            "UPDATE {USAGE} SET cost_usd = coalesce(cost_usd, 0) + 123.456
              WHERE id = (SELECT id FROM {USAGE} WHERE user_id = '{keep}' ORDER BY \"timestamp\" LIMIT 1)"
        ),
    );
    summary_mismatches(&mut owner, "after updating one row's cost");
    assert_eq!(counter_totals(&mut owner), counters_before);
    // A new rollup agrees as well.
    must(
        &mut owner,
        "SELECT usage_analytics.rollup_range(current_date - 1, current_date)",
    );
    summary_mismatches(&mut owner, "after a new rollup");
}

#[test]
fn readers_learn_no_other_users_timestamps_from_rollup_bookkeeping() {
    let (db, mut owner) = Db::new("hostile_coverage");
    let alice = db.login(&mut owner, "alice", "usage_analytics_reader", Some(USERS[0]));
    // Rows on the last four days, all before 02:00 UTC, rolled up; then a
    // later row of another user today: today's rollup is now partial, and an
    // admin sees where it ends (a mid-day timestamp of that other user).
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\")
             SELECT (ARRAY['{}', '{}']::uuid[])[1 + g % 2], 'cov-agent', 'openai', 'gpt-4o', 10, 10,
                    date_trunc('day', now()) - make_interval(days => g % 4) + make_interval(secs => 60 + g)
               FROM generate_series(1, 400) g;
             SELECT usage_analytics.rollup_range(current_date - 3, current_date);
             INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\")
             VALUES ('{}', 'cov-agent', 'openai', 'gpt-4o', 10, 10, date_trunc('day', now()) + interval '3 hours');",
            USERS[0], USERS[1], USERS[1]
        ),
    );
    let coverage = "SELECT day::text, covered_until::text,
                           (covered_until = (day + 1)::timestamp AT TIME ZONE 'UTC')::text
                      FROM usage_analytics._rollup_coverage(current_date - 3, current_date) ORDER BY day";
    let admin_view = text_rows(&mut owner, coverage);
    assert!(
        admin_view.iter().any(|r| r[2].as_deref() == Some("false")),
        "the scenario should give an admin a partial (mid-day) day: {admin_view:?}"
    );
    let mut a = db.connect(&alice);
    let reader_view = text_rows(&mut a, coverage);
    assert!(
        reader_view.len() >= 3,
        "the three fully rolled-up days are readable: {reader_view:?}"
    );
    for row in &reader_view {
        assert_eq!(
            row[2].as_deref(),
            Some("true"),
            "a reader sees a covered_until that is not the end of its UTC day: {row:?}"
        );
    }
    let counts = text_rows(
        &mut a,
        "SELECT check_name, detail FROM usage_analytics.self_test() WHERE detail ~ '[0-9]+ rows'",
    );
    assert!(counts.is_empty(), "self_test() shows a reader counts: {counts:?}");
    assert!(count(&mut a, "SELECT count(*) FROM usage_analytics.self_test()") > 0);
}

#[test]
fn a_flood_of_distinct_labels_cannot_grow_the_exporter_series() {
    let (db, mut owner) = Db::new("hostile_series");
    let writer_role = db.login(&mut owner, "writer", "usage_analytics_writer", None);
    let max_series: i64 = 500;
    must(
        &mut owner,
        &format!(
            "ALTER DATABASE {} SET usage_analytics.exporter_max_series = {max_series}",
            db.name
        ),
    );
    let mut owner = cluster().connect(&db.name);
    // Every broken promise, so one run reports all of them.
    let mut problems: Vec<String> = Vec::new();
    // 20,000 rows, each its own label tuple (20,000 agent ids, 5,000 unknown
    // models), in 10 statements of 2,000 as a flood would arrive.
    let per_statement = 2_000;
    let mut after_each = Vec::new();
    for s in 0..10 {
        must(
            &mut owner,
            &format!(
                "INSERT INTO {USAGE} (user_id, agent_id, framework, provider, model, message_type,
                                      input_tokens, output_tokens, success)
                 SELECT '{}', 'flood-agent-' || g, 'langchain', 'openai', 'unknown-model-' || g % 5000, 'chat',
                        1, 1, g % 10 <> 0
                   FROM generate_series({}, {}) g",
                USERS[0],
                s * per_statement,
                (s + 1) * per_statement - 1
            ),
        );
        after_each.push(count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.metrics_usage_counters()",
        ));
    }
    let total = rows_in_table(&mut owner);
    assert_eq!(total, 20_000);
    let series = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.metrics_usage_counters()",
    );
    let writers = 1;
    // Admitted tuples + one slack per concurrent writer + 'other' per success value.
    if series > max_series + writers + 2 {
        problems.push(format!(
            "metrics_usage_counters() has {series} series with exporter_max_series = {max_series} \
             (series after each 2,000-row statement: {after_each:?})"
        ));
    }
    let admitted = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.metrics_usage_counters() WHERE agent_id <> 'other'",
    );
    let other = count(
        &mut owner,
        "SELECT coalesce(sum(requests), 0) FROM usage_analytics.metrics_usage_counters()
          WHERE agent_id = 'other'",
    );
    // Each flood row is its own label tuple, so an admitted tuple counts one request.
    if other != total - admitted {
        problems.push(format!(
            "'other' carries {other} requests, expected {} (total {total} - {admitted} admitted)",
            total - admitted
        ));
    }
    let summed = count(
        &mut owner,
        "SELECT sum(requests) FROM usage_analytics.metrics_usage_counters()",
    );
    if summed != total {
        problems.push(format!(
            "sum(requests) over the counters is {summed}, the table has {total}"
        ));
    }
    let mixed = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.metrics_usage_counters()
          WHERE agent_id = 'other' AND (provider, framework, model, message_type) <> ('other', 'other', 'other', 'other')",
    );
    if mixed != 0 {
        problems.push(format!(
            "{mixed} series with agent_id 'other' but other labels real"
        ));
    }

    // A writer cannot lift the bound for its own session. In a fresh session
    // the library may not be loaded yet: PostgreSQL then accepts any SET of a
    // dotted name as a placeholder, and discards it with a WARNING when the
    // library defines the superuser-only setting (before any row is counted:
    // the pricing trigger, in the library, runs first). So: refused, or
    // accepted and without effect; once loaded, always refused.
    let mut writer = db.connect(&writer_role);
    let track = |agent: &str| {
        format!(
            "SELECT usage_analytics.track_detailed_usage('{}', '{agent}', NULL, 'langchain', 'openai', 'chat',
                                                         1, 1, 1, true)",
            USERS[0]
        )
    };
    let lift = "SET usage_analytics.exporter_max_series = 1000000";
    match writer.batch_execute(lift) {
        Ok(()) => {
            must(&mut writer, &track("writer-agent-1"));
            let effective = scalar(&mut writer, "SHOW usage_analytics.exporter_max_series");
            if effective.as_deref() != Some("500") {
                problems.push(format!(
                    "writer in a fresh session: {lift} was accepted and, once the library loaded, \
                     the setting is {effective:?}"
                ));
            }
        }
        Err(e) => {
            let (code, message) = db_error(&e);
            if code != "42501" {
                problems.push(format!(
                    "writer in a fresh session: {lift}: expected 42501, got {code} {message}"
                ));
            }
            must(&mut writer, &track("writer-agent-1"));
        }
    }
    for attempt in [
        lift,
        "SELECT set_config('usage_analytics.exporter_max_series', '1000000', false)",
        "SET LOCAL usage_analytics.exporter_max_series = 1000000",
    ] {
        match writer.batch_execute(attempt) {
            Ok(()) => problems.push(format!(
                "writer after loading the library: {attempt} was accepted"
            )),
            Err(e) => {
                let (code, message) = db_error(&e);
                if code != "42501" {
                    problems.push(format!(
                        "writer after loading the library: {attempt}: expected 42501, got {code} {message}"
                    ));
                }
            }
        }
    }
    must(&mut writer, &track("writer-agent-2"));
    // Whatever the SETs did, the writer's new tuples are not admitted.
    let own = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.metrics_usage_counters() WHERE agent_id LIKE 'writer-agent-%'",
    );
    let in_series = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.usage_series WHERE agent_id LIKE 'writer-agent-%'",
    );
    if own != 0 || in_series != 0 {
        problems.push(format!(
            "the writer's new tuples got their own series past the bound ({own} counter rows, {in_series} admitted)"
        ));
    }
    assert_eq!(
        count(
            &mut owner,
            "SELECT sum(requests) FROM usage_analytics.metrics_usage_counters()"
        ),
        total + 2
    );
    assert!(
        problems.is_empty(),
        "exporter series bound:\n{}",
        problems.join("\n")
    );
}

/// A label tuple admitted inside a savepoint that is rolled back is not
/// admitted: the next insert of the tuple must admit it again, although this
/// backend already saw it admitted (the counting trigger remembers admitted
/// tuples per backend and must forget what a rolled-back savepoint wrote).
/// The same for the active-user sketch: the rolled-back user does not count.
#[test]
fn a_rolled_back_savepoint_leaves_no_series_active_user_or_search_text_behind() {
    let (_db, mut owner) = Db::new("savepoint_series");
    let row = |agent: &str, user: &str| {
        format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens)
             VALUES ('{user}', '{agent}', 'openai', 'gpt-4o', 10, 10);"
        )
    };
    must(
        &mut owner,
        &format!(
            "BEGIN; SAVEPOINT s; {} ROLLBACK TO SAVEPOINT s; {} COMMIT;",
            row("savepoint-agent", USERS[0]),
            row("savepoint-agent", USERS[1])
        ),
    );
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.usage_series WHERE agent_id = 'savepoint-agent'"
        ),
        1,
        "the tuple is admitted by the insert that committed"
    );
    // Exact below 384 users: only the committed row's user is active.
    assert_eq!(
        count(
            &mut owner,
            "SELECT users FROM usage_analytics.metrics_active_users() WHERE \"window\" = '1h'"
        ),
        1
    );
    // Both rows have the same searched text; the backend that added it in
    // the rolled-back savepoint must add it again (a rare term is found by
    // its text's key).
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.get_usage_records('{\"search\": \"savepoint-agent\"}')"
        ),
        1,
        "the committed row is found by search"
    );
}

#[test]
fn search_texts_of_other_users_stay_hidden_from_readers() {
    let (db, mut owner) = Db::new("hostile_search_texts");
    let alice = db.login(&mut owner, "alice", "usage_analytics_reader", Some(USERS[0]));
    let auditor = db.login(&mut owner, "auditor", "usage_analytics_auditor", None);
    must(
        &mut owner,
        &format!(
            "INSERT INTO {USAGE} (user_id, agent_id, provider, model, input_tokens, output_tokens, error_message)
             VALUES ('{}', 'alice-agent', 'openai', 'gpt-4o', 10, 10, NULL),
                    ('{}', 'bob-agent', 'openai', 'gpt-4o', 10, 10, 'secret project zq-7');",
            USERS[0], USERS[1]
        ),
    );
    let mut a = db.connect(&alice);
    // The dictionary itself is unreadable, and its keys are not handed out.
    let err = a
        .batch_execute("SELECT * FROM usage_analytics.search_texts")
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42501");
    assert_eq!(
        scalar(
            &mut a,
            "SELECT (usage_analytics._matching_search_texts('%zq-7%') IS NULL)::text"
        )
        .as_deref(),
        Some("true")
    );
    // Alice's searches still find her rows, and only hers.
    let found = |c: &mut Client, term: &str| {
        count(
            c,
            &format!("SELECT count(*) FROM usage_analytics.get_usage_records('{{\"search\": \"{term}\"}}')"),
        )
    };
    assert_eq!(found(&mut a, "alice-agent"), 1);
    assert_eq!(found(&mut a, "zq-7"), 0);
    // An auditor reads every row, and finds them through the keys.
    let mut au = db.connect(&auditor);
    assert_eq!(
        scalar(
            &mut au,
            "SELECT cardinality(usage_analytics._matching_search_texts('%zq-7%'))"
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(found(&mut au, "zq-7"), 1);
    assert_eq!(found(&mut au, "alice-agent"), 1);
}
