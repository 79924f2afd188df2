-- pgbench (budgets): authorize_request then track_detailed_usage of the same
-- request, each its own transaction as the README's flow has it (the model
-- is called in between), the recorded row releasing the reservation
-- (request_metadata.reservation_id). Same rows as budget_track.sql.
\set it random(50, 6000)
\set ot random(20, 1500)
\set rt random(120, 20000)
SELECT usage_analytics.authorize_request(
    ('a0000000-0000-4000-8000-' || lpad(:client_id::text, 12, '0'))::uuid,
    'agent-01', 'openai', 'gpt-4o-2024-08-06', :it, :ot) ->> 'reservation_id' AS rid \gset
SELECT usage_analytics.track_detailed_usage(
    ('a0000000-0000-4000-8000-' || lpad(:client_id::text, 12, '0'))::uuid,
    'agent-01', 'Bench Agent', 'langchain', 'openai', 'chat',
    :it, :ot, :rt, true, NULL, jsonb_build_object('action', 'summarize', 'reservation_id', :rid::text),
    'gpt-4o-2024-08-06');
