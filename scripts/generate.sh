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
     cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, service_tier,
     response_time_ms, success, error_message, request_metadata, model, "timestamp")
SELECT u.user_id,
       'agent-' || lpad(a.agent::text, 2, '0'),
       (ARRAY['Research', 'Writer', 'Coder', 'Support', 'Analyst', 'Planner', 'Navigator', 'Quartermaster'])
           [1 + a.agent % 8] || ' ' || a.agent,
       (ARRAY['langchain', 'autogen', 'perplexity', 'hybrid'])[1 + a.agent % 4],
       (ARRAY['openai', 'anthropic', 'openai', 'google', 'anthropic', 'openai', 'mistral', 'deepseek',
              'google', 'xai', 'perplexity', 'openai'])[a.slot],
       (ARRAY['chat', 'chat', 'chat', 'preset_action', 'tool_execution'])[1 + (r.r3 * 5)::int % 5],
       t.i,
       t.o,
       -- Prompt caching: reads on about 45% of the requests of models with a
       -- cache; Anthropic's explicit cache writes (5-minute, some 1-hour) on
       -- others and next to part of the reads.
       CASE WHEN m.cache > 0 AND r.r6 < 0.45 THEN t.cached ELSE 0 END,
       CASE WHEN m.cache < 2 THEN 0
            WHEN r.r6 < 0.45 THEN ((t.i - t.cached) * 0.5 * r.r7)::int
            WHEN r.r6 < 0.62 THEN t.cached ELSE 0 END,
       CASE WHEN m.cache = 2 AND r.r6 >= 0.62 AND r.r6 < 0.67 THEN t.cached ELSE 0 END,
       -- Reasoning models think before they answer: part of the output.
       CASE WHEN r.r8 < m.reasoning THEN (t.o * (0.15 + 0.75 * r.r8 / m.reasoning))::int ELSE 0 END,
       CASE WHEN m.batch THEN 'batch' ELSE 'standard' END,
       (120 + r.r2 * r.r2 * 20000 + CASE WHEN a.slot = 11 THEN 800 ELSE 0 END)::int,
       r.r4 >= 0.05,
       CASE WHEN r.r4 < 0.05 THEN (ARRAY['rate limit exceeded', 'upstream timeout', 'context length exceeded',
                                          'invalid tool call'])[1 + (r.r4 * 80)::int % 4] END,
       jsonb_build_object('action', (ARRAY['summarize', 'search', 'draft', 'review', 'plan', 'translate'])
                                      [1 + (r.r3 * 6)::int % 6], 'session', (r.r1 * 1000)::int),
       m.model,
       ${last_day} - make_interval(days => ${days} - 1)
         + ((g - 1)::float8 / ${rows}::float8) * make_interval(days => ${days})
  FROM generate_series(${done_rows} + 1, ${done_rows} + ${n}) AS g
 -- "WHERE g IS NOT NULL" ties the subquery to each row; without it PostgreSQL
 -- evaluates random() once per statement and every row is the same request.
 CROSS JOIN LATERAL (SELECT random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
                            random() AS r6, random() AS r7, random() AS r8, random() AS r9
                      WHERE g IS NOT NULL) r
 -- A few heavy users, a long tail (skewed like real usage).
 CROSS JOIN LATERAL (SELECT ('a0000000-0000-4000-8000-' || lpad(((r.r5 * r.r5 * ${users})::int % ${users})::text, 12, '0'))::uuid
                            AS user_id, (r.r5 * r.r5 * ${users})::int % ${users} AS user_no) u
 -- Each user works mostly with three agents; each agent with one provider
 -- (slot: its place in the provider array above) and several of its models.
 CROSS JOIN LATERAL (SELECT agent, 1 + agent % 12 AS slot
                       FROM (SELECT (u.user_no * 7 + (r.r3 * 3)::int) % ${agents} AS agent) x) a
 -- The models of the provider: its range in the arrays below (openai 1-8,
 -- anthropic 9-13, google 14-17, mistral 18-22, deepseek 23-25, xai 26-28,
 -- perplexity 29-32), ids from the shipped catalog, a few older ones still in use.
 CROSS JOIN LATERAL (SELECT (ARRAY[0, 8, 0, 13, 8, 0, 17, 22, 13, 25, 28, 0])[a.slot] + 1
                            + (r.r2 * (ARRAY[8, 5, 8, 4, 5, 8, 5, 3, 4, 3, 4, 8])[a.slot])::int
                              % (ARRAY[8, 5, 8, 4, 5, 8, 5, 3, 4, 3, 4, 8])[a.slot] AS k) mk
 -- Per model: its id; the share of its requests with reasoning tokens; its
 -- cache (0 none, 1 reads, 2 reads and writes); whether it has a batch price
 -- (about 3% of those requests go through the batch API). About 1% of the
 -- requests name a model the catalog does not know: recorded, unpriced.
 CROSS JOIN LATERAL (
     SELECT CASE WHEN r.r9 >= 0.99 THEN (ARRAY['acme-router-v2', 'inhouse-summarizer-7b', 'edge-distill-3b'])
                                            [1 + (r.r9 * 3000)::int % 3]
                 ELSE (ARRAY['gpt-5', 'gpt-5-mini', 'gpt-5-mini', 'gpt-4.1', 'gpt-4.1-mini', 'o4-mini',
                             'gpt-4o-2024-08-06', 'gpt-4o-mini',
                             'claude-sonnet-4-5', 'claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-opus-4-5',
                             'claude-3-5-sonnet-20241022',
                             'gemini-2.5-flash', 'gemini-2.5-flash', 'gemini-2.5-pro', 'gemini-2.5-flash-lite',
                             'mistral-medium-latest', 'mistral-small-latest', 'mistral-large-latest',
                             'codestral-latest', 'magistral-medium-latest',
                             'deepseek-chat', 'deepseek-chat', 'deepseek-reasoner',
                             'grok-4.3', 'grok-code-fast-1', 'grok-4.20-reasoning',
                             'sonar', 'sonar-pro', 'sonar-reasoning-pro', 'llama-3.1-sonar-large-128k-online'])[mk.k]
            END AS model,
            (ARRAY[0.9, 0.9, 0.9, 0, 0, 1, 0, 0,  0.3, 0.3, 0, 0.5, 0,  0.8, 0.8, 1, 0,  0, 0, 0, 0, 1,
                   0, 0, 1,  0.7, 0.9, 1,  0, 0, 1, 0]::float8[])[mk.k] AS reasoning,
            (ARRAY[1, 1, 1, 1, 1, 1, 1, 1,  2, 2, 2, 2, 2,  1, 1, 1, 1,  1, 1, 1, 1, 1,  1, 1, 1,  1, 1, 1,
                   0, 0, 0, 0])[mk.k] AS cache,
            r.r9 < 0.03 AND (ARRAY[true, true, true, true, true, true, true, false,  true, true, true, true, false,
                                   true, true, true, false])[mk.k] IS TRUE AS batch) m
 CROSS JOIN LATERAL (SELECT i, o, (i * (0.25 + 0.7 * r.r7))::int AS cached
                       FROM (SELECT (50 + r.r1 * r.r1 * 6000)::int AS i, (20 + r.r2 * 1500)::int AS o) io) t;
SQL
    done_rows=$(( done_rows + n ))
    elapsed=$(( $(date +%s) - started ))
    printf '\rgenerate: %d / %d rows (%d%%), %ds' "$done_rows" "$rows" $(( done_rows * 100 / rows )) "$elapsed"
done
printf '\n'
"${psql[@]}" -c "ANALYZE usage_analytics.agent_usage_detailed" >/dev/null
