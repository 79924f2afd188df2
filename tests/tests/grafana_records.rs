//! The "AI usage: records" dashboard (issue 22) against a loaded database:
//! every panel and variable query is taken from the generated JSON
//! (grafana/dashboards/postgresql/usage-records.json), Grafana's macros and
//! variables are substituted as Grafana does, and the query runs as the
//! data-source login (a member of usage_analytics_auditor). Each must return
//! exactly what the SQL API (get_usage_records, get_usage_summary,
//! usage_trend, self_test) and an independent WHERE clause over the raw rows
//! return, and none may fail. The auditor's privileges and a reader's scope
//! are checked too.

use integration_tests::{cluster, db_error, load_sample, scalar, text_rows, USERS};
use postgres::Client;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn dashboard() -> Value {
    let path = repo().join("grafana/dashboards/postgresql/usage-records.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// Grafana's substitution, as the PostgreSQL data source applies it.

/// One dashboard selection: what the user picked in the variables.
#[derive(Clone, Debug)]
struct Selection {
    from: String,
    to: String,
    /// Multi-value filter variables: name -> values; absent or empty = All.
    multi: Vec<(&'static str, Vec<String>)>,
    status: Option<bool>,
    search: String,
    page_after: String,
    page_size: u32,
    granularity: &'static str,
}

impl Selection {
    fn new(from: &str, to: &str) -> Selection {
        Selection {
            from: from.into(),
            to: to.into(),
            multi: vec![],
            status: None,
            search: String::new(),
            page_after: String::new(),
            page_size: 100,
            granularity: "day",
        }
    }
    fn with(mut self, var: &'static str, values: &[&str]) -> Selection {
        self.multi
            .push((var, values.iter().map(|v| v.to_string()).collect()));
        self
    }
    fn values(&self, var: &str) -> Vec<String> {
        self.multi
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// quoteLiteral of Grafana's SQL data sources and the sqlstring format.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The value of `$name` / `${name:fmt}` for this selection: a custom All
/// value is inserted as is (Grafana skips formatting of custom all values);
/// otherwise `sqlstring` quotes every value and joins them with commas, and
/// without a format the data source quotes multi-value and include-All
/// variables and only escapes quotes in the others.
fn variable_value(dash: &Value, sel: &Selection, name: &str, fmt: Option<&str>) -> String {
    let var = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("query uses undefined variable ${name}"));
    let (values, all): (Vec<String>, bool) = match name {
        "status" => match sel.status {
            None => (vec![], true),
            Some(b) => (vec![b.to_string()], false),
        },
        "search" => (vec![sel.search.clone()], false),
        "page_after" => (vec![sel.page_after.clone()], false),
        "page_size" => (vec![sel.page_size.to_string()], false),
        "granularity" => (vec![sel.granularity.to_string()], false),
        "datasource" => (vec!["usage-analytics-postgres".into()], false),
        _ => {
            let v = sel.values(name);
            let all = v.is_empty();
            (v, all)
        }
    };
    if all {
        assert_eq!(var["includeAll"], true, "${name}: All without includeAll");
        return var["allValue"].as_str().expect("custom all value").to_string();
    }
    let multi = var["multi"] == true || var["includeAll"] == true;
    match fmt {
        Some("sqlstring") => values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","),
        Some("raw") => values.join(","),
        None if multi => values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","),
        None => values.join(",").replace('\'', "''"),
        Some(other) => panic!("format {other} not emulated"),
    }
}

/// Frontend variable interpolation, then the backend's macros
/// ($__timeFrom(), $__timeTo(), $__timeFilter(column)).
fn interpolate(dash: &Value, sel: &Selection, sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
            let close = (i..chars.len()).find(|&j| chars[j] == '}').expect("unclosed ${");
            let inner: String = chars[i + 2..close].iter().collect();
            let (name, fmt) = match inner.split_once(':') {
                Some((n, f)) => (n.to_string(), Some(f.to_string())),
                None => (inner.clone(), None),
            };
            out += &variable_value(dash, sel, &name, fmt.as_deref());
            i = close + 1;
        } else if chars[i] == '$' && chars.get(i + 1).is_some_and(|&c| word(c)) {
            let end = (i + 1..chars.len())
                .find(|&j| !word(chars[j]))
                .unwrap_or(chars.len());
            let name: String = chars[i + 1..end].iter().collect();
            if name.starts_with("__") {
                out.push('$');
                out += &name; // a macro: the backend's
            } else {
                out += &variable_value(dash, sel, &name, None);
            }
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    let (from, to) = (quote(&sel.from), quote(&sel.to));
    let mut sql = out.replace("$__timeFrom()", &from).replace("$__timeTo()", &to);
    while let Some(at) = sql.find("$__timeFilter(") {
        let open = at + "$__timeFilter(".len();
        let close = open + sql[open..].find(')').unwrap();
        let column = sql[open..close].to_string();
        sql.replace_range(at..=close, &format!("{column} BETWEEN {from} AND {to}"));
    }
    assert!(!sql.contains('$'), "unsubstituted macro or variable in {sql}");
    sql
}

fn panels(dash: &Value) -> Vec<(String, String)> {
    dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .map(|p| {
            let targets = p["targets"].as_array().unwrap();
            assert_eq!(targets.len(), 1, "panel {}: one query", p["title"]);
            (
                p["title"].as_str().unwrap().to_string(),
                targets[0]["rawSql"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn panel_sql(dash: &Value, title_starts: &str) -> String {
    panels(dash)
        .into_iter()
        .find(|(t, _)| t.starts_with(title_starts))
        .unwrap_or_else(|| panic!("no panel {title_starts}"))
        .1
}

// ---------------------------------------------------------------------------
// The oracles: the API called directly, and the raw rows.

const TEXT_KEYS: [(&str, &str); 6] = [
    ("user", "user_id"),
    ("agent", "agent_id"),
    ("framework", "framework"),
    ("provider", "provider"),
    ("model", "model"),
    ("message_type", "message_type"),
];

/// A value as the filter parser reads it (trimmed; lower-cased except
/// agent_id; user ids canonical).
fn normalise(key: &str, v: &str) -> String {
    if key == "agent_id" {
        v.trim().to_string()
    } else {
        v.trim().to_lowercase()
    }
}

/// The API's filter documents for a selection, built independently of
/// explorer_filters: one per combination of the selected values.
fn api_documents(sel: &Selection) -> Vec<Value> {
    let mut base = Map::new();
    base.insert("start_date".into(), json!(sel.from));
    base.insert("end_date".into(), json!(sel.to));
    if let Some(b) = sel.status {
        base.insert("success".into(), json!(b));
    }
    if !sel.search.is_empty() {
        base.insert("search".into(), json!(sel.search));
    }
    let mut docs = vec![base];
    for (var, key) in TEXT_KEYS {
        let mut values: Vec<String> = sel.values(var).iter().map(|v| normalise(key, v)).collect();
        values.sort();
        values.dedup();
        if values.is_empty() {
            continue;
        }
        docs = docs
            .iter()
            .flat_map(|d| {
                values.iter().map(move |v| {
                    let mut d = d.clone();
                    d.insert(key.into(), json!(v));
                    d
                })
            })
            .collect();
    }
    docs.into_iter().map(Value::Object).collect()
}

/// The selection as a WHERE clause over the raw rows.
fn raw_where(sel: &Selection) -> String {
    let mut parts = vec![format!(
        "\"timestamp\" >= {}::timestamptz AND \"timestamp\" < {}::timestamptz",
        quote(&sel.from),
        quote(&sel.to)
    )];
    for (var, key) in TEXT_KEYS {
        let values = sel.values(var);
        if values.is_empty() {
            continue;
        }
        let list: Vec<String> = values.iter().map(|v| quote(&normalise(key, v))).collect();
        let column = if key == "user_id" { "user_id::text" } else { key };
        parts.push(format!("{column} = ANY (ARRAY[{}]::text[])", list.join(",")));
    }
    if let Some(b) = sel.status {
        parts.push(format!("success = {b}"));
    }
    if !sel.search.is_empty() {
        let mut pattern = String::from("%");
        for ch in sel.search.trim().chars() {
            if matches!(ch, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(ch);
        }
        pattern.push('%');
        let p = quote(&pattern);
        parts.push(format!(
            "(agent_id ILIKE {p} OR agent_name ILIKE {p} OR model ILIKE {p} OR error_message ILIKE {p})"
        ));
    }
    parts.join(" AND ")
}

/// The record columns of the panel, from a row source `r` of the usage table.
const RECORD_COLUMNS: &str = "r.id, r.\"timestamp\", r.user_id, r.agent_id, r.agent_name, r.framework, r.provider,
    r.model, r.message_type, r.input_tokens, r.output_tokens, r.total_tokens, r.cache_read_tokens,
    r.cache_write_tokens, r.cache_write_1h_tokens, r.reasoning_tokens, r.cost_usd, r.response_time_ms, r.success,
    r.error_message";

fn docs_array(docs: &[Value]) -> String {
    let items: Vec<String> = docs
        .iter()
        .map(|d| format!("{}::jsonb", quote(&d.to_string())))
        .collect();
    format!("ARRAY[{}]::jsonb[]", items.join(","))
}

fn cursor_of(row: &[Option<String>], client: &mut Client) -> String {
    scalar(
        client,
        &format!(
            "SELECT to_char({}::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '/' || {}",
            quote(row[1].as_deref().unwrap()),
            quote(row[0].as_deref().unwrap())
        ),
    )
    .unwrap()
}

/// Runs every panel of the dashboard for one selection as `login` and checks
/// it against the API and the raw rows. Returns the records page.
fn check_selection(dash: &Value, login: &mut Client, sel: &Selection) -> Vec<Vec<Option<String>>> {
    let what = format!("{sel:?}");
    let docs = api_documents(sel);
    let mut keyset = String::new();
    if !sel.page_after.is_empty() {
        let (ts, id) = sel.page_after.split_once('/').unwrap();
        keyset = format!(
            " AND (\"timestamp\", id) < ({}::timestamptz, {}::uuid)",
            quote(ts),
            quote(id)
        );
    }
    let position = if sel.page_after.is_empty() {
        "'{}'::jsonb".to_string()
    } else {
        let (ts, id) = sel.page_after.split_once('/').unwrap();
        quote(&json!({"after_timestamp": ts, "after_id": id}).to_string()) + "::jsonb"
    };

    // Records: the panel, the API's pages merged, and the raw rows.
    let records = interpolate(dash, sel, &panel_sql(dash, "Usage records"));
    let got = text_rows(login, &records);
    let api = text_rows(
        login,
        &format!(
            "SELECT {cols}, to_char(r.\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '/' || r.id
               FROM unnest({docs}) AS d (doc)
              CROSS JOIN LATERAL usage_analytics.get_usage_records(d.doc || {position}, {n}) AS r
              ORDER BY r.\"timestamp\" DESC, r.id DESC LIMIT {n}",
            cols = RECORD_COLUMNS,
            docs = docs_array(&docs),
            n = sel.page_size
        ),
    );
    assert_eq!(got, api, "records panel vs get_usage_records: {what}");
    let raw = text_rows(
        login,
        &format!(
            "SELECT r.id FROM usage_analytics.agent_usage_detailed r WHERE {}{keyset}
              ORDER BY r.\"timestamp\" DESC, r.id DESC LIMIT {}",
            raw_where(sel),
            sel.page_size
        ),
    );
    let got_ids: Vec<_> = got.iter().map(|r| r[0].clone()).collect();
    let raw_ids: Vec<_> = raw.iter().map(|r| r[0].clone()).collect();
    assert_eq!(got_ids, raw_ids, "records panel vs raw rows: {what}");

    // Summary: the panel's numbers, the whole document, and the raw oracle.
    let oracle = std::fs::read_to_string(repo().join("tests/fixtures/raw_summary.sql"))
        .unwrap()
        .replace("{where}", &raw_where(sel));
    let oracle = oracle
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let summary_panel = interpolate(dash, sel, &panel_sql(dash, "Summary"));
    let explorer_summary = summary_panel
        .split_once("FROM ")
        .map(|(_, rest)| rest.trim_end().trim_end_matches("AS s").trim_end().to_string())
        .unwrap();
    // The 0.2 keys from the raw rows too.
    let extra = format!(
            "AND (SELECT doc FROM e) ->> 'cache_read_tokens' IS NOT DISTINCT FROM
                     (SELECT coalesce(sum(cache_read_tokens), 0)::text FROM usage_analytics.agent_usage_detailed WHERE {w})
             AND ((SELECT doc FROM e) ->> 'reasoning_tokens')::numeric IS NOT DISTINCT FROM
                     (SELECT coalesce(sum(reasoning_tokens), 0) FROM usage_analytics.agent_usage_detailed WHERE {w})
             AND p.\"Cache read tokens\" IS NOT DISTINCT FROM ((SELECT doc FROM e) ->> 'cache_read_tokens')::bigint
             AND p.\"Reasoning tokens\" IS NOT DISTINCT FROM ((SELECT doc FROM e) ->> 'reasoning_tokens')::bigint
             AND p.\"Cost per request\" IS NOT DISTINCT FROM
                     (SELECT sum(cost_usd) / nullif(count(cost_usd), 0) FROM usage_analytics.agent_usage_detailed WHERE {w})",
        w = raw_where(sel)
    );
    let same = scalar(
        login,
        &format!(
            "WITH p AS ({summary_panel}), e AS (SELECT {explorer_summary} AS doc), o AS ({oracle})
             SELECT NOT EXISTS (SELECT 1 FROM jsonb_each(o.jsonb_build_object) k
                                 WHERE (SELECT doc FROM e) -> k.key IS DISTINCT FROM k.value)
                AND p.\"Requests\" = (o.jsonb_build_object ->> 'total_requests')::bigint
                AND p.\"Success rate\" IS NOT DISTINCT FROM (o.jsonb_build_object ->> 'success_rate')::numeric
                AND p.\"Input tokens\" = (o.jsonb_build_object ->> 'total_input_tokens')::bigint
                AND p.\"Output tokens\" = (o.jsonb_build_object ->> 'total_output_tokens')::bigint
                AND p.\"Cost\" = (o.jsonb_build_object ->> 'total_cost_usd')::numeric
                AND p.\"Avg response time\" IS NOT DISTINCT FROM (o.jsonb_build_object ->> 'avg_response_time_ms')::numeric
                AND p.\"Users\" = (o.jsonb_build_object ->> 'unique_users')::bigint
                AND p.\"Unpriced requests\" = (o.jsonb_build_object ->> 'unpriced_requests')::bigint
                {extra}
               FROM p, o"
        ),
    );
    assert_eq!(same.as_deref(), Some("t"), "summary panel vs raw summary: {what}");
    if docs.len() == 1 {
        let same = scalar(
            login,
            &format!(
                "SELECT {explorer_summary} = usage_analytics.get_usage_summary({}::jsonb)",
                quote(&docs[0].to_string())
            ),
        );
        assert_eq!(same.as_deref(), Some("t"), "summary vs get_usage_summary: {what}");
    }

    // Trend: the panel, explorer_trend's full rows, usage_trend and raw rows.
    let trend_panel = interpolate(dash, sel, &panel_sql(dash, "Trend"));
    let g = sel.granularity;
    let raw_trend = format!(
        "SELECT date_trunc('{g}', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start,
                count(*) AS requests, count(*) FILTER (WHERE success) AS successful_requests,
                coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,
                coalesce(sum(cost_usd), 0) AS cost_usd,
                CASE WHEN count(response_time_ms) > 0 THEN sum(response_time_ms)::numeric / count(response_time_ms) END
                  AS avg_response_time_ms
           FROM usage_analytics.agent_usage_detailed WHERE {} GROUP BY 1",
        raw_where(sel)
    );
    let explorer_trend = trend_panel
        .split_once("FROM ")
        .unwrap()
        .1
        .split_once(" ORDER BY")
        .unwrap()
        .0
        .to_string();
    let mismatches = scalar(
        login,
        &format!(
            "WITH p AS ({trend_panel}), e AS (SELECT * FROM {explorer_trend}), o AS ({raw_trend})
             SELECT (SELECT count(*) FROM p FULL JOIN o ON p.\"time\" = o.period_start
                      WHERE p.\"Requests\" IS DISTINCT FROM o.requests
                         OR p.\"Failed\" IS DISTINCT FROM o.requests - o.successful_requests
                         OR p.\"Cost\" IS DISTINCT FROM o.cost_usd)
                  + (SELECT count(*) FROM e FULL JOIN o USING (period_start)
                      WHERE (e.requests, e.successful_requests, e.input_tokens, e.output_tokens, e.cost_usd,
                             e.avg_response_time_ms)
                            IS DISTINCT FROM (o.requests, o.successful_requests, o.input_tokens, o.output_tokens,
                                              o.cost_usd, o.avg_response_time_ms))"
        ),
    );
    assert_eq!(mismatches.as_deref(), Some("0"), "trend vs raw rows: {what}");
    if docs.len() == 1 {
        let got = text_rows(login, &format!("SELECT * FROM {explorer_trend}"));
        let api = text_rows(
            login,
            &format!(
                "SELECT * FROM usage_analytics.usage_trend('{g}', {}::jsonb)",
                quote(&docs[0].to_string())
            ),
        );
        assert_eq!(got, api, "trend vs usage_trend: {what}");
    }
    got
}

/// The variables' values for a selection's time range.
fn check_variables(dash: &Value, login: &mut Client, sel: &Selection, sees_all: bool) {
    for var in dash["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap();
        let sql = interpolate(dash, sel, var["query"].as_str().unwrap());
        let mut got: Vec<String> = text_rows(login, &sql)
            .into_iter()
            .map(|r| r[0].clone().expect("no NULL values"))
            .collect();
        got.sort();
        let column = match name {
            "user" => "user_id::text",
            "agent" => "agent_id",
            other => other,
        };
        // Per-day tables: every value of the UTC days the range touches;
        // models and message types: every one ever recorded (and priced).
        let range = if !sees_all {
            format!(
                "\"timestamp\" >= {}::timestamptz AND \"timestamp\" < {}::timestamptz",
                quote(&sel.from),
                quote(&sel.to)
            )
        } else if matches!(name, "model" | "message_type") {
            "true".to_string()
        } else {
            format!(
                "(\"timestamp\" AT TIME ZONE 'UTC')::date BETWEEN ({f}::timestamptz AT TIME ZONE 'UTC')::date
                    AND (({t}::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date",
                f = quote(&sel.from),
                t = quote(&sel.to)
            )
        };
        let expected: Vec<String> = text_rows(
            login,
            &format!(
                "SELECT DISTINCT {column} FROM usage_analytics.agent_usage_detailed
                  WHERE {range} AND {column} IS NOT NULL ORDER BY 1"
            ),
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
        let mut expected = expected;
        expected.sort();
        assert_eq!(got, expected, "variable ${name} for {sel:?}");
    }
}

// ---------------------------------------------------------------------------

struct Setup {
    db: String,
    auditor: String,
    reader: String,
    from: String,
    to: String,
    yesterday: String,
}

fn setup(name: &str) -> (Setup, Client) {
    let c = cluster();
    let db = c.fresh_db(name);
    let mut owner = c.connect(&db);
    load_sample(&mut owner, 4000, 6);
    let auditor = format!("{db}_grafana");
    let reader = format!("{db}_reader");
    owner
        .batch_execute(&format!(
            "CREATE ROLE {auditor} LOGIN IN ROLE usage_analytics_auditor;
             ALTER ROLE {auditor} SET default_transaction_read_only = on;
             CREATE ROLE {reader} LOGIN IN ROLE usage_analytics_reader;
             INSERT INTO usage_analytics.user_role_map VALUES ('{reader}', '{}');
             -- Quotes in a value Grafana must escape, and a row deleted later.
             INSERT INTO usage_analytics.agent_usage_detailed
                    (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens,
                     response_time_ms, model, \"timestamp\")
             SELECT '{}', 'O''Brien''s agent', 'langchain', 'openai', 'chat', 10 * g, g, 100 + g, 'gpt-4o',
                    now() - make_interval(hours => g)
               FROM generate_series(1, 30) g;
             DELETE FROM usage_analytics.agent_usage_detailed
              WHERE agent_id = 'O''Brien''s agent' AND input_tokens = 100;
             -- Whole days read from the rollups (fresh) and from raw rows.
             SELECT usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 5,
                                                 (now() AT TIME ZONE 'UTC')::date - 3);",
            USERS[0], USERS[1]
        ))
        .unwrap();
    let at = |client: &mut Client, sql: &str| {
        scalar(
            client,
            &format!("SELECT to_char(({sql}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
        )
        .unwrap()
    };
    let from = at(&mut owner, "now() - interval '6 days'");
    let to = at(&mut owner, "now()");
    let yesterday = at(
        &mut owner,
        "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 day'",
    );
    (
        Setup {
            db,
            auditor,
            reader,
            from,
            to,
            yesterday,
        },
        owner,
    )
}

#[test]
fn every_panel_and_variable_equals_the_api_as_the_data_source_login() {
    let (s, mut owner) = setup("grafana_records");
    let dash = dashboard();
    let mut login = cluster().connect_as(&s.db, &s.auditor);
    assert_eq!(
        scalar(&mut login, "SELECT usage_analytics.is_admin()").as_deref(),
        Some("f")
    );
    assert_eq!(
        scalar(&mut login, "SELECT usage_analytics._sees_all()").as_deref(),
        Some("t")
    );
    let total = scalar(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
    assert_eq!(
        scalar(
            &mut login,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        total,
        "the auditor reads every user's rows"
    );

    let base = Selection::new(&s.from, &s.to);
    let selections = vec![
        base.clone(),
        Selection {
            page_size: 50,
            granularity: "week",
            ..base.clone()
        },
        Selection {
            granularity: "month",
            ..base.clone()
        }
        .with("provider", &["openai"]),
        base.clone().with("user", &[USERS[0]]),
        base.clone().with("agent", &["O'Brien's agent"]),
        base.clone()
            .with("agent", &["Q,\"uoted\"", "ünïcødé-🚀", "writer"])
            .with("provider", &["OpenAI ", "openai", "google"]),
        Selection {
            status: Some(false),
            search: "o".into(),
            ..base.clone()
        }
        .with("framework", &["langchain", "autogen"]),
        base.clone()
            .with("model", &["gpt-4o", "claude-3-5-sonnet", "gemini-1.5-flash"])
            .with("message_type", &["chat", "tool_execution"]),
        Selection {
            status: Some(true),
            ..base.clone()
        }
        .with("user", &[USERS[1], USERS[2], USERS[1].to_uppercase().as_str()]),
        Selection {
            search: "100%_'\\".into(),
            ..base.clone()
        },
        Selection {
            search: "rate limited".into(),
            ..base.clone()
        },
        // Inside one UTC day, and an empty future range.
        Selection::new(&s.yesterday, &s.to).with("provider", &["anthropic", "perplexity"]),
        Selection::new("2999-01-01T00:00:00Z", "2999-02-01T00:00:00Z").with("agent", &["coder"]),
    ];
    for sel in &selections {
        let page = check_selection(&dash, &mut login, sel);
        check_variables(&dash, &mut login, sel, true);
        // Keyset paging: the next page starts after the last row, and two
        // pages equal one page twice as long.
        if page.len() == sel.page_size as usize {
            let next = Selection {
                page_after: page.last().unwrap()[20].clone().unwrap(),
                ..sel.clone()
            };
            assert_eq!(next.page_after, cursor_of(page.last().unwrap(), &mut login));
            let page2 = check_selection(&dash, &mut login, &next);
            let double = Selection {
                page_size: sel.page_size * 2,
                ..sel.clone()
            };
            let both = check_selection(&dash, &mut login, &double);
            let tiled: Vec<_> = page.iter().chain(page2.iter()).cloned().collect();
            assert_eq!(both, tiled, "pages tile: {sel:?}");
        }
    }
    // Not vacuous: most selections have rows, some span several pages.
    assert!(
        selections
            .iter()
            .filter(|s| !check_selection(&dash, &mut login, s).is_empty())
            .count()
            >= 9
    );

    // The test page is self_test() as is.
    let test_page = interpolate(&dash, &base, &panel_sql(&dash, "Installation self-test"));
    assert_eq!(
        text_rows(&mut login, &test_page),
        text_rows(
            &mut login,
            "SELECT check_name, ok, detail FROM usage_analytics.self_test()"
        )
    );
    assert!(text_rows(&mut login, &test_page).len() >= 8);

    // A cursor typed by hand that is not one: the parser's error, naming the key.
    let bad = Selection {
        page_after: "yesterday-ish/42".into(),
        ..base.clone()
    };
    let err = login
        .simple_query(&interpolate(&dash, &bad, &panel_sql(&dash, "Usage records")))
        .unwrap_err();
    assert!(db_error(&err).1.contains("after_timestamp"), "{err}");
}

#[test]
fn a_readers_dashboard_shows_only_their_own_rows() {
    let (s, mut owner) = setup("grafana_records_reader");
    let dash = dashboard();
    let mut reader = cluster().connect_as(&s.db, &s.reader);
    assert_eq!(
        scalar(&mut reader, "SELECT usage_analytics._sees_all()").as_deref(),
        Some("f")
    );
    let base = Selection::new(&s.from, &s.to);
    for sel in [
        base.clone(),
        base.clone().with("provider", &["openai", "google"]),
        base.clone().with("user", &[USERS[0], USERS[1]]),
    ] {
        // The raw oracle runs as the reader too: RLS gives it the reader's rows.
        let page = check_selection(&dash, &mut reader, &sel);
        assert!(
            page.iter().all(|r| r[2].as_deref() == Some(USERS[0])),
            "only own rows"
        );
        check_variables(&dash, &mut reader, &sel, false);
    }
    let own = scalar(
        &mut owner,
        &format!(
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE user_id = '{}'",
            USERS[0]
        ),
    );
    let summary = interpolate(&dash, &base, &panel_sql(&dash, "Summary"));
    let all_time = Selection::new("2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z");
    let summary_all = interpolate(&dash, &all_time, &panel_sql(&dash, "Summary"));
    assert!(text_rows(&mut reader, &summary)[0][0].is_some());
    assert_eq!(
        text_rows(&mut reader, &summary_all)[0][0],
        own,
        "a reader's totals are their own"
    );
}

#[test]
fn the_auditor_reads_everything_and_changes_nothing() {
    let (s, _owner) = setup("grafana_records_auditor");
    let mut login = cluster().connect_as(&s.db, &s.auditor);
    // Reads every user's rows, rollups and per-day tables.
    for table in [
        "agent_usage_detailed",
        "agent_performance_metrics",
        "system_analytics",
        "usage_daily_totals",
        "usage_daily_user",
        "usage_counters",
        "model_pricing",
    ] {
        login
            .simple_query(&format!("SELECT count(*) FROM usage_analytics.{table}"))
            .unwrap_or_else(|e| panic!("auditor cannot read {table}: {e}"));
    }
    assert_eq!(
        scalar(
            &mut login,
            "SELECT count(DISTINCT user_id) FROM usage_analytics.agent_usage_detailed"
        )
        .as_deref(),
        Some("8")
    );
    // Nothing else, and no change anywhere (the login is also read-only by
    // default; SET it back to show the privileges alone refuse).
    login
        .batch_execute("SET default_transaction_read_only = off")
        .unwrap();
    let refused = [
        "SELECT * FROM usage_analytics.admin_audit_log",
        "SELECT * FROM usage_analytics.rollup_state",
        "SELECT * FROM usage_analytics.agent_usage_detailed_default",
        "INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id) VALUES (gen_random_uuid(), 'x')",
        "UPDATE usage_analytics.agent_usage_detailed SET cost_usd = 0",
        "DELETE FROM usage_analytics.agent_usage_detailed",
        "DELETE FROM usage_analytics.agent_performance_metrics",
        "UPDATE usage_analytics.usage_daily_totals SET total_requests = 0",
        "DELETE FROM usage_analytics.usage_counters",
        "INSERT INTO usage_analytics.model_pricing (provider, model, input_usd_per_1k, output_usd_per_1k) VALUES ('x', 'y', 1, 1)",
        "INSERT INTO usage_analytics.user_role_map VALUES (current_user, gen_random_uuid())",
        "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'a', 'a', 'langchain', 'openai', 'chat', 1, 1, 1, true)",
        "SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 1, 1)",
        "SELECT usage_analytics.grant_admin(current_user)",
        "SELECT usage_analytics.rollup_daily()",
        "SELECT usage_analytics.ensure_partitions()",
        "SELECT usage_analytics.metrics_usage_counters()",
    ];
    for sql in refused {
        let err = login.simple_query(sql).expect_err(sql);
        let (code, _) = db_error(&err);
        assert!(
            code == "42501" || code == "P0001" || code.starts_with("28"),
            "{sql}: {err}"
        );
    }
    assert_eq!(
        scalar(&mut login, "SELECT usage_analytics.is_admin()").as_deref(),
        Some("f")
    );
}

#[test]
fn dashboard_and_provisioning_are_consistent() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "ai-usage-records");
    assert!(dash["id"].is_null());
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for v in [
        "datasource",
        "user",
        "agent",
        "framework",
        "provider",
        "model",
        "message_type",
        "status",
        "search",
        "page_after",
        "page_size",
        "granularity",
    ] {
        assert!(vars.contains(&v), "variable ${v}");
    }
    let ds = &dash["templating"]["list"][0];
    assert_eq!(ds["query"], "grafana-postgresql-datasource");
    assert_eq!(ds["current"]["value"], "usage-analytics-postgres");
    let mut boxes: Vec<(i64, i64, i64, i64, String)> = vec![];
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        let title = p["title"].as_str().unwrap().to_string();
        assert!(x + w <= 24, "{title} outside the grid");
        for (ox, oy, ow, oh, other) in &boxes {
            assert!(
                !(x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h),
                "{title} overlaps {other}"
            );
        }
        boxes.push((x, y, w, h, title.clone()));
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: description"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        assert_eq!(
            p["datasource"]["type"], "grafana-postgresql-datasource",
            "{title}"
        );
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["rawQuery"], true);
            assert_eq!(t["datasource"]["uid"], "${datasource}");
        }
    }
    let records = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Usage records")
        .unwrap();
    let description = records["description"].as_str().unwrap();
    assert!(description.contains("export_usage_csv") && description.contains("COPY"));

    let yaml =
        std::fs::read_to_string(repo().join("grafana/provisioning/datasources/postgres.yaml")).unwrap();
    for needle in [
        "apiVersion: 1",
        "uid: usage-analytics-postgres",
        "type: grafana-postgresql-datasource",
        "sslmode: require",
        "password: $USAGE_ANALYTICS_PG_PASSWORD",
        "tlsCACert: $USAGE_ANALYTICS_PG_CA_CERT",
        "user: $USAGE_ANALYTICS_PG_USER",
    ] {
        assert!(
            yaml.lines().any(|l| l.trim() == needle),
            "postgres.yaml lacks {needle:?}"
        );
    }
    assert!(!yaml.contains('\t'), "tabs in YAML");
}
