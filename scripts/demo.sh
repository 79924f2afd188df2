#!/usr/bin/env bash
# make demo: a local cluster with the extension, 30 days of demo usage
# (current catalog models, cache and reasoning tokens, some batch requests, a
# few unknown models), rollups, the pg_cron job, a tour of the 0.2 features
# (budgets, authorize_request, forecast, recommendations, retention, the
# efficiency summary), the exporter, the OTel collector fed by a small span
# generator, and Prometheus. Runs in the foreground; Ctrl-C stops everything
# cleanly.
#
# Environment overrides:
#   DEMO_DIR                where the cluster and logs live (target/demo)
#   DEMO_PORT               PostgreSQL port, fixed when the cluster is created (28815)
#   DEMO_ROWS               demo requests loaded on first start (150000)
#   DEMO_EXPORTER_LISTEN    exporter address (127.0.0.1:9464)
#   DEMO_PROMETHEUS_LISTEN  Prometheus address (127.0.0.1:9090)
#   DEMO_COLLECTOR_LISTEN   collector address (127.0.0.1:4318)
#                           (for these three a free port is used when the port is taken)
#   DEMO_EXPORTER, DEMO_COLLECTOR  binaries (default target/release/…, else target/debug/…)
#   DEMO_SPAN_REQUESTS      agent requests sent as OTel spans (200; 0: none)
#   DEMO_SPAN_SECONDS       spread over this long (60)
#   DEMO_EXIT_AFTER         stop after this many seconds instead of waiting for Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/lib.sh
demo=${DEMO_DIR:-$root/target/demo}
port=${DEMO_PORT:-28815}
db=usage_demo
rows=${DEMO_ROWS:-150000}
span_requests=${DEMO_SPAN_REQUESTS:-200}
span_seconds=${DEMO_SPAN_SECONDS:-60}

pick_binary() { # NAME OVERRIDE
    if [[ -n $2 ]]; then echo "$2"; return; fi
    if [[ -x $root/target/release/$1 ]]; then echo "$root/target/release/$1"; else echo "$root/target/debug/$1"; fi
}
exporter_bin=$(pick_binary usage-analytics-exporter "${DEMO_EXPORTER:-}")
collector_bin=$(pick_binary usage-analytics-collector "${DEMO_COLLECTOR:-}")

pids=()      # long-running components: the demo ends when one exits
sender_pid=  # the span generator, which ends by itself
stop_all() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    # The span generator first, while the collector still takes what it flushes.
    if [[ -n $sender_pid ]]; then
        kill "$sender_pid" 2>/dev/null || true
        wait "$sender_pid" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_cluster "$demo"
    echo "demo: stopped (data kept in $demo; rm -rf it for a fresh start)"
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

start_cluster "$demo" "$port" "shared_preload_libraries = 'pg_cron'" "cron.database_name = '$db'"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=$db
psql_q=(psql -X -q -v ON_ERROR_STOP=1)
# A table-printing psql as ROLE (trust authentication on 127.0.0.1).
psql_as() { psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=terse -P footer=off -U "$1" "${@:2}"; }
step() { printf '\n== %s\n' "$*"; }
# A step of the tour: a failure is shown and the demo goes on.
tour() { "$@" || echo "demo: (this step failed, see above; the demo goes on)"; }

