#!/usr/bin/env bash
# Loads realistic AI usage into usage_analytics.agent_usage_detailed, fast:
# set-based INSERT ... SELECT in chunks (priced by the extension's trigger,
# counted by its counters), with a progress line.
#
#   scripts/generate.sh [ROWS] [DAYS] [USERS] [AGENTS]
#   defaults: 10000000 rows over 60 days, 5000 users, 40 agents
#   GENERATE_LAST_DAY=YYYY-MM-DD: the last UTC day loaded (default: today)
#
# Connection from the usual PG* environment variables (PGHOST, PGPORT,
# PGDATABASE, PGUSER). Deterministic for given arguments (setseed).
set -euo pipefail
rows=${1:-10000000} days=${2:-60} users=${3:-5000} agents=${4:-40}
chunk=${CHUNK:-200000}
if [[ -n ${GENERATE_LAST_DAY:-} ]]; then
    last_day="'${GENERATE_LAST_DAY}'::date::timestamp AT TIME ZONE 'UTC'"
else
    last_day="date_trunc('day', now())"
fi
psql=(psql -X -q -v ON_ERROR_STOP=1)

"${psql[@]}" -c "SELECT usage_analytics.ensure_partitions(3, $(( days / 28 + 2 )))" >/dev/null

done_rows=0
started=$(date +%s)
while (( done_rows < rows )); do
    n=$(( rows - done_rows < chunk ? rows - done_rows : chunk ))
    "${psql[@]}" <<SQL
SELECT setseed(${done_rows}::float8 / ${rows}::float8 / 2) AS seeded \gset
INSERT INTO usage_analytics.agent_usage_detailed
    (user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
     response_time_ms, success, error_message, request_metadata, model, "timestamp")
SELECT u.user_id,
       'agent-' || lpad(a.agent::text, 2, '0'),
       (ARRAY['Research', 'Writer', 'Coder', 'Support', 'Analyst', 'Planner', 'Navigator', 'Quartermaster'])
           [1 + a.agent % 8] || ' ' || a.agent,
       (ARRAY['langchain', 'autogen', 'perplexity', 'hybrid'])[1 + a.agent % 4],
       p.provider,
       (ARRAY['chat', 'chat', 'chat', 'preset_action', 'tool_execution'])[1 + (r.r3 * 5)::int % 5],
       (50 + r.r1 * r.r1 * 6000)::int,
       (20 + r.r2 * 1500)::int,
       (120 + r.r2 * r.r2 * 20000 + CASE WHEN p.provider = 'perplexity' THEN 800 ELSE 0 END)::int,
       r.r4 >= 0.05,
       CASE WHEN r.r4 < 0.05 THEN (ARRAY['rate limit exceeded', 'upstream timeout', 'context length exceeded',
                                          'invalid tool call'])[1 + (r.r4 * 80)::int % 4] END,
       jsonb_build_object('action', (ARRAY['summarize', 'search', 'draft', 'review', 'plan', 'translate'])
                                      [1 + (r.r3 * 6)::int % 6], 'session', (r.r1 * 1000)::int),
       p.models[1 + (r.r2 * array_length(p.models, 1))::int % array_length(p.models, 1)],
       ${last_day} - make_interval(days => ${days} - 1)
         + ((g - 1)::float8 / ${rows}::float8) * make_interval(days => ${days})
  FROM generate_series(${done_rows} + 1, ${done_rows} + ${n}) AS g
 -- "WHERE g IS NOT NULL" ties the subquery to each row; without it PostgreSQL
 -- evaluates random() once per statement and every row is the same request.
 CROSS JOIN LATERAL (SELECT random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5
                      WHERE g IS NOT NULL) r
 -- A few heavy users, a long tail (skewed like real usage).
 CROSS JOIN LATERAL (SELECT ('a0000000-0000-4000-8000-' || lpad(((r.r5 * r.r5 * ${users})::int % ${users})::text, 12, '0'))::uuid
                            AS user_id, (r.r5 * r.r5 * ${users})::int % ${users} AS user_no) u
 -- Each user works mostly with three agents.
 CROSS JOIN LATERAL (SELECT (u.user_no * 7 + (r.r3 * 3)::int) % ${agents} AS agent) a
 CROSS JOIN LATERAL (
     SELECT (ARRAY['openai', 'openai', 'anthropic', 'perplexity', 'google'])[1 + a.agent % 5] AS provider) pp
 CROSS JOIN LATERAL (
     SELECT pp.provider,
            CASE pp.provider
              WHEN 'openai' THEN ARRAY['gpt-4o-2024-08-06', 'gpt-4o-mini', 'gpt-4o-mini-2024-07-18', 'gpt-4-turbo', 'gpt-3.5-turbo-0125', NULL]
              WHEN 'anthropic' THEN ARRAY['claude-3-5-sonnet-20241022', 'claude-3-haiku-20240307', 'claude-3-opus-latest', NULL]
              WHEN 'perplexity' THEN ARRAY['llama-3.1-sonar-small-128k-online', 'llama-3.1-sonar-large-128k-online', 'llama-3.1-sonar-huge-128k-online']
              ELSE ARRAY['gemini-1.5-flash-002', 'gemini-1.5-pro-002', 'gemini-2.0-flash-exp']
            END AS models) p;
SQL
    done_rows=$(( done_rows + n ))
    elapsed=$(( $(date +%s) - started ))
    printf '\rgenerate: %d / %d rows (%d%%), %ds' "$done_rows" "$rows" $(( done_rows * 100 / rows )) "$elapsed"
done
printf '\n'
"${psql[@]}" -c "ANALYZE usage_analytics.agent_usage_detailed" >/dev/null
