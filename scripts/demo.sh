#!/usr/bin/env bash
# make demo: a local cluster with the extension, 30 days of demo usage,
# rollups, the pg_cron job, the exporter and Prometheus. Runs in the
# foreground; Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/lib.sh
demo=$root/target/demo
port=${DEMO_PORT:-28815}
db=usage_demo
exporter_listen=${DEMO_EXPORTER_LISTEN:-127.0.0.1:9464}
prometheus_listen=${DEMO_PROMETHEUS_LISTEN:-127.0.0.1:9090}
rows=${DEMO_ROWS:-150000}

pids=()
stop_all() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_cluster "$demo"
    echo "demo: stopped (data kept in $demo; rm -rf it for a fresh start)"
}
trap stop_all INT TERM EXIT

start_cluster "$demo" "$port" "shared_preload_libraries = 'pg_cron'" "cron.database_name = '$db'"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=$db
psql_q=(psql -X -q -v ON_ERROR_STOP=1)

if [[ -z "$(psql -X -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
    psql -X -q -d postgres -c "CREATE DATABASE $db"
    "${psql_q[@]}" <<'SQL'
CREATE EXTENSION pg_cron;
CREATE EXTENSION pg_usage_analytics CASCADE;
-- The exporter's login: reads the aggregates and nothing else.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'usage_exporter') THEN
    CREATE ROLE usage_exporter LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_alice') THEN
    CREATE ROLE demo_alice LOGIN;
  END IF;
END $$;
GRANT usage_analytics_monitor TO usage_exporter;
GRANT usage_analytics_reader TO demo_alice;
INSERT INTO usage_analytics.user_role_map VALUES ('demo_alice', 'a0000000-0000-4000-8000-000000000000');
SQL
    echo "demo: loading $rows requests over 30 days (50 users, 12 agents)"
    CHUNK=25000 scripts/generate.sh "$rows" 30 50 12
    echo "demo: rolling up 30 days"
    "${psql_q[@]}" -c "SELECT usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 30, (now() AT TIME ZONE 'UTC')::date)" >/dev/null
    "${psql_q[@]}" -c "SELECT usage_analytics.schedule_rollups('*/5 * * * *')" >/dev/null
else
    echo "demo: database $db exists, reusing it"
fi

exporter_bin=$root/target/release/usage-analytics-exporter
[[ -x $exporter_bin ]] || exporter_bin=$root/target/debug/usage-analytics-exporter
start_exporter "$exporter_bin" "host=127.0.0.1 port=$port dbname=$db user=usage_exporter" \
    "$exporter_listen" "$demo/exporter.log" || true
pids+=("$EXPORTER_PID")

mkdir -p "$demo/prometheus"
sed "s/127.0.0.1:9464/$exporter_listen/" grafana/prometheus/prometheus.yml >"$demo/prometheus/prometheus.yml"
cp -r grafana/prometheus/rules "$demo/prometheus/"
prometheus --config.file="$demo/prometheus/prometheus.yml" --storage.tsdb.path="$demo/prometheus/data" \
    --web.listen-address="$prometheus_listen" >"$demo/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://$prometheus_listen/-/ready" 60 "$!" || echo "demo: Prometheus is not ready; see $demo/prometheus.log"
cat <<INFO

pg_usage_analytics demo is running (Ctrl-C stops everything).

  PostgreSQL   psql "host=127.0.0.1 port=$port dbname=$db user=postgres"
  as a reader  psql "host=127.0.0.1 port=$port dbname=$db user=demo_alice"
  exporter     http://$exporter_listen/metrics   (health: /health)
  Prometheus   http://$prometheus_listen          (rules: grafana/prometheus/rules)
  Grafana      mount $root/grafana/provisioning at /etc/grafana/provisioning and
               $root/grafana/dashboards at /var/lib/grafana/dashboards/usage-analytics

Try:
  SELECT jsonb_pretty(usage_analytics.get_usage_summary('{"start_date": "$(date -u -d '-7 days' +%F)"}'));
  SELECT * FROM usage_analytics.usage_trend('week');
  SELECT agent_id, model, cost_usd, response_time_ms FROM usage_analytics.get_usage_records('{"success": false}', 10);
  SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'demo-agent', 'Demo', 'langchain',
         'openai', 'chat', 1200, 300, 950, true, NULL, '{"action": "summarize"}', 'gpt-4o-2024-08-06');
  \\copy (SELECT * FROM usage_analytics.usage_export('{"provider": "anthropic"}')) TO 'anthropic.csv' WITH (FORMAT csv, HEADER)
  SELECT * FROM usage_analytics.self_test();
INFO

if [[ -n ${DEMO_EXIT_AFTER:-} ]]; then
    sleep "$DEMO_EXIT_AFTER"
    curl -fsS "http://$exporter_listen/metrics" | grep -c '^ai_usage_' | sed 's/^/demo: exporter series: /'
    exit 0
fi
wait -n "${pids[@]}" || true
echo "demo: a component exited; see $demo/*.log"
