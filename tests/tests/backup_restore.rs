//! Backup and restore: a pg_dump/pg_restore round trip (custom format) and a
//! pg_dump/psql round trip (plain SQL) into a new, empty database reproduce
//! every table of the extension exactly, with no error, and leave a database
//! that works: restored rows are not re-priced or re-counted by triggers, the
//! admin's configuration (prices, default models, role map, audit log) comes
//! back, and identities continue after the restored ids.

use integration_tests::{cluster, db_error, load_sample, pg_bin, scalar, USERS};
use postgres::Client;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a single pg_dump, pg_restore or psql run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

type Rows = Vec<Vec<Option<String>>>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    /// pg_dump -Fc, then pg_restore -d.
    Custom,
    /// pg_dump (plain SQL), then psql -v ON_ERROR_STOP=1 -X -q -f.
    Plain,
}

/// Everything a failed round trip should say, collected so one run reports
/// every broken property at once.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }

    fn finish(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} check(s) failed:\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// Output of one client tool run as the postgres OS user.
struct ToolRun {
    success: bool,
    status: String,
    stderr: String,
}

impl ToolRun {
    /// stderr lines that report an error (pg_restore prints "pg_restore:
    /// error: …" and "errors ignored on restore"; psql prints "ERROR: …").
    fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.to_lowercase().contains("error"))
            .collect()
    }

    fn describe(&self) -> String {
        let mut lines: Vec<&str> = self.stderr.lines().collect();
        let total = lines.len();
        lines.truncate(40);
        format!(
            "exit status {}; stderr ({total} lines{}):\n{}",
            self.status,
            if total > 40 { ", first 40 shown" } else { "" },
            lines.join("\n")
        )
    }
}

/// Runs `{pg_bin()}/{tool}` as the postgres OS user, bounded by TOOL_TIMEOUT,
/// with stdout and stderr captured in files under the cluster directory.
fn run_tool(tool: &str, args: &[String], log_name: &str) -> ToolRun {
    let dir = &cluster().dir;
    let out_path = dir.join(format!("{log_name}.stdout"));
    let err_path = dir.join(format!("{log_name}.stderr"));
    let (uid, gid) = postgres_ids();
    let mut child = Command::new(format!("{}/{tool}", pg_bin()))
        .args(args)
        .current_dir(dir)
        .env("PGCONNECT_TIMEOUT", "10")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{tool} {args:?} did not finish within {TOOL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ToolRun {
        success: status.success(),
        status: status.to_string(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn connection_args(db: &str) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        cluster().port.to_string(),
        "-U".into(),
        "postgres".into(),
        "-w".into(),
        "-d".into(),
        db.into(),
    ]
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_string()
}

/// Rows as text (NULL as None), or the database's error as text.
fn try_rows(client: &mut Client, sql: &str) -> Result<Rows, String> {
    match client.simple_query(sql) {
        Ok(messages) => Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()),
        Err(e) => {
            let (code, message) = db_error(&e);
            Err(format!("{code} {message}"))
        }
    }
}

/// One line per row, columns joined by " | ", NULL shown as NULL.
fn lines(rows: &Rows) -> Vec<String> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|c| c.as_deref().unwrap_or("NULL").to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

fn try_lines(client: &mut Client, sql: &str) -> Result<Vec<String>, String> {
    try_rows(client, sql).map(|r| lines(&r))
}

fn shorten(s: &str) -> String {
    const MAX: usize = 300;
    if s.chars().count() > MAX {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A readable account of how two row lists differ (as multisets).
fn difference(source: &[String], restored: &[String]) -> String {
    let mut a = source.to_vec();
    let mut b = restored.to_vec();
    a.sort();
    b.sort();
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i] < b[j]) {
            only_a.push(&a[i]);
            i += 1;
        } else if i == a.len() || b[j] < a[i] {
            only_b.push(&b[j]);
            j += 1;
        } else {
            i += 1;
            j += 1;
        }
    }
    let sample = |v: &[&String]| {
        v.iter()
            .take(4)
            .map(|s| format!("\n        {}", shorten(s)))
            .collect::<String>()
    };
    format!(
        "source has {} rows, restored has {}; {} only in the source:{}\n      {} only in the restored database:{}",
        a.len(),
        b.len(),
        only_a.len(),
        sample(&only_a),
        only_b.len(),
        sample(&only_b)
    )
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a table holds, for failure messages.
fn meaning(table: &str) -> &'static str {
    match table {
        "agent_usage_detailed" => "usage rows (costs, models)",
        "model_pricing" => "price history (admin price changes)",
        "provider_default_model" => "provider default models (admin changes)",
        "user_role_map" => "role → user mapping",
        "admin_audit_log" => "audit log",
        "agent_performance_metrics" | "system_analytics" | "usage_daily_totals" => "rollup table",
        "rollup_state" => "rollup bookkeeping",
        "usage_counters" => "exporter counters",
        "usage_daily_user" => "per-day per-user counters",
        "search_texts" => "searched texts (search)",
        _ => "extension table",
    }
}

