-- The baseline table for the write benchmarks: usage_analytics.agent_usage_detailed
-- without its machinery, holding the same rows. Same columns, defaults,
-- checks, generated column, monthly partitions and default partition, and
-- each partition has the keys and b-tree indexes the extension's partition
-- has (they live on the partitions, not on the parent, so each clone
-- partition copies its own). What the clone lacks is everything 0.2 adds to
-- a write: the triggers (pricing, counters, budgets, the search texts), and
-- its search index (agent, text key, time) is the agent index it replaced,
-- (agent, time) as in 0.1.0, so the INSERT and COPY ratios include the
-- search index's cost too.
-- Run once after loading.
CREATE SCHEMA IF NOT EXISTS bench;

-- On one table: the search index dropped, the agent index of 0.1.0 in its
-- place (also the search-index INSERT benchmark's baseline).
CREATE OR REPLACE FUNCTION bench.agent_index_instead_of_search_index(rel regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN SELECT i.indexrelid::regclass FROM pg_index i
                WHERE i.indrelid = rel AND pg_get_indexdef(i.indexrelid) LIKE '%_search_key(%'
    LOOP
        EXECUTE format('DROP INDEX %s', idx);
    END LOOP;
    EXECUTE format('CREATE INDEX ON %s (agent_id, "timestamp")', rel);
END;
$$;
DROP TABLE IF EXISTS bench.usage_clone;
CREATE TABLE bench.usage_clone (LIKE usage_analytics.agent_usage_detailed INCLUDING ALL)
    PARTITION BY RANGE ("timestamp");

DO $$
DECLARE
    p record;
    clone text;
BEGIN
    FOR p IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass
         ORDER BY c.relname
    LOOP
        clone := replace(p.relname, 'agent_usage_detailed', 'usage_clone');
        EXECUTE format('CREATE TABLE bench.%I (LIKE usage_analytics.%I INCLUDING ALL)', clone, p.relname);
        PERFORM bench.agent_index_instead_of_search_index(format('bench.%I', clone)::regclass);
        EXECUTE format('ALTER TABLE bench.usage_clone ATTACH PARTITION bench.%I %s', clone, p.bound);
    END LOOP;
END;
$$;

INSERT INTO bench.usage_clone
    (id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
     cost_usd, response_time_ms, success, error_message, request_metadata, "timestamp", model, requested_model)
SELECT id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
       cost_usd, response_time_ms, success, error_message, request_metadata, "timestamp", model, requested_model
  FROM usage_analytics.agent_usage_detailed;
