-- Daily rollups (UTC calendar days) and their pg_cron schedule.

-- (Re)builds agent_performance_metrics and system_analytics for one day in
-- one transaction and returns the rows written. Idempotent: a re-run
-- replaces the day with the same numbers, or with late rows included.
-- Reads the usage table without blocking writers. Concurrent runs for the
-- same day queue on the day's rollup_state row, which only the extension's
-- functions can lock (no other role can stall the job by holding it).
CREATE FUNCTION usage_analytics.rollup_daily(day date DEFAULT ((now() AT TIME ZONE 'UTC')::date - 1))
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
-- Room to hash the day's groups (20,000 for a 1M-row day, which the
-- planner, without statistics, takes for 100,000 of about 1.5 KB each with
-- their sums' states) instead of sorting the day's rows: hash tables of at
-- most 128 MB in the leader and in each parallel worker (a cap, not an
-- allocation; popular_actions' counts, outside that cap, add up to half as
-- much again: src/top_actions.rs). With less, the planner sorts, about 25%
-- slower.
SET work_mem = '64MB'
SET hash_mem_multiplier = 2
AS $$
DECLARE
    target  date := rollup_daily.day;
    lo      timestamptz;
    hi      timestamptz;
    source  bigint;
    changed bigint;
    written integer;
    last_seen timestamptz;
    groups  text;
    -- The rollup rows' ids are time-ordered, in the UUIDv7 layout (48 bits of
    -- Unix milliseconds, version 7, 12 random bits, variant, 62 random
    -- bits): a day's rows then go to the right-hand end of the primary key's
    -- index (in random order there) instead of each to a random page of it,
    -- a quarter of the insert. PostgreSQL 15 has no uuidv7(). The random
    -- bits come from random(): ids need to be unique, not unpredictable, and
    -- gen_random_uuid() (OpenSSL's generator) took twice as long per row.
    id_high bigint := (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16) | x'7000'::integer;
BEGIN
    PERFORM usage_analytics._require_admin('rollup_daily');
    IF target IS NULL THEN
        RAISE EXCEPTION 'rollup_daily: day must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(target) THEN
        RAISE EXCEPTION 'rollup_daily: day must be a finite date, got %', target
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A day whose partition retention removed keeps the rollup it had: its
    -- rows are gone, and rebuilding would write an empty day.
    IF EXISTS (SELECT 1 FROM usage_analytics.retention_policy p
                WHERE target < (p.removed_before AT TIME ZONE 'UTC')::date) THEN
        RETURN 0;
    END IF;
    lo := target::timestamp AT TIME ZONE 'UTC';
    hi := (target + 1)::timestamp AT TIME ZONE 'UTC';
    INSERT INTO usage_analytics.rollup_state (day, rolled_at, source_requests, rows_written)
    VALUES (target, '-infinity', -1, 0)
    ON CONFLICT ON CONSTRAINT rollup_state_pkey DO NOTHING;
    PERFORM 1 FROM usage_analytics.rollup_state s WHERE s.day = target FOR UPDATE;

    -- Counted before the aggregate: a row committed in between makes the day
    -- look stale (read from raw rows), never fresh while incomplete.
    SELECT coalesce(sum(d.requests), 0), coalesce(sum(d.changes), 0) INTO source, changed
      FROM usage_analytics.usage_daily_user d WHERE d.day = target;

    DELETE FROM usage_analytics.agent_performance_metrics WHERE date = target;
    -- One scan of the day, grouped by the rollup's key, with popular_actions
    -- counted by the aggregate _top_actions on the way (see
    -- src/top_actions.rs), into a temporary table: CREATE TABLE AS may use
    -- parallel workers (an INSERT … SELECT may not), and this aggregate is
    -- most of the rollup. Later days of the same transaction (rollup_range)
    -- reuse the table, so a range takes no new locks per day.
    groups := format($q$
        SELECT u.user_id, u.agent_id, u.framework, u.provider,
               max(u.agent_name) AS agent_name,
               count(*) AS requests, count(*) FILTER (WHERE u.success) AS successful,
               coalesce(sum(u.input_tokens), 0) AS input_tokens, coalesce(sum(u.output_tokens), 0) AS output_tokens,
               coalesce(sum(u.cost_usd), 0) AS cost, count(*) FILTER (WHERE u.cost_usd IS NULL) AS unpriced,
               coalesce(sum(u.response_time_ms), 0) AS rt_sum, count(u.response_time_ms) AS rt_count,
               coalesce(sum(u.cache_read_tokens), 0) AS cache_read,
               coalesce(sum(u.cache_write_tokens::bigint + u.cache_write_1h_tokens), 0) AS cache_write,
               coalesce(sum(u.reasoning_tokens), 0) AS reasoning,
               coalesce(sum(u.cache_savings_usd), 0) AS cache_savings,
               coalesce(sum(u.input_tokens::bigint + u.output_tokens) FILTER (WHERE u.cost_usd IS NOT NULL), 0)
                   AS priced_tokens,
               usage_analytics._top_actions(coalesce(u.request_metadata->>'action', u.message_type, 'unknown'))
                   AS popular_actions
          FROM usage_analytics.agent_usage_detailed u
         WHERE u."timestamp" >= %L AND u."timestamp" < %L
         GROUP BY 1, 2, 3, 4
    $q$, lo, hi);
    IF to_regclass('pg_temp.rollup_groups') IS NULL THEN
        EXECUTE 'CREATE TEMP TABLE rollup_groups ON COMMIT DROP AS ' || groups;
    ELSE
        TRUNCATE pg_temp.rollup_groups;
        EXECUTE 'INSERT INTO pg_temp.rollup_groups ' || groups;
    END IF;
    INSERT INTO usage_analytics.agent_performance_metrics
        (id, user_id, agent_id, agent_name, framework, provider, date, total_requests, successful_requests,
         failed_requests, total_input_tokens, total_output_tokens, total_tokens, total_cost_usd,
         avg_response_time_ms, popular_actions, unpriced_requests, response_time_sum_ms, response_time_count,
         total_cache_read_tokens, total_cache_write_tokens, total_reasoning_tokens, cache_savings_usd, priced_tokens)
    SELECT encode(int8send(id_high | floor(random() * 4096)::bigint)
                  || int8send((-9223372036854775808)::bigint | (floor(random() * 2147483648)::bigint << 31)
                              | floor(random() * 2147483648)::bigint), 'hex')::uuid,
           f.user_id, f.agent_id, f.agent_name, f.framework, f.provider, target,
           f.requests, f.successful, f.requests - f.successful,
           f.input_tokens, f.output_tokens, f.input_tokens + f.output_tokens, f.cost,
           CASE WHEN f.rt_count > 0 THEN round(f.rt_sum::numeric / f.rt_count) END,
           f.popular_actions, f.unpriced, f.rt_sum, f.rt_count,
           f.cache_read, f.cache_write, f.reasoning, f.cache_savings, f.priced_tokens
      FROM pg_temp.rollup_groups f;
    GET DIAGNOSTICS written = ROW_COUNT;
    -- Read after the aggregate, so no row the rollup covered lies after it.
    SELECT max(u."timestamp") INTO last_seen FROM usage_analytics.agent_usage_detailed u
     WHERE u."timestamp" >= lo AND u."timestamp" < hi;

    -- The system row is derived from the day's groups, the per-agent rows
    -- just written (read from the temporary table: no index scan of them).
    DELETE FROM usage_analytics.system_analytics WHERE date = target;
    WITH RECURSIVE m AS (
        SELECT user_id, agent_id, agent_name, framework, provider, requests AS total_requests,
               successful AS successful_requests, input_tokens AS total_input_tokens,
               output_tokens AS total_output_tokens, input_tokens + output_tokens AS total_tokens,
               cost AS total_cost_usd, unpriced AS unpriced_requests, rt_sum AS response_time_sum_ms,
               rt_count AS response_time_count
          FROM pg_temp.rollup_groups
    ), per_user AS (
        -- Each grouping read once: active users and the top users come from
        -- one, the provider's cost and usage from the other.
        SELECT user_id, sum(total_requests) AS requests, sum(total_tokens) AS tokens, sum(total_cost_usd) AS cost
          FROM m GROUP BY 1
    ), per_provider AS (
        SELECT coalesce(provider, 'unknown') AS k, sum(total_requests) AS r, sum(total_cost_usd) AS c,
               sum(total_tokens) AS tk
          FROM m GROUP BY 1
    ), t AS (
        SELECT coalesce(sum(total_requests), 0) AS requests, coalesce(sum(successful_requests), 0) AS successful,
               coalesce(sum(total_input_tokens), 0) AS input_tokens,
               coalesce(sum(total_output_tokens), 0) AS output_tokens,
               coalesce(sum(total_cost_usd), 0) AS cost, coalesce(sum(unpriced_requests), 0) AS unpriced,
               sum(response_time_sum_ms) AS rt_sum, coalesce(sum(response_time_count), 0) AS rt_count,
               (SELECT count(user_id) FROM per_user) AS active_users
          FROM m
    ), first_days AS (
        -- Each user's first day, by a loose index scan over (user_id, day):
        -- one probe per user gives the next user and that user's first day,
        -- instead of reading all history. Only that index gives user_id
        -- order, so the plan does not hang on statistics: with a condition
        -- on day in the probe, a day older than the last ANALYZE looked
        -- empty and the planner walked the (day, …) key instead, reading
        -- every earlier day per user (46 s at 5,000 users for a day loaded
        -- after the ANALYZE).
        (SELECT d.user_id, d.day FROM usage_analytics.usage_daily_user d ORDER BY d.user_id, d.day LIMIT 1)
        UNION ALL
        SELECT n.user_id, n.day
          FROM first_days f
         CROSS JOIN LATERAL (SELECT d.user_id, d.day FROM usage_analytics.usage_daily_user d
                              WHERE d.user_id > f.user_id ORDER BY d.user_id, d.day LIMIT 1) n
    ), users AS (
        -- Users with usage up to that day, and those whose first day it is.
        SELECT count(*) FILTER (WHERE f.day <= target) AS total_users,
               count(*) FILTER (WHERE f.day = target) AS new_users
          FROM first_days f
    )
    INSERT INTO usage_analytics.system_analytics
        (date, total_users, active_users, new_users, total_requests, successful_requests, failed_requests,
         total_input_tokens, total_output_tokens, total_tokens, total_cost_usd, cost_by_provider,
         avg_response_time_ms, success_rate, popular_agents, framework_usage, provider_usage,
         top_users_by_usage, unpriced_requests)
    SELECT target, users.total_users, t.active_users, users.new_users,
           t.requests, t.successful, t.requests - t.successful,
           t.input_tokens, t.output_tokens, t.input_tokens + t.output_tokens, t.cost,
           (SELECT coalesce(jsonb_object_agg(k, c ORDER BY k), '{}') FROM per_provider),
           CASE WHEN t.rt_count > 0 THEN round(t.rt_sum::numeric / t.rt_count) END,
           CASE WHEN t.requests > 0 THEN round(100.0 * t.successful / t.requests, 2) END,
           (SELECT coalesce(jsonb_agg(jsonb_build_object('agent_id', agent_id, 'agent_name', agent_name,
                                                         'requests', requests, 'cost_usd', cost)
                                      ORDER BY requests DESC, agent_id), '[]')
              FROM (SELECT agent_id, max(agent_name) agent_name, sum(total_requests) requests,
                           sum(total_cost_usd) cost
                      FROM m GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 10) x),
           (SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('requests', r, 'cost_usd', c, 'tokens', tk)
                                             ORDER BY k), '{}')
              FROM (SELECT coalesce(framework, 'unknown') k, sum(total_requests) r, sum(total_cost_usd) c,
                           sum(total_tokens) tk
                      FROM m GROUP BY 1) x),
           (SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('requests', r, 'cost_usd', c, 'tokens', tk)
                                             ORDER BY k), '{}')
              FROM per_provider),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'requests', requests,
                                                         'total_tokens', tokens, 'cost_usd', cost)
                                      ORDER BY cost DESC, user_id), '[]')
              FROM (SELECT * FROM per_user ORDER BY cost DESC, user_id LIMIT 10) x),
           t.unpriced
      FROM t, users;

    UPDATE usage_analytics.rollup_state s
       SET rolled_at = clock_timestamp(), source_requests = source, rows_written = written + 1,
           max_timestamp = last_seen, source_changes = changed
     WHERE s.day = target;
    RETURN written + 1;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.rollup_daily FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.rollup_daily TO usage_analytics_admin;

