//! The exporter at scale (issue: hostile roles and scale): many distinct
//! users within 30 days and a flood of distinct unknown model names must not
//! take monitoring down. `make test` runs it reduced; set
//! PUA_SCALE_USERS=1000000 PUA_SCALE_NAMES=100000 for the full size.

use integration_tests::{cluster, scalar, Exporter};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn many_users_and_names_keep_the_exporter_up_and_bounded() {
    let users = env_usize("PUA_SCALE_USERS", 100_000);
    let names = env_usize("PUA_SCALE_NAMES", 20_000);
    let c = cluster();
    let db = c.fresh_db("exporter_scale");
    let role = format!("{db}_exporter");
    let mut owner = c.connect(&db);
    owner
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT usage_analytics_monitor TO {role};
             ALTER DATABASE {db} SET usage_analytics.exporter_max_series = 1000;"
        ))
        .unwrap();
    let mut owner = c.connect(&db);
    // One row per user, spread over the last 29 days; every tenth row names
    // a distinct unknown model (a flood of free-text label values).
    for chunk in (0..users).step_by(50_000) {
        let end = (chunk + 50_000).min(users);
        owner
            .batch_execute(&format!(
                "INSERT INTO usage_analytics.agent_usage_detailed
                     (user_id, agent_id, provider, model, input_tokens, output_tokens, \"timestamp\")
                 SELECT ('a1000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'scale-agent', 'openai',
                        CASE WHEN g % 10 = 0 THEN 'unknown-model-' || (g / 10) % {names} ELSE 'gpt-4o-mini' END,
                        10, 5, now() - (g % 29) * interval '1 day' - interval '1 minute'
                   FROM generate_series({chunk}, {end} - 1) AS g"
            ))
            .unwrap();
    }
    let exporter = Exporter::start(&c.url(&db, &role), &["--gauge-refresh-interval", "0s"]);
    let m = exporter.metrics();
    assert_eq!(
        m.value("ai_usage_exporter_up"),
        Some(1.0),
        "the scrape must succeed"
    );
    // Active users: a sketch, exact to 384 and within a few percent above.
    let active = m.sum("ai_usage_active_users", &[("window", "30d")]);
    let error = (active - users as f64).abs() / users as f64;
    assert!(
        error < 0.05,
        "30-day active users {active} for {users} users ({:.2}% off)",
        error * 100.0
    );
    // Series stay bounded by the cap, whatever the flood of names.
    let series = m
        .samples
        .iter()
        .filter(|(name, _, _)| name == "ai_usage_requests_total")
        .count();
    assert!(
        series <= 1000 + 8,
        "{series} request series with exporter_max_series = 1000"
    );
    // And the counters still add up to every row.
    let total = scalar(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    )
    .unwrap();
    assert_eq!(
        m.sum("ai_usage_requests_total", &[]),
        total.parse::<f64>().unwrap()
    );
    assert_eq!(
        m.value("ai_usage_exporter_cache_stale"),
        Some(0.0),
        "the cached gauges refreshed"
    );
}