/// The source database, built through the public API, and what the test
/// needs to find again after the restore.
struct Source {
    db: String,
    admin_role: String,
    mapped_role: String,
    mapped_user: String,
    unknown_id: String,
    priced_later_id: String,
    caller_cost_id: String,
    caller_cost: String,
    default_before_id: String,
    default_after_id: String,
}

fn build_source(name: &str) -> Source {
    let c = cluster();
    let db = c.fresh_db(name);
    let admin_role = format!("{db}_admin");
    let mapped_role = format!("{db}_alice");
    let mapped_user = USERS[3].to_string();
    let mut owner = c.connect(&db);
    owner
        .batch_execute(&format!(
            "CREATE ROLE {admin_role} LOGIN; SELECT usage_analytics.grant_admin('{admin_role}');
             CREATE ROLE {mapped_role} LOGIN; GRANT usage_analytics_reader TO {mapped_role};"
        ))
        .unwrap();

    // Varied rows over four days, through a plain INSERT (pricing trigger, counters).
    load_sample(&mut owner, 3000, 4);

    // An unknown model: recorded unpriced (cost NULL, model NULL).
    let unknown_id = scalar(
        &mut owner,
        &format!(
            "SELECT usage_analytics.track_detailed_usage('{}', 'restore-unknown', 'Restore unknown', 'langchain',
                    'openai', 'chat', 1200, 300, 800, true, NULL, '{{\"case\": \"unknown-model\"}}',
                    'no-such-model-x')::text",
            USERS[0]
        ),
    )
    .unwrap();
    let unknown = lines(
        &try_rows(
            &mut owner,
            &format!(
                "SELECT cost_usd::text, model, requested_model FROM usage_analytics.agent_usage_detailed
              WHERE id = '{unknown_id}'"
            ),
        )
        .unwrap(),
    );
    assert_eq!(
        unknown,
        vec!["NULL | NULL | no-such-model-x".to_string()],
        "source setup: the unknown-model row is not unpriced"
    );

    // Another model unknown when recorded; the admin prices it afterwards
    // (from before the row's time). The row keeps its recorded NULL cost (only
    // an explicit re-rating changes history), so a restore must not price it.
    let priced_later_id = scalar(
        &mut owner,
        &format!(
            "SELECT usage_analytics.track_detailed_usage('{}', 'restore-priced-later', NULL, 'autogen',
                    'openai', 'chat', 4000, 1000, 600, true, NULL, '{{}}', 'gpt-restore-later-xq')::text",
            USERS[6]
        ),
    )
    .unwrap();

    // A caller-supplied cost, two days ago.
    let caller_cost = "0.123456789012345678".to_string();
    let caller_cost_id = scalar(
        &mut owner,
        &format!(
            "INSERT INTO usage_analytics.agent_usage_detailed
               (user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
                response_time_ms, success, model, cost_usd, \"timestamp\")
             VALUES ('{}', 'restore-caller-cost', NULL, 'autogen', 'anthropic', 'chat', 500, 250, 1500, true,
                     'claude-3-opus', {caller_cost}, now() - interval '2 days')
             RETURNING id::text",
            USERS[1]
        ),
    )
    .unwrap();

    // No model: priced as the provider default (still gpt-4o-mini here), a day ago.
    let insert_default = |client: &mut Client, agent: &str, ago: &str| {
        scalar(
            client,
            &format!(
                "INSERT INTO usage_analytics.agent_usage_detailed
                   (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens,
                    response_time_ms, success, model, \"timestamp\")
                 VALUES ('{}', '{agent}', 'hybrid', 'openai', 'tool_execution', 1000, 1000, 300, true, NULL,
                         now() - interval '{ago}')
                 RETURNING id::text",
                USERS[2]
            ),
        )
        .unwrap()
    };
    let default_before_id = insert_default(&mut owner, "restore-default-before", "1 day");

    // Admin actions, as an admin role: a price in force for the last hour
    // (so it prices recent rows), a future price, a price for the model that
    // was unknown, a new default model for openai and a mapped role. Each is
    // audited.
    let mut admin = c.connect_as(&db, &admin_role);
    admin
        .batch_execute(
            "SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 0.004, 0.016, now() - interval '1 hour');
             SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 0.005, 0.02, now() + interval '30 days');
             SELECT usage_analytics.set_model_price('openai', 'gpt-restore-later-xq', 0.001, 0.002,
                                                    now() - interval '3 days');
             UPDATE usage_analytics.provider_default_model SET model = 'gpt-4o' WHERE provider = 'openai';",
        )
        .unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO usage_analytics.user_role_map VALUES ('{mapped_role}', '{mapped_user}')"
        ))
        .unwrap();
    drop(admin);

    // Rows priced by the new price and the new default.
    let default_after_id = insert_default(&mut owner, "restore-default-after", "10 minutes");
    owner
        .batch_execute(&format!(
            "SELECT usage_analytics.track_detailed_usage('{}', 'restore-new-price', NULL, 'langchain', 'openai',
                    'chat', 2000, 500, 900, true, NULL, '{{}}', 'gpt-4o-2024-08-06')",
            USERS[4]
        ))
        .unwrap();

    // Rollups over the sample's days.
    owner
        .batch_execute("SELECT usage_analytics.rollup_range(current_date - 3, current_date)")
        .unwrap();

    // The round trip is only meaningful if there is something to carry.
    for (what, sql) in [
        (
            "usage rows",
            "SELECT count(*) >= 3000 FROM usage_analytics.agent_usage_detailed",
        ),
        (
            "rollup rows",
            "SELECT count(*) > 0 FROM usage_analytics.agent_performance_metrics",
        ),
        (
            "system rollup rows",
            "SELECT count(*) > 0 FROM usage_analytics.system_analytics",
        ),
        (
            "audit rows",
            "SELECT count(*) >= 4 FROM usage_analytics.admin_audit_log",
        ),
        (
            "counter rows",
            "SELECT count(*) > 0 FROM usage_analytics.metrics_usage_counters()",
        ),
        (
            "usage days",
            "SELECT count(DISTINCT \"timestamp\"::date) >= 4 FROM usage_analytics.agent_usage_detailed",
        ),
    ] {
        assert_eq!(
            scalar(&mut owner, sql).as_deref(),
            Some("t"),
            "source setup: no {what}"
        );
    }

    Source {
        db,
        admin_role,
        mapped_role,
        mapped_user,
        unknown_id,
        priced_later_id,
        caller_cost_id,
        caller_cost,
        default_before_id,
        default_after_id,
    }
}

