-- pgbench (search index cost): the row of insert_clone.sql into
-- bench.search_trgm, a trigger-free copy of one partition WITH the trigram search index.
\set u random(0, :users - 1)
\set a random(0, :agents - 1)
\set it random(50, 6000)
\set ot random(20, 1500)
\set rt random(120, 20000)
INSERT INTO bench.search_trgm
    (user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
     response_time_ms, success, error_message, request_metadata, model, requested_model, cost_usd)
VALUES (('a0000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid,
        'agent-' || lpad(:a::text, 2, '0'), 'Bench Agent', 'langchain', 'openai', 'chat',
        :it, :ot, :rt, true, NULL, '{"action": "summarize"}', 'gpt-4o', 'gpt-4o-2024-08-06',
        (:it * 0.0025 + :ot * 0.01) * 0.001);
