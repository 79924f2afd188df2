-- pgbench: one request recorded through the extension's function.
-- Same row values as insert.sql (users/agents come from pgbench -D).
\set u random(0, :users - 1)
\set a random(0, :agents - 1)
\set it random(50, 6000)
\set ot random(20, 1500)
\set rt random(120, 20000)
SELECT usage_analytics.track_detailed_usage(
    ('a0000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid,
    'agent-' || lpad(:a::text, 2, '0'), 'Bench Agent', 'langchain', 'openai', 'chat',
    :it, :ot, :rt, true, NULL, '{"action": "summarize"}', 'gpt-4o-2024-08-06');