-- rollup_daily for every day from from_day to to_day inclusive.
CREATE FUNCTION usage_analytics.rollup_range(from_day date, to_day date)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    total integer := 0;
BEGIN
    IF from_day IS NULL OR to_day IS NULL THEN
        RAISE EXCEPTION 'rollup_range: from_day and to_day must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_day < from_day THEN
        RAISE EXCEPTION 'rollup_range: to_day (%) is before from_day (%)', to_day, from_day
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_day - from_day > 3660 THEN
        RAISE EXCEPTION 'rollup_range: at most 3661 days per call, got %', to_day - from_day + 1
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. to_day - from_day LOOP
        total := total + usage_analytics.rollup_daily(from_day + i);
    END LOOP;
    RETURN total;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.rollup_range FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.rollup_range TO usage_analytics_admin;

-- What the scheduled job runs (CALL usage_analytics.run_maintenance()):
-- partitions ahead, yesterday's and today's rollups, then folding the
-- bookkeeping of exited backends and expired budget reservations, and
-- the retention policy (whole months, after they are rolled up) with the
-- searched texts and the collector's span claims of removed months. Each step commits on its own, so the
-- short locks of partition creation are never held through a rollup, and a
-- failing step does not undo the others. A procedure (transaction control),
-- so it runs as its caller; every step it calls checks its own rights.
CREATE PROCEDURE usage_analytics.run_maintenance()
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM usage_analytics.ensure_partitions();
    COMMIT;
    PERFORM usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date - 1);
    COMMIT;
    PERFORM usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date);
    COMMIT;
    PERFORM usage_analytics._compact_bookkeeping();
    COMMIT;
    PERFORM usage_analytics.budget_maintenance();
    COMMIT;
    IF EXISTS (SELECT 1 FROM usage_analytics.apply_retention()) THEN
        COMMIT;
        PERFORM usage_analytics.forget_unused_search_texts();
    END IF;
    COMMIT;
    PERFORM usage_analytics._forget_removed_span_claims();
    COMMIT;
