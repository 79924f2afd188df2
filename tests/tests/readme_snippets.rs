//! The README's snippets run as printed.
//!
//! Every ```sql block of README.md is run, in order, in one fresh database
//! with the extension, as a superuser, each block as one batch on a new
//! connection (as if pasted into a new psql session). A block preceded by
//! `<!-- expect-error: SQLSTATE -->` must fail with that SQLSTATE; a block
//! preceded by `<!-- not-run: reason -->` is skipped (for snippets meant for
//! another database or for pg_cron's). Roles a block creates are
//! cluster-wide, which is why this binary runs the README once.
//!
//! postgresql.conf snippets (```conf blocks, or unlabelled ``` blocks that
//! mention shared_preload_libraries) must parse: they are appended to the
//! postgresql.conf of a new cluster, which must then start and report the
//! snippet's settings.

use integration_tests::{cluster, db_error, scalar, Cluster};
use std::path::Path;

/// One fenced block of the README.
#[derive(Debug)]
struct Block {
    /// The fence's info string (`sql`, `conf`, `sh`, or empty).
    lang: String,
    /// 1-based line of the opening fence, for messages.
    line: usize,
    body: String,
    /// The HTML comment on the last non-blank line before the fence, if any.
    marker: Option<Marker>,
}

#[derive(Debug, PartialEq)]
enum Marker {
    ExpectError(String),
    NotRun(String),
}

fn parse_marker(line: &str) -> Option<Marker> {
    let inner = line.trim().strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    if let Some(code) = inner.strip_prefix("expect-error:") {
        return Some(Marker::ExpectError(code.trim().to_string()));
    }
    inner
        .strip_prefix("not-run:")
        .map(|reason| Marker::NotRun(reason.trim().to_string()))
}

/// The fenced blocks of a Markdown document, with the marker before each.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut last_text: Option<&str> = None;
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if let Some(block) = open.as_mut() {
            if fence {
                out.push(open.take().unwrap());
                last_text = None;
            } else {
                block.body.push_str(line);
                block.body.push('\n');
            }
        } else if fence {
            let lang = line.trim_start().trim_start_matches('`').trim().to_string();
            open = Some(Block {
                lang,
                line: i + 1,
                body: String::new(),
                marker: last_text.and_then(parse_marker),
            });
        } else if !line.trim().is_empty() {
            last_text = Some(line);
        }
    }
    assert!(open.is_none(), "README.md: a fenced block is never closed");
    out
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_conf(block: &Block) -> bool {
    block.lang == "conf" || (block.lang.is_empty() && block.body.contains("shared_preload_libraries"))
}

#[test]
fn marker_and_block_parsing() {
    let md = "text\n<!-- expect-error: 22023 -->\n\n```sql\nSELECT 1;\n```\n\
              ```conf\na = 1\n```\n<!-- not-run: pg_cron's database -->\n```sql\nSELECT 2;\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].marker, Some(Marker::ExpectError("22023".into())));
    assert_eq!(b[0].body, "SELECT 1;\n");
    assert_eq!(b[1].lang, "conf");
    assert_eq!(b[1].marker, None, "a marker applies to the next block only");
    assert_eq!(b[2].marker, Some(Marker::NotRun("pg_cron's database".into())));
}

#[test]
fn every_sql_block_runs_as_printed() {
    let text = readme();
    let all = blocks(&text);
    let sql: Vec<&Block> = all.iter().filter(|b| b.lang == "sql").collect();
    assert!(
        sql.len() >= 20,
        "expected the README's SQL examples, found {} blocks",
        sql.len()
    );
    let skipped: Vec<&&Block> = sql
        .iter()
        .filter(|b| matches!(b.marker, Some(Marker::NotRun(_))))
        .collect();
    assert!(
        skipped.len() <= 3,
        "not-run is for the odd snippet, {} blocks carry it",
        skipped.len()
    );

    let c = cluster();
    let db = c.fresh_db("readme");
    let mut failures = Vec::new();
    let mut ran = 0;
    for block in &sql {
        let mut client = c.connect(&db);
        let result = run_block(&mut client, &block.body);
        match (&block.marker, result) {
            (Some(Marker::NotRun(_)), _) => continue,
            (Some(Marker::ExpectError(code)), Ok(())) => failures.push(format!(
                "README.md:{}: expected SQLSTATE {code}, the block succeeded",
                block.line
            )),
            (Some(Marker::ExpectError(code)), Err(e)) => {
                let (got, message) = db_error(&e);
                if &got != code {
                    failures.push(format!(
                        "README.md:{}: expected SQLSTATE {code}, got {got}: {message}",
                        block.line
                    ));
                }
            }
            (None, Ok(())) => {}
            (None, Err(e)) => {
                let (code, message) = db_error(&e);
                failures.push(format!(
                    "README.md:{}: {code} {message}\n{}",
                    block.line, block.body
                ));
            }
        }
        ran += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} SQL blocks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The database works after everything the README did to it.
    let mut client = c.connect(&db);
    let failed_checks = scalar(
        &mut client,
        "SELECT count(*) FROM usage_analytics.self_test() WHERE NOT ok",
    );
    assert_eq!(
        failed_checks.as_deref(),
        Some("0"),
        "self_test() after the README's snippets"
    );
}