/// Dumps the source and restores it into a new empty database; returns the
/// new database's name. Restore errors are recorded, not fatal, so the
/// comparison still reports what came back.
fn dump_and_restore(source: &Source, format: Format, failures: &mut Failures) -> String {
    let c = cluster();
    let (suffix, extension) = match format {
        Format::Custom => ("custom", "dump"),
        Format::Plain => ("plain", "sql"),
    };
    let target = format!("{}_restored_{suffix}", source.db);
    let dump_file = c.dir.join(format!("{}.{extension}", source.db));

    let mut dump_args = connection_args(&source.db);
    if format == Format::Custom {
        dump_args.push("-Fc".into());
    }
    dump_args.extend(["-f".into(), path_arg(&dump_file)]);
    let dump = run_tool("pg_dump", &dump_args, &format!("{}-pg_dump", source.db));
    assert!(
        dump.success && dump.error_lines().is_empty(),
        "pg_dump ({format:?}) of {} failed: {}",
        source.db,
        dump.describe()
    );

    c.connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {target}"))
        .unwrap();

    let restore = match format {
        Format::Custom => {
            let mut args = connection_args(&target);
            args.push(path_arg(&dump_file));
            run_tool("pg_restore", &args, &format!("{target}-pg_restore"))
        }
        Format::Plain => {
            let mut args = connection_args(&target);
            args.extend([
                "-v".into(),
                "ON_ERROR_STOP=1".into(),
                "-X".into(),
                "-q".into(),
                "-f".into(),
                path_arg(&dump_file),
            ]);
            run_tool("psql", &args, &format!("{target}-psql"))
        }
    };
    let tool = match format {
        Format::Custom => "pg_restore",
        Format::Plain => "psql -v ON_ERROR_STOP=1",
    };
    failures.check(restore.success, || {
        format!(
            "{tool} into an empty database did not exit 0: {}",
            restore.describe()
        )
    });
    failures.check(restore.error_lines().is_empty(), || {
        format!("{tool} reported errors: {}", restore.describe())
    });
    target
}