END;
$$;
REVOKE ALL ON PROCEDURE usage_analytics.run_maintenance FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE usage_analytics.run_maintenance TO usage_analytics_admin;

-- The same steps in one transaction, for schedulers that can only run a
-- SELECT. Prefer CALL usage_analytics.run_maintenance(): here a partition
-- created in this run keeps its locks until the rollups finish.
CREATE FUNCTION usage_analytics.run_scheduled_maintenance()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    written integer;
BEGIN
    PERFORM usage_analytics.ensure_partitions();
    written := usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date);
    PERFORM usage_analytics._compact_bookkeeping();
    PERFORM usage_analytics.budget_maintenance();
    IF EXISTS (SELECT 1 FROM usage_analytics.apply_retention()) THEN
        PERFORM usage_analytics.forget_unused_search_texts();
    END IF;
    PERFORM usage_analytics._forget_removed_span_claims();
    RETURN written;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.run_scheduled_maintenance FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.run_scheduled_maintenance TO usage_analytics_admin;

-- Registers (or re-registers, by name) the pg_cron job running
-- CALL usage_analytics.run_maintenance(); returns the job id.
CREATE FUNCTION usage_analytics.schedule_rollups(schedule text DEFAULT '*/15 * * * *')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM usage_analytics._require_admin('schedule_rollups');
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'schedule_rollups: pg_cron is not installed in database %', current_database()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name = '''
                         || current_database() || ''', restart, then CREATE EXTENSION pg_cron. '
                         || 'Or schedule CALL usage_analytics.run_maintenance() with any scheduler.';
    END IF;
    IF schedule IS NULL OR btrim(schedule) = '' THEN
        RAISE EXCEPTION 'schedule_rollups: schedule must be a cron expression such as ''*/15 * * * *'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
        INTO job
        USING 'usage_analytics_rollups', schedule, 'CALL usage_analytics.run_maintenance()';
    PERFORM usage_analytics._audit('schedule_rollups',
            'usage_analytics_rollups', jsonb_build_object('schedule', schedule, 'job_id', job));
    RETURN job;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.schedule_rollups FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.schedule_rollups TO usage_analytics_admin;