/// Runs one block as a batch. A `COPY … TO STDOUT` block is one statement
/// whose output is read (the simple-query batch cannot take a copy stream).
fn run_block(client: &mut postgres::Client, body: &str) -> Result<(), postgres::Error> {
    let upper = body.trim_start().to_ascii_uppercase();
    if upper.starts_with("COPY") && upper.contains("TO STDOUT") {
        let statement = body.trim().trim_end_matches(';');
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut client.copy_out(statement)?, &mut out).expect("COPY output");
        return Ok(());
    }
    client.batch_execute(body)
}

/// `name = value`, with an optional trailing `# comment`, or a comment or a
/// blank line: what postgresql.conf accepts (`--` is not a comment there).
fn conf_settings(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in body.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (name, rest) = t
            .split_once('=')
            .ok_or_else(|| format!("not `name = value`: {line}"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
        {
            return Err(format!("not a setting name: {line}"));
        }
        let rest = rest.trim();
        let value = if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted
                .find('\'')
                .ok_or_else(|| format!("unterminated quote: {line}"))?;
            let after = quoted[end + 1..].trim();
            if !(after.is_empty() || after.starts_with('#')) {
                return Err(format!("text after the value that is not a # comment: {line}"));
            }
            quoted[..end].to_string()
        } else {
            let mut parts = rest.splitn(2, char::is_whitespace);
            let value = parts.next().unwrap_or_default().to_string();
            let after = parts.next().unwrap_or_default().trim();
            if !(after.is_empty() || after.starts_with('#')) {
                return Err(format!("text after the value that is not a # comment: {line}"));
            }
            value
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

#[test]
fn conf_parser_refuses_sql_comments() {
    assert!(conf_settings("cron.database_name = 'db'     -- pg_cron lives in one database").is_err());
    assert_eq!(
        conf_settings("# x\nshared_preload_libraries = 'pg_cron'  # preload\nmax_wal_size = 1GB\n").unwrap(),
        vec![
            ("shared_preload_libraries".to_string(), "pg_cron".to_string()),
            ("max_wal_size".to_string(), "1GB".to_string())
        ]
    );
}

#[test]
fn postgresql_conf_snippets_start_a_server() {
    let text = readme();
    let confs: Vec<Block> = blocks(&text).into_iter().filter(is_conf).collect();
    assert!(
        !confs.is_empty(),
        "the README has a postgresql.conf snippet for pg_cron"
    );
    let mut settings = Vec::new();
    for block in &confs {
        match conf_settings(&block.body) {
            Ok(s) => settings.extend(s),
            Err(e) => panic!("README.md:{}: {e}", block.line),
        }
    }
    // A real server start with every snippet appended, as a reader would.
    let cluster = Cluster::init("readme_conf");
    let conf = cluster.data_dir().join("postgresql.conf");
    let mut appended = String::from("\n# README.md snippets\n");
    for block in &confs {
        appended.push_str(&block.body);
    }
    let mut file = std::fs::OpenOptions::new().append(true).open(&conf).unwrap();
    std::io::Write::write_all(&mut file, appended.as_bytes()).unwrap();
    drop(file);
    cluster.pg_ctl_start();
    let mut client = cluster.connect("postgres");
    for (name, value) in &settings {
        let shown = client
            .query_one(&format!("SELECT current_setting('{name}')"), &[])
            .unwrap()
            .get::<_, String>(0);
        assert_eq!(&shown, value, "{name} as the server read it");
    }
    drop(client);
    cluster.pg_ctl_stop("fast");
}
