//! Dashboards end to end (issue: Grafana bundle): a real Prometheus, with the
//! bundled config and rules, scrapes the real exporter over a loaded
//! database; every panel query (variables at All) must return data and every
//! rule expression must evaluate.

use integration_tests::{cluster, free_port, http_get, load_sample, Exporter};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let c = cluster();
    let db = c.fresh_db("grafana");
    let role = format!("{db}_exporter");
    let mut client = c.connect(&db);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT usage_analytics_monitor TO {role};"
        ))
        .unwrap();
    load_sample(&mut client, 3000, 3);
    client
        .batch_execute(
            "SELECT usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 2, (now() AT TIME ZONE 'UTC')::date);
             -- the budget panels need a budget
             SELECT usage_analytics.set_budget('grafana-e2e', '{}', 'month', 1000, 'soft');",
        )
        .unwrap();
    let exporter = Exporter::start(&c.url(&db, &role), &["--gauge-refresh-interval", "1s"]);

    // The bundled config, pointed at this exporter and scraping every second.
    let dir = repo.join(format!("target/it/prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(repo.join("grafana/prometheus/prometheus.yml"))
        .unwrap()
        .replace("127.0.0.1:9464", &exporter.addr)
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
        .replace(
            "rules/",
            &format!("{}/", repo.join("grafana/prometheus/rules").display()),
        );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus)"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_get(&prom_addr, "/-/ready", Duration::from_secs(1)).is_ok_and(|(s, _)| s == 200) {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    // New requests while Prometheus watches, so rates and increases are non-zero.
    for round in 0..8 {
        client
            .batch_execute(&format!(
                "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), a, NULL, f, p, 'chat', 100 * {round}, 50, 700 + 100 * {round}, {round} % 3 <> 0, NULL, '{{}}', m)
                   FROM (VALUES ('research-agent', 'langchain', 'openai', 'gpt-4o'),
                                ('coder', 'autogen', 'anthropic', 'claude-3-haiku'),
                                ('writer', 'hybrid', 'google', 'gemini-exp-1206')) AS v(a, f, p, m)"
            ))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    }
    let out = Command::new("python3")
        .arg(repo.join("grafana/e2e_queries.py"))
        .arg(format!("http://{prom_addr}"))
        .args([
            "--wait",
            "60",
            "--rate-interval",
            "1m",
            "--interval",
            "15s",
            "--range",
            "5m",
        ])
        .output()
        .expect("python3 grafana/e2e_queries.py");
    assert!(
        out.status.success(),
        "dashboard queries failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(exporter);
    let _ = std::fs::remove_dir_all(dir.join("data"));
}