const TABLES_SQL: &str = "SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relkind IN ('r', 'p')
      AND NOT c.relispartition
    ORDER BY 1";

const PARTITIONS_SQL: &str = "SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid)
    FROM pg_class c
    JOIN pg_inherits i ON i.inhrelid = c.oid
    JOIN pg_class p ON p.oid = i.inhparent
    WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relispartition
    ORDER BY 1, 2";

/// Compares a query's rows on both sides, recording a failure named `what`.
fn compare_query(src: &mut Client, dst: &mut Client, sql: &str, what: &str, failures: &mut Failures) {
    let a = try_lines(src, sql).unwrap_or_else(|e| panic!("source: {sql}: {e}"));
    match try_lines(dst, sql) {
        Ok(b) => failures.check(a == b, || {
            format!("{what} differs after the restore: {}", difference(&a, &b))
        }),
        Err(e) => failures.check(false, || {
            format!("{what}: cannot be read in the restored database: {e}")
        }),
    }
}

/// One value on the restored side, or the error as text.
fn restored_value(dst: &mut Client, sql: &str) -> Result<Option<String>, String> {
    try_rows(dst, sql).map(|r| r.into_iter().next().and_then(|r| r.into_iter().next().flatten()))
}

fn compare_contents(src: &mut Client, dst: &mut Client, source: &Source, failures: &mut Failures) {
    // Every table of the extension, discovered in the source (so tables added
    // later are covered), row for row.
    let tables: Vec<String> = try_lines(src, TABLES_SQL).unwrap();
    assert!(
        tables.iter().any(|t| t == "agent_usage_detailed") && tables.len() >= 8,
        "table discovery found too little: {tables:?}"
    );
    match try_lines(dst, TABLES_SQL) {
        Ok(restored) => failures.check(restored == tables, || {
            format!("the restored database has other tables: source {tables:?}, restored {restored:?}")
        }),
        Err(e) => failures.check(false, || format!("cannot list restored tables: {e}")),
    }
    compare_query(src, dst, PARTITIONS_SQL, "the partition layout", failures);
    for table in &tables {
        let sql = format!(
            "SELECT t::text FROM usage_analytics.{} t ORDER BY 1",
            ident(table)
        );
        compare_query(
            src,
            dst,
            &sql,
            &format!("table usage_analytics.{table} ({})", meaning(table)),
            failures,
        );
    }

    // NULL costs stay NULL: the unknown-model row is not priced by the restore.
    let unknown_sql = format!(
        "SELECT coalesce(cost_usd::text, 'NULL'), coalesce(model, 'NULL'), requested_model
           FROM usage_analytics.agent_usage_detailed WHERE id = '{}'",
        source.unknown_id
    );
    match try_lines(dst, &unknown_sql) {
        Ok(rows) => failures.check(rows == ["NULL | NULL | no-such-model-x"], || {
            format!(
                "the unknown-model row must come back with cost_usd NULL and model NULL \
                 (cost | model | requested_model expected NULL | NULL | no-such-model-x), got {rows:?}"
            )
        }),
        Err(e) => failures.check(false, || format!("unknown-model row: {e}")),
    }
    // A caller-supplied cost is kept exactly; default-model rows keep the cost
    // they were recorded with (not re-priced with the restore's prices).
    let cost_of = |client: &mut Client, id: &str| {
        restored_value(
            client,
            &format!(
                "SELECT coalesce(cost_usd::text, 'NULL') || ' / ' || coalesce(model, 'NULL')
                   FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"
            ),
        )
    };
    for (what, id) in [
        ("caller-supplied cost row", &source.caller_cost_id),
        (
            "row of a model priced only after it was recorded",
            &source.priced_later_id,
        ),
        (
            "openai row without a model (before the default change)",
            &source.default_before_id,
        ),
        (
            "openai row without a model (after the default change)",
            &source.default_after_id,
        ),
    ] {
        let expected = cost_of(src, id).unwrap();
        let got = cost_of(dst, id);
        failures.check(got.as_ref() == Ok(&expected), || {
            format!("{what} {id}: cost / model was {expected:?} in the source, restored {got:?}")
        });
    }
    let caller = cost_of(dst, &source.caller_cost_id);
    failures.check(
        matches!(&caller, Ok(Some(v)) if v.starts_with(&format!("{} / ", source.caller_cost))),
        || {
            format!(
                "the caller-supplied cost {} is not kept: {caller:?}",
                source.caller_cost
            )
        },
    );

    // The admin's price rows.
    for (input, output) in [("0.004", "0.016"), ("0.005", "0.02")] {
        let sql = format!(
            "SELECT count(*) FROM usage_analytics.model_pricing
              WHERE provider = 'openai' AND model = 'gpt-4o'
                AND input_usd_per_1k = {input} AND output_usd_per_1k = {output}"
        );
        let got = restored_value(dst, &sql);
        failures.check(got == Ok(Some("1".into())), || {
            format!(
                "the admin's price row openai/gpt-4o {input}/{output} is missing after the restore: {got:?}"
            )
        });
    }
    // The admin's default model.
    let default = restored_value(
        dst,
        "SELECT model FROM usage_analytics.provider_default_model WHERE provider = 'openai'",
    );
    failures.check(default == Ok(Some("gpt-4o".into())), || {
        format!(
            "provider_default_model for openai must be the admin's gpt-4o after the restore, got {default:?}"
        )
    });
    // The role map.
    let mapped = restored_value(
        dst,
        &format!(
            "SELECT user_id::text FROM usage_analytics.user_role_map WHERE role_name = '{}'",
            source.mapped_role
        ),
    );
    failures.check(mapped.as_ref() == Ok(&Some(source.mapped_user.clone())), || {
        format!(
            "user_role_map must map {} to {} after the restore, got {mapped:?}",
            source.mapped_role, source.mapped_user
        )
    });
    // The audit log: same number of rows, same rows (no restore-time entries).
    let count_sql = "SELECT count(*) FROM usage_analytics.admin_audit_log";
    let (a, b) = (
        restored_value(src, count_sql).unwrap(),
        restored_value(dst, count_sql),
    );
    failures.check(b.as_ref() == Ok(&a), || {
        format!("admin_audit_log row count: source {a:?}, restored {b:?}")
    });
    compare_query(
        src,
        dst,
        "SELECT id, at, actor_role, actor_user_id, action, target, details
           FROM usage_analytics.admin_audit_log ORDER BY id",
        "admin_audit_log contents (id, at, actor, action, target, details)",
        failures,
    );
    // The rollups.
    for table in [
        "agent_performance_metrics",
        "system_analytics",
        "usage_daily_totals",
        "rollup_state",
    ] {
        if tables.iter().any(|t| t == table) {
            let a = try_lines(src, &format!("SELECT count(*) FROM usage_analytics.{table}")).unwrap();
            let b = try_lines(dst, &format!("SELECT count(*) FROM usage_analytics.{table}"));
            failures.check(b.as_ref() == Ok(&a), || {
                format!("rollup table {table}: source has {a:?} rows, restored {b:?}")
            });
        }
    }

    // What users and the exporter read.
    compare_query(
        src,
        dst,
        "SELECT usage_analytics.get_usage_summary()::text",
        "get_usage_summary()",
        failures,
    );
    compare_query(
        src,
        dst,
        "SELECT t::text FROM usage_analytics.metrics_usage_counters() t ORDER BY 1",
        "metrics_usage_counters() (the exporter's counters)",
        failures,
    );
    // Prices in force: the same costs on both sides.
    compare_query(
        src,
        dst,
        "SELECT coalesce(usage_analytics.calculate_cost(p, m, 1000, 1000, now() + make_interval(days => d))::text, 'NULL')
           FROM (VALUES ('openai', NULL::text), ('openai', 'gpt-4o'), ('openai', 'gpt-4o-mini'),
                        ('anthropic', 'claude-3-haiku'), ('openai', 'no-such-model-x'),
                        ('openai', 'gpt-restore-later-xq')) AS v (p, m),
                (VALUES (-3), (0), (31)) AS w (d)
          ORDER BY p, m, d",
        "calculate_cost at the prices in force (provider default, admin prices)",
        failures,
    );
}

