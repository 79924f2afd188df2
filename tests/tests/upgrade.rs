//! Upgrade safety (the pgvectorscale pattern): every shipped version's
//! install script is kept in sql/released/; a schema change needs a version
//! bump and an upgrade script in sql/upgrades/, and upgrading loses nothing.

use integration_tests::{cluster, extension_dir, load_sample, scalar, text_rows};
use std::collections::BTreeMap;
use std::path::PathBuf;

const CURRENT: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Released versions → their frozen install scripts.
fn released() -> BTreeMap<Vec<u64>, (String, String)> {
    std::fs::read_dir(repo().join("sql/released"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let version = name
                .strip_prefix("pg_usage_analytics--")?
                .strip_suffix(".sql")?
                .to_string();
            if version.contains("--") {
                return None; // a frozen upgrade script, not a version's install script
            }
            let text = std::fs::read_to_string(repo().join("sql/released").join(&name)).unwrap();
            Some((version_key(&version), (version, text)))
        })
        .collect()
}

/// The script's statements as an order-insensitive multiset (pgrx orders
/// items by a dependency graph, not stably), without comments.
fn normalized(script: &str) -> Vec<String> {
    let without_comments: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut blocks: Vec<String> = without_comments
        .split("/* <begin connected objects> */")
        .map(|b| {
            b.replace("/* </end connected objects> */", "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|b| !b.is_empty())
        .collect();
    blocks.sort();
    blocks
}

#[test]
fn the_current_schema_is_released_or_has_an_upgrade_path() {
    let versions = released();
    let (latest_key, (latest, frozen)) = versions
        .iter()
        .next_back()
        .expect("sql/released has the first version");
    let current_script =
        std::fs::read_to_string(format!("{}/pg_usage_analytics--{CURRENT}.sql", extension_dir())).unwrap();
    if *latest_key == version_key(CURRENT) {
        assert!(
            normalized(frozen) == normalized(&current_script),
            "the install script of {CURRENT} differs from sql/released/pg_usage_analytics--{latest}.sql: \
             {CURRENT} has shipped, so bump the version, add sql/upgrades/pg_usage_analytics--{CURRENT}--NEW.sql.in \
             and run `make freeze-release`"
        );
    } else {
        assert!(
            *latest_key < version_key(CURRENT),
            "sql/released has a version newer than {CURRENT}"
        );
    }
    // Every released version other than the current one must reach it.
    for (version, _) in versions.values().filter(|(v, _)| v != CURRENT) {
        let path = format!("{}/pg_usage_analytics--{version}.sql", extension_dir());
        assert!(
            std::path::Path::new(&path).exists(),
            "make install did not install {path}"
        );
    }
}

#[test]
fn upgrading_from_every_released_version_loses_nothing() {
    let c = cluster();
    // Upgrades to the current version from every other (the current one is
    // released too once frozen).
    for (version, _) in released().values().filter(|(v, _)| v != CURRENT) {
        let db = format!("t_upgrade_{}", version.replace('.', "_"));
        c.connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let mut client = c.connect(&db);
        client
            .batch_execute(&format!(
                "CREATE EXTENSION pg_usage_analytics VERSION '{version}' CASCADE"
            ))
            .unwrap();
        load_sample(&mut client, 2000, 3);
        client
            .batch_execute(
                "SELECT usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 2, (now() AT TIME ZONE 'UTC')::date);
                 SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 0.004, 0.016, now() + interval '1 day');",
            )
            .unwrap();
        let fingerprint = "SELECT (SELECT count(*) || '/' || coalesce(sum(cost_usd), 0) || '/' || sum(total_tokens)
                                      FROM usage_analytics.agent_usage_detailed),
                                  (SELECT count(*) || '/' || sum(total_requests) FROM usage_analytics.agent_performance_metrics),
                                  (SELECT count(*) FROM usage_analytics.system_analytics),
                                  -- price history: every earlier row, by id (the upgrade adds the
                                  -- shipped catalog's rows and moves '-infinity' to 1970)
                                  (SELECT string_agg(concat_ws('/', id, provider, model, input_usd_per_1k, output_usd_per_1k,
                                                               CASE WHEN effective_from <= '1970-01-01 00:00:00+00'
                                                                    THEN 'installed' ELSE effective_from::text END,
                                                               effective_to), ',' ORDER BY id)
                                     FROM usage_analytics.model_pricing WHERE id <= 13),
                                  (SELECT count(*) FROM usage_analytics.admin_audit_log),
                                  (SELECT sum(requests) FROM usage_analytics.metrics_usage_counters()),
                                  -- the keys 0.1.0 had (later versions add keys)
                                  (SELECT jsonb_object_agg(key, value)::text
                                     FROM jsonb_each(usage_analytics.get_usage_summary())
                                    WHERE key IN ('total_requests', 'successful_requests', 'failed_requests',
                                                  'success_rate', 'total_input_tokens', 'total_output_tokens',
                                                  'total_tokens', 'total_cost_usd', 'avg_response_time_ms',
                                                  'unique_users', 'unpriced_requests', 'cost_by_provider',
                                                  'cost_by_framework', 'requests_by_agent', 'top_users'))";
        assert_eq!(
            scalar(&mut client, "SELECT max(id) FROM usage_analytics.model_pricing").as_deref(),
            Some("13"),
            "the price history compared below is the 12 installed rows and the admin's"
        );
        let before = text_rows(&mut client, fingerprint);
        client
            .batch_execute("ALTER EXTENSION pg_usage_analytics UPDATE")
            .unwrap();
        assert_eq!(
            scalar(
                &mut client,
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_usage_analytics'"
            )
            .as_deref(),
            Some(CURRENT)
        );
        assert_eq!(
            text_rows(&mut client, fingerprint),
            before,
            "upgrade from {version} changed data"
        );
        let failing = scalar(
            &mut client,
            "SELECT string_agg(check_name || ': ' || detail, '; ') FROM usage_analytics.self_test() WHERE NOT ok",
        );
        assert_eq!(failing, None, "self_test after upgrading from {version}");
        client
            .batch_execute(
                "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'after-upgrade', NULL, 'langchain',
                        'openai', 'chat', 10, 10, 10, true)",
            )
            .unwrap();
    }
}

/// Everything about the extension's schema that an upgrade must reproduce:
/// columns, constraints, indexes, functions (with bodies, settings and
/// grants), triggers, policies, table grants, statistics targets, extension
/// membership and the tables pg_dump dumps. Monthly partitions are left out
/// (their names follow the calendar); the default partition is in.
const CATALOG: &str = r#"
WITH rels AS (
    SELECT c.oid, c.relname FROM pg_class c
     WHERE c.relnamespace = 'usage_analytics'::regnamespace
       AND c.relname !~ '^agent_usage_detailed_p[0-9]'
)
SELECT 'column ' || r.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || ' stats ' || a.attstattarget || ' generated ' || a.attgenerated::text || ' storage ' || a.attstorage::text
  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = r.oid AND d.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || r.relname || '.' || c.conname || ' ' || pg_get_constraintdef(c.oid)
  FROM rels r JOIN pg_constraint c ON c.conrelid = r.oid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM rels r JOIN pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT 'table ' || r.relname || ' kind ' || c.relkind::text || ' rls ' || c.relrowsecurity
       || ' options ' || coalesce(c.reloptions::text, '-') || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x), '-')
  FROM rels r JOIN pg_class c ON c.oid = r.oid
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' definer ' || p.prosecdef || ' volatility ' || p.provolatile::text
       || ' config ' || coalesce(p.proconfig::text, '-') || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x), '-')
       || ' ' || regexp_replace(pg_get_functiondef(p.oid), '\s+', ' ', 'g')
  FROM pg_proc p WHERE p.pronamespace = 'usage_analytics'::regnamespace AND p.prokind IN ('f', 'p')
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
  FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || tablename || '.' || policyname || ' ' || cmd || ' ' || roles::text || ' '
       || coalesce(qual, '-') || ' ' || coalesce(with_check, '-')
  FROM pg_policies WHERE schemaname = 'usage_analytics'
