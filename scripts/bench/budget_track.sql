-- pgbench (budgets): track_detailed_usage alone, each client recording as its
-- own user (a0000000-…-<client_id>), the baseline of budget_authorize_track.sql.
\set it random(50, 6000)
\set ot random(20, 1500)
\set rt random(120, 20000)
SELECT usage_analytics.track_detailed_usage(
    ('a0000000-0000-4000-8000-' || lpad(:client_id::text, 12, '0'))::uuid,
    'agent-01', 'Bench Agent', 'langchain', 'openai', 'chat',
    :it, :ot, :rt, true, NULL, '{"action": "summarize"}', 'gpt-4o-2024-08-06');
