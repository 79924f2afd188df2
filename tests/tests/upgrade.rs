//! Upgrade safety (the pgvectorscale pattern): every shipped version's
//! install script is kept in sql/released/; a schema change needs a version
//! bump and an upgrade script in sql/upgrades/, and upgrading loses nothing.

use integration_tests::{cluster, load_sample, scalar, text_rows};
use std::collections::BTreeMap;
use std::path::PathBuf;

const EXTENSION_DIR: &str = "/usr/share/postgresql/15/extension";
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
        std::fs::read_to_string(format!("{EXTENSION_DIR}/pg_usage_analytics--{CURRENT}.sql")).unwrap();
    if *latest_key == version_key(CURRENT) {
        assert!(
            normalized(frozen) == normalized(&current_script),
            "the install script of {CURRENT} differs from sql/released/pg_usage_analytics--{latest}.sql: \
             {CURRENT} has shipped, so bump the version, add sql/upgrades/pg_usage_analytics--{CURRENT}--NEW.sql \
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
        let path = format!("{EXTENSION_DIR}/pg_usage_analytics--{version}.sql");
        assert!(
            std::path::Path::new(&path).exists(),
            "make install did not install {path}"
        );
    }
}

#[test]
fn upgrading_from_every_released_version_loses_nothing() {
    let c = cluster();
    for (version, _) in released().values() {
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
                                  (SELECT count(*) FROM usage_analytics.model_pricing),
                                  (SELECT count(*) FROM usage_analytics.admin_audit_log),
                                  (SELECT sum(requests) FROM usage_analytics.metrics_usage_counters()),
                                  usage_analytics.get_usage_summary()::text";
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