fresh=0
if [[ -z "$(psql -X -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
    psql -X -q -d postgres -c "CREATE DATABASE $db"
    "${psql_q[@]}" -c "SET client_min_messages = warning" -c "CREATE EXTENSION pg_cron" \
        -c "CREATE EXTENSION pg_usage_analytics CASCADE"
    fresh=1
else
    echo "demo: database $db exists, reusing it"
    "${psql_q[@]}" -c "SET client_min_messages = warning" -c "ALTER EXTENSION pg_usage_analytics UPDATE"
fi

# The demo's logins: the exporter reads the aggregates and nothing else; the
# collector and the application record usage; an admin; a reader.
"${psql_q[@]}" -o /dev/null <<'SQL'
DO $$
DECLARE
  login record;
BEGIN
  FOR login IN SELECT * FROM (VALUES ('usage_exporter', 'usage_analytics_monitor'),
                                     ('usage_collector', 'usage_analytics_writer'),
                                     ('demo_app', 'usage_analytics_writer'),
                                     ('demo_admin', NULL),
                                     ('demo_alice', 'usage_analytics_reader')) AS l(name, grp)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login.name) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', login.name);
    END IF;
    IF login.grp IS NOT NULL AND NOT pg_has_role(login.name, login.grp, 'MEMBER') THEN
      EXECUTE format('GRANT %I TO %I', login.grp, login.name);
    END IF;
  END LOOP;
END $$;
INSERT INTO usage_analytics.user_role_map VALUES ('demo_alice', 'a0000000-0000-4000-8000-000000000000')
    ON CONFLICT DO NOTHING;
-- The first admin of this database is made by a superuser (audited).
SELECT usage_analytics.grant_admin('demo_admin')
 WHERE NOT EXISTS (SELECT 1 FROM usage_analytics.admin_roles WHERE role_name = 'demo_admin');
SQL

if ((fresh)); then
    echo "demo: loading $rows requests over 30 days (50 users, 12 agents; gpt-5, claude-sonnet-4-5,"
    echo "      gemini-2.5, mistral, deepseek, grok, sonar …; cache reads/writes, reasoning, batch, unknown models)"
    CHUNK=25000 scripts/generate.sh "$rows" 30 50 12
    echo "demo: rolling up 30 days"
    "${psql_q[@]}" -c "SELECT usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 30, (now() AT TIME ZONE 'UTC')::date)" >/dev/null
    "${psql_q[@]}" -c "SELECT usage_analytics.schedule_rollups('*/5 * * * *')" >/dev/null
fi

# ---------------------------------------------------------------------------
# A tour of what 0.2 added, as the roles that would do it.

step "Efficiency, last 7 days (get_usage_summary as demo_admin): cache reads are billed at the"
echo "   cache-read price; cache_savings_usd is what they would have cost at the input price"
tour psql_as demo_admin -v start="$(date -u -d '-6 days' +%F)" <<'SQL'
SELECT (s->>'total_requests')::bigint AS requests, round((s->>'total_cost_usd')::numeric, 2) AS cost_usd,
       (s->>'unpriced_requests')::bigint AS unpriced, (s->>'cache_read_tokens')::bigint AS cache_read_tokens,
       (s->>'reasoning_tokens')::bigint AS reasoning_tokens, round((s->>'cache_savings_usd')::numeric, 2) AS cache_savings_usd,
       round((s->>'cost_per_request_usd')::numeric, 5) AS cost_per_request_usd,
       round((s->>'tokens_per_usd')::numeric) AS tokens_per_usd
  FROM usage_analytics.get_usage_summary(jsonb_build_object('start_date', :'start')) s;
SELECT service_tier, count(*) AS requests, round(sum(cost_usd), 2) AS cost_usd,
       sum(cache_write_tokens) AS cache_write_5m, sum(cache_write_1h_tokens) AS cache_write_1h,
       count(*) FILTER (WHERE cost_source IS NULL) AS unpriced
  FROM usage_analytics.agent_usage_detailed
 WHERE "timestamp" >= :'start'::date GROUP BY 1 ORDER BY 1;
SQL

step "Budgets (set_budget as demo_admin): the whole organisation per month (soft: alerts only),"
echo "   and agent-02 (Coder) per day in New York time (hard: authorize_request enforces it)"
tour psql_as demo_admin -At <<'SQL' >/dev/null
-- First with a placeholder limit, to size the demo limits from what is spent.
SELECT usage_analytics.set_budget('org-monthly', '{}', 'month', 1e9, 'soft', 'UTC');
SELECT usage_analytics.set_budget('coder-daily', '{"agent_id": "agent-02"}', 'day', 1e9, 'hard', 'America/New_York');
SELECT greatest(ceil(spent_usd * 1.25 / 100) * 100, 100) AS org_limit FROM usage_analytics.budget_status('org-monthly') \gset
SELECT ceil(spent_usd) + 1 AS coder_limit FROM usage_analytics.budget_status('coder-daily') \gset
SELECT usage_analytics.set_budget('org-monthly', '{}', 'month', :org_limit, 'soft', 'UTC');
SELECT usage_analytics.set_budget('coder-daily', '{"agent_id": "agent-02"}', 'day', :coder_limit, 'hard', 'America/New_York');
SQL
budget_table="SELECT name, period, period_start, limit_usd, round(spent_usd, 2) AS spent_usd,
       round(reserved_usd, 4) AS reserved_usd, round(remaining_usd, 2) AS remaining_usd,
       round(utilization * 100, 1) AS pct, enforcement
  FROM usage_analytics.budget_status() ORDER BY name"
tour psql_as demo_admin -c "$budget_table"

step "authorize_request (as demo_app, before calling the model): reserves the estimate against hard budgets"
# One session switching roles (SET ROLE, as the superuser) so the ids carry over.
tour psql_as postgres <<'SQL'
\set user '''a0000000-0000-4000-8000-000000000002'''
SET ROLE demo_app;
SELECT usage_analytics.authorize_request(:user, 'agent-02', 'openai', 'gpt-5', 6000, 1500) AS auth \gset
SELECT :'auth'::jsonb ->> 'allowed' AS allowed, :'auth'::jsonb ->> 'reason' AS reason,
       :'auth'::jsonb ->> 'estimated_cost_usd' AS estimated_cost_usd,
       :'auth'::jsonb ->> 'reservation_id' AS reservation_id;
SET ROLE demo_admin;
SELECT name, reserved_usd, round(remaining_usd, 4) AS remaining_usd FROM usage_analytics.budget_status('coder-daily');
\echo '   … the model answers; demo_app records the usage with the reservation id, which releases'
\echo '   the reservation (usage given in the OpenAI Responses shape: cached input, reasoning output):'
SET ROLE demo_app;
SELECT usage_analytics.track_detailed_usage(:user, 'agent-02', 'Coder 2', 'langchain', 'openai', 'chat',
           NULL, NULL, 2300, true, NULL,
           jsonb_build_object('action', 'review', 'reservation_id', :'auth'::jsonb ->> 'reservation_id'),
           'gpt-5', '{"input_tokens": 5200, "output_tokens": 1320,
                      "input_tokens_details": {"cached_tokens": 4096},
                      "output_tokens_details": {"reasoning_tokens": 896}}') AS rid \gset
SET ROLE demo_admin;
SELECT model, input_tokens, cache_read_tokens, output_tokens, reasoning_tokens, cost_usd, cache_savings_usd
  FROM usage_analytics.agent_usage_detailed WHERE id = :'rid';
SELECT name, reserved_usd, round(remaining_usd, 4) AS remaining_usd FROM usage_analytics.budget_status('coder-daily');
\echo '   a request too big for what is left today is refused, and nothing is reserved:'
SET ROLE demo_app;
SELECT a ->> 'allowed' AS allowed, a ->> 'reason' AS reason, a ->> 'estimated_cost_usd' AS estimated_cost_usd
  FROM usage_analytics.authorize_request(:user, 'agent-02', 'openai', 'gpt-5', 2000000, 20000) a;
SQL
tour psql_as demo_admin <<'SQL'
\echo '   thresholds crossed (alert_thresholds, default 50/80/100%) are in budget_events, once per period,'
\echo '   each also sent as NOTIFY usage_analytics_budget:'
SELECT budget_name, period_start, threshold, limit_usd, round(spent_usd, 2) AS spent_usd, created_at
  FROM usage_analytics.budget_events ORDER BY created_at DESC LIMIT 5;
SQL

step "forecast_cost(7): the next 7 days from the trend and the weekday pattern"
tour psql_as demo_admin -c "SELECT day, to_char(day, 'Dy') AS weekday, round(expected_cost_usd, 2) AS expected_usd,
       round(low_usd, 2) AS low_usd, round(high_usd, 2) AS high_usd FROM usage_analytics.forecast_cost(7)"

step "cost_recommendations(): cheaper models of the same provider at the same or a lower tier,"
echo "   priced exactly on the same requests"
tour psql_as demo_admin <<'SQL'
-- The largest saving per current model.
SELECT * FROM (
    SELECT DISTINCT ON (provider, current_model) agent_id, provider, current_model, suggested_model, requests,
           round(current_cost_usd, 2) AS current_usd, round(suggested_cost_usd, 2) AS suggested_usd,
           round(savings_usd, 2) AS savings_usd
      FROM usage_analytics.cost_recommendations()
     ORDER BY provider, current_model, savings_usd DESC) best
 ORDER BY savings_usd DESC LIMIT 8;
SQL

step "Retention (set_retention(12) as demo_admin): whole months older than 12 are dropped after"
echo "   their days are rolled up (summaries and trends keep them), in the scheduled maintenance"
tour psql_as demo_admin -c "SELECT usage_analytics.set_retention(12)" -o /dev/null
tour psql_as demo_admin -c "SELECT * FROM usage_analytics.retention_status()"

# ---------------------------------------------------------------------------
# The services.

exporter_listen=$(free_listen "${DEMO_EXPORTER_LISTEN:-127.0.0.1:9464}")
prometheus_listen=$(free_listen "${DEMO_PROMETHEUS_LISTEN:-127.0.0.1:9090}")
collector_listen=$(free_listen "${DEMO_COLLECTOR_LISTEN:-127.0.0.1:4318}")
echo
start_service "$exporter_bin" "host=127.0.0.1 port=$port dbname=$db user=usage_exporter" \
    "$exporter_listen" "$demo/exporter.log" || true
pids+=("$SERVICE_PID")
echo "demo: exporter on $exporter_listen ($exporter_bin)"
start_service "$collector_bin" "host=127.0.0.1 port=$port dbname=$db user=usage_collector" \
    "$collector_listen" "$demo/collector.log" || true
pids+=("$SERVICE_PID")
echo "demo: collector on $collector_listen, writing as usage_collector ($collector_bin)"

mkdir -p "$demo/prometheus"
{
    sed "s/127.0.0.1:9464/$exporter_listen/" grafana/prometheus/prometheus.yml
    cat <<YAML
  # The collector's own metrics (usage_collector_*), added by the demo.
  - job_name: usage-analytics-collector
    static_configs:
      - targets:
          - $collector_listen
YAML
} >"$demo/prometheus/prometheus.yml"
cp -r grafana/prometheus/rules "$demo/prometheus/"
prometheus --config.file="$demo/prometheus/prometheus.yml" --storage.tsdb.path="$demo/prometheus/data" \
    --web.listen-address="$prometheus_listen" >"$demo/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://$prometheus_listen/-/ready" 60 "$!" || echo "demo: Prometheus is not ready; see $demo/prometheus.log"
echo "demo: Prometheus on $prometheus_listen"

if ((span_requests > 0)); then
    if python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
        echo "demo: sending $span_requests agent requests as OpenTelemetry GenAI spans over ${span_seconds}s" \
             "(scripts/demo_spans.py, log $demo/spans.log)"
        python3 scripts/demo_spans.py "http://$collector_listen/v1/traces" --requests "$span_requests" \
            --seconds "$span_seconds" >"$demo/spans.log" 2>&1 &
        sender_pid=$!
    else
        echo "demo: the OpenTelemetry Python SDK is missing (make deps installs it); no spans sent"
    fi
fi

cat <<INFO

pg_usage_analytics demo is running (Ctrl-C stops everything).

  PostgreSQL   psql "host=127.0.0.1 port=$port dbname=$db user=postgres"
  as an admin  psql "host=127.0.0.1 port=$port dbname=$db user=demo_admin"
  as a reader  psql "host=127.0.0.1 port=$port dbname=$db user=demo_alice"
  exporter     http://$exporter_listen/metrics   (health: /health)
  collector    http://$collector_listen/v1/traces  (OTLP/HTTP; OTEL_EXPORTER_OTLP_ENDPOINT=http://$collector_listen)
  Prometheus   http://$prometheus_listen          (rules: grafana/prometheus/rules)
  Grafana      mount $root/grafana/provisioning at /etc/grafana/provisioning and
               $root/grafana/dashboards at /var/lib/grafana/dashboards/usage-analytics

Try:
  SELECT jsonb_pretty(usage_analytics.get_usage_summary('{"start_date": "$(date -u -d '-7 days' +%F)"}'));
  SELECT * FROM usage_analytics.usage_trend('week');
  SELECT * FROM usage_analytics.budget_status();
  SELECT * FROM usage_analytics.cost_recommendations();
  SELECT usage_analytics.calculate_cost('anthropic', 'claude-sonnet-4-5',
         '{"input_tokens": 800, "cache_read_input_tokens": 12000, "cache_creation_input_tokens": 2000, "output_tokens": 400}');
  SELECT agent_id, model, input_tokens, cache_read_tokens, reasoning_tokens, cost_usd
    FROM usage_analytics.get_usage_records('{"agent_id": "otel-research"}', 10);
  SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'demo-agent', 'Demo', 'langchain',
         'openai', 'chat', 1200, 300, 950, true, NULL, '{"action": "summarize"}', 'gpt-4.1-2025-04-14');
  \\copy (SELECT * FROM usage_analytics.usage_export('{"provider": "anthropic"}')) TO 'anthropic.csv' WITH (FORMAT csv, HEADER)
  SELECT * FROM usage_analytics.self_test();
INFO

report() {
    [[ -s $demo/spans.log ]] && sed 's/^/demo: /' "$demo/spans.log"
    psql -X -At -F ' ' -c "SELECT count(*), count(DISTINCT agent_id), coalesce(round(sum(cost_usd), 4), 0),
                                  count(*) FILTER (WHERE cost_usd IS NULL)
                             FROM usage_analytics.agent_usage_detailed WHERE request_metadata ? 'trace_id'" |
        while read -r n agents cost unpriced; do
            echo "demo: the collector recorded $n GenAI spans as usage rows ($agents agents, \$$cost, $unpriced unpriced)"
        done
    curl -fsS "http://$exporter_listen/metrics" | grep -c '^ai_usage_' | sed 's/^/demo: exporter series: /' || true
}

if [[ -n ${DEMO_EXIT_AFTER:-} ]]; then
    sleep "$DEMO_EXIT_AFTER"
    report
    exit 0
fi
wait -n "${pids[@]}" || true
echo "demo: a component exited; see $demo/*.log"