/// After the comparison: the restored database keeps working, and new rows
/// and audit entries do not collide with restored ids.
fn use_after_restore(
    src: &mut Client,
    dst: &mut Client,
    source: &Source,
    target: &str,
    failures: &mut Failures,
) {
    let max_ids = "SELECT coalesce((SELECT max(id) FROM usage_analytics.admin_audit_log), 0)::text || ' ' ||
                          coalesce((SELECT max(id) FROM usage_analytics.model_pricing), 0)::text || ' ' ||
                          (SELECT count(*) FROM usage_analytics.admin_audit_log)::text";
    // [max audit id, max price id, audit rows]; -1 for what cannot be read.
    let parse = |v: Option<String>| -> [i64; 3] {
        let mut out = [-1; 3];
        for (slot, x) in out.iter_mut().zip(v.unwrap_or_default().split(' ')) {
            *slot = x.parse().unwrap_or(-1);
        }
        out
    };
    let src_before = parse(restored_value(src, max_ids).unwrap());
    let dst_before = parse(restored_value(dst, max_ids).unwrap_or_default());

    // An audited admin action on both sides (a price row and its audit row:
    // two identity columns), as the admin role.
    let action = "SELECT usage_analytics.set_model_price('anthropic', 'claude-3-haiku', 0.0003, 0.0015,
                         now() + interval '60 days')";
    cluster()
        .connect_as(&source.db, &source.admin_role)
        .batch_execute(action)
        .unwrap();
    let mut dst_admin = cluster().connect_as(target, &source.admin_role);
    match dst_admin.batch_execute(action) {
        Ok(()) => {
            let src_after = parse(restored_value(src, max_ids).unwrap());
            let dst_after = parse(restored_value(dst, max_ids).unwrap_or_default());
            failures.check(
                dst_after[0] > dst_before[0] && dst_after[1] > dst_before[1],
                || {
                    format!(
                        "new audit/price ids after the restore do not follow the restored ones: \
                     max ids before {dst_before:?}, after {dst_after:?}"
                    )
                },
            );
            failures.check(
                dst_after[2] - dst_before[2] == src_after[2] - src_before[2],
                || {
                    format!(
                        "an audited action wrote {} audit row(s) in the restored database, {} in the source",
                        dst_after[2] - dst_before[2],
                        src_after[2] - src_before[2]
                    )
                },
            );
        }
        Err(e) => {
            let (code, message) = db_error(&e);
            failures.check(false, || {
                format!(
                    "an audited admin action (set_model_price) fails in the restored database \
                     (identity not continued after the restored ids?): {code} {message}"
                )
            });
        }
    }

    // track_detailed_usage records and prices new rows, like the source does.
    let requests = "SELECT coalesce(sum(requests), 0)::text FROM usage_analytics.metrics_usage_counters()";
    let dst_requests_before: i64 = restored_value(dst, requests)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    for (what, model) in [
        ("gpt-4o-mini", "'gpt-4o-mini'"),
        ("no model (openai default)", "NULL"),
    ] {
        let track = format!(
            "SELECT usage_analytics.track_detailed_usage('{}', 'after-restore', NULL, 'langchain', 'openai',
                    'chat', 1000, 500, 250, true, NULL, '{{}}', {model})::text",
            USERS[5]
        );
        let row = |client: &mut Client, id: &str| {
            restored_value(
                client,
                &format!(
                    "SELECT coalesce(cost_usd::text, 'NULL') || ' / ' || coalesce(model, 'NULL')
                       FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"
                ),
            )
        };
        let src_id = scalar(src, &track).unwrap();
        let expected = row(src, &src_id).unwrap();
        match restored_value(dst, &track) {
            Ok(Some(id)) => {
                let got = row(dst, &id);
                failures.check(matches!(&got, Ok(Some(v)) if !v.starts_with("NULL")), || {
                    format!(
                        "track_detailed_usage ({what}) after the restore recorded an unpriced row: {got:?}"
                    )
                });
                failures.check(got.as_ref() == Ok(&expected), || {
                    format!(
                        "track_detailed_usage ({what}) after the restore: cost / model {got:?}, \
                         the source records {expected:?}"
                    )
                });
            }
            Ok(None) => failures.check(false, || {
                format!("track_detailed_usage ({what}) after the restore returned NULL")
            }),
            Err(e) => failures.check(false, || {
                format!("track_detailed_usage ({what}) fails in the restored database: {e}")
            }),
        }
    }
    let dst_requests_after: i64 = restored_value(dst, requests)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    failures.check(dst_requests_after == dst_requests_before + 2, || {
        format!(
            "the exporter's request counter in the restored database went from {dst_requests_before} \
             to {dst_requests_after} after recording 2 requests"
        )
    });
}

fn round_trip(name: &str, format: Format) {
    let source = build_source(name);
    let mut failures = Failures::default();
    let target = dump_and_restore(&source, format, &mut failures);
    let mut src = cluster().connect(&source.db);
    let mut dst = cluster().connect(&target);
    compare_contents(&mut src, &mut dst, &source, &mut failures);
    use_after_restore(&mut src, &mut dst, &source, &target, &mut failures);
    failures.finish(&format!(
        "{format:?}-format dump of {} restored into {target}",
        source.db
    ));
}

#[test]
fn custom_format_dump_restores_every_table_exactly() {
    round_trip("bkp_custom", Format::Custom);
}

#[test]
fn plain_sql_dump_restores_every_table_exactly() {
    round_trip("bkp_plain", Format::Plain);
}
