-- pgbench: the same row as track.sql, as a plain INSERT into the extension's
-- table (priced by its trigger, counted by its statement trigger).
\set u random(0, :users - 1)
\set a random(0, :agents - 1)
\set it random(50, 6000)
\set ot random(20, 1500)
\set rt random(120, 20000)
INSERT INTO usage_analytics.agent_usage_detailed
    (user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
     response_time_ms, success, error_message, request_metadata, model)
VALUES (('a0000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid,
        'agent-' || lpad(:a::text, 2, '0'), 'Bench Agent', 'langchain', 'openai', 'chat',
        :it, :ot, :rt, true, NULL, '{"action": "summarize"}', 'gpt-4o-2024-08-06');