UNION ALL
SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid AND d.refclassid = 'pg_extension'::regclass
 WHERE e.extname = 'pg_usage_analytics' AND d.deptype = 'e'
   AND pg_describe_object(d.classid, d.objid, d.objsubid) !~ 'agent_usage_detailed_p[0-9]'
UNION ALL
SELECT 'dumped ' || cfg::regclass || ' where ' || coalesce(cond, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(cfg, cond)
 WHERE e.extname = 'pg_usage_analytics'
ORDER BY 1
"#;

fn catalog(client: &mut postgres::Client) -> Vec<String> {
    client
        .query(CATALOG, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[test]
fn an_upgraded_schema_equals_a_fresh_install() {
    let c = cluster();
    let fresh_db = c.fresh_db("upgrade_fresh");
    let fresh = catalog(&mut c.connect(&fresh_db));
    for (version, _) in released().values().filter(|(v, _)| v != CURRENT) {
        let db = format!("t_upgrade_schema_{}", version.replace('.', "_"));
        c.connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let mut client = c.connect(&db);
        client
            .batch_execute(&format!(
                "CREATE EXTENSION pg_usage_analytics VERSION '{version}' CASCADE;
                 ALTER EXTENSION pg_usage_analytics UPDATE;"
            ))
            .unwrap();
        let upgraded = catalog(&mut client);
        let missing: Vec<_> = fresh.iter().filter(|l| !upgraded.contains(l)).collect();
        let extra: Vec<_> = upgraded.iter().filter(|l| !fresh.contains(l)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "upgrading from {version} does not reproduce a fresh {CURRENT} install \
             (fix sql/upgrades/, or run `make upgrade-script`):\nonly in a fresh install:\n{}\nonly after the upgrade:\n{}",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
            extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        );
    }
}

/// Every function's grant sits beside it (sql/*.sql, or extension_sql! next
/// to a Rust function): one left without a decision would run with
/// PostgreSQL's default, EXECUTE for PUBLIC.
#[test]
fn every_function_decides_who_may_call_it() {
    let c = cluster();
    let db = c.fresh_db("function_acls");
    let undecided = text_rows(
        &mut c.connect(&db),
        "SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace = 'usage_analytics'::regnamespace AND p.proacl IS NULL
          ORDER BY 1",
    );
    assert!(
        undecided.is_empty(),
        "functions with no REVOKE/GRANT beside them: {undecided:?}"
    );
}
