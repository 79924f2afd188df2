-- The baseline table for the write benchmarks: identical to
-- usage_analytics.agent_usage_detailed (columns, defaults, checks, generated
-- column, indexes, monthly partitions and default partition) but with no
-- triggers, holding the same rows. Run once after loading.
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.usage_clone;
CREATE TABLE bench.usage_clone (LIKE usage_analytics.agent_usage_detailed INCLUDING ALL)
    PARTITION BY RANGE ("timestamp");

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass
         ORDER BY c.relname
    LOOP
        EXECUTE format('CREATE TABLE bench.%I PARTITION OF bench.usage_clone %s',
                       replace(p.relname, 'agent_usage_detailed', 'usage_clone'), p.bound);
    END LOOP;
END;
$$;

INSERT INTO bench.usage_clone
    (id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
     cost_usd, response_time_ms, success, error_message, request_metadata, "timestamp", model, requested_model)
SELECT id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
       cost_usd, response_time_ms, success, error_message, request_metadata, "timestamp", model, requested_model
  FROM usage_analytics.agent_usage_detailed;
