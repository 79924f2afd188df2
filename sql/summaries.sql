-- Summaries and trends: get_usage_summary and usage_trend, exact at every
-- moment, from the fastest exact sources (per-day tables, fresh rollups,
-- raw rows for the rest). Filters go through the one Rust parser (the
-- _filter_* accessors; raw rows through _usage_matches in records.sql), and
-- every function runs as its caller, so row-level security applies as to a
-- plain SELECT.

-- The same filters over the daily rollup (only the keys it keeps; callers
-- check _filter_rollup_compatible first).
CREATE FUNCTION usage_analytics._rollup_matches(r usage_analytics.agent_performance_metrics, filters jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT (usage_analytics._filter_uuid(filters, 'user_id') IS NULL
        OR r.user_id = usage_analytics._filter_uuid(filters, 'user_id'))
   AND (usage_analytics._filter_text(filters, 'agent_id') IS NULL
        OR r.agent_id = usage_analytics._filter_text(filters, 'agent_id'))
   AND (usage_analytics._filter_text(filters, 'framework') IS NULL
        OR r.framework = usage_analytics._filter_text(filters, 'framework'))
   AND (usage_analytics._filter_text(filters, 'provider') IS NULL
        OR r.provider = usage_analytics._filter_text(filters, 'provider'))
$$;
REVOKE ALL ON FUNCTION usage_analytics._rollup_matches FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._rollup_matches TO PUBLIC;

-- Days in [from_day, to_day] readable from the rollups, and up to when.
--  * fresh (covered_until = the day's end): the day's request count and
--    count of changed (updated or deleted) rows are what the rollup run saw;
--  * partial (covered_until = just after the run's max_timestamp): no row
--    changed since, and the count grew by exactly the rows after
--    max_timestamp (the usual state of today between scheduled runs), so
--    rollup + those raw rows = the day. Late rows inside the covered part
--    break the equation and the day is read raw.
-- Reads only bookkeeping and counts across all users, hence SECURITY
-- DEFINER; callers that do not see every user's rows (neither admins nor
-- auditors) get fresh days only, so it reveals no other user's timestamps
-- (a day reads as stale when anyone's rows changed since its rollup: the
-- one bit a reader can learn).
CREATE FUNCTION usage_analytics._rollup_coverage(from_day date, to_day date)
RETURNS TABLE (day date, covered_until timestamptz, partial boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT s.day,
           CASE WHEN s.source_requests = c.recorded THEN (s.day + 1)::timestamp AT TIME ZONE 'UTC'
                ELSE s.max_timestamp + interval '1 microsecond' END,
           s.source_requests <> c.recorded
      FROM usage_analytics.rollup_state s
     CROSS JOIN LATERAL (SELECT coalesce(sum(d.requests), 0) AS recorded, coalesce(sum(d.changes), 0) AS changes
                           FROM usage_analytics.usage_daily_user d WHERE d.day = s.day) c
     WHERE s.day BETWEEN from_day AND to_day
       AND s.source_changes = c.changes
       AND (s.source_requests = c.recorded
            OR usage_analytics._sees_all()
               AND s.max_timestamp IS NOT NULL
               AND s.source_requests + (SELECT count(*) FROM usage_analytics.agent_usage_detailed u
                                         WHERE u."timestamp" > s.max_timestamp
                                           AND u."timestamp" < (s.day + 1)::timestamp AT TIME ZONE 'UTC')
                   = c.recorded)
     ORDER BY s.day
$$;
REVOKE ALL ON FUNCTION usage_analytics._rollup_coverage FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._rollup_coverage TO PUBLIC;

-- The days readable from the rollups (fresh or partial), for inspection.
CREATE FUNCTION usage_analytics._fresh_rollup_days(from_day date, to_day date)
RETURNS date[]
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(array_agg(c.day ORDER BY c.day), '{}')
      FROM usage_analytics._rollup_coverage(from_day, to_day) c
$$;
REVOKE ALL ON FUNCTION usage_analytics._fresh_rollup_days FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._fresh_rollup_days TO PUBLIC;

-- Where a filtered range's usage is read from: whole UTC days that are
-- safely rolled up (fresh) come from agent_performance_metrics, the rest of
-- the range from raw rows, given as [raw_lo, raw_hi) timestamp ranges.
CREATE FUNCTION usage_analytics._usage_fact_plan(filters jsonb, OUT fresh date[], OUT raw_lo timestamptz[],
                                                OUT raw_hi timestamptz[], OUT partial date[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    range_start timestamptz := usage_analytics._filter_timestamp(filters, 'start_date');
    range_end   timestamptz := usage_analytics._filter_timestamp(filters, 'end_date');
    first_day   date;
    last_day    date;
    cursor_at   timestamptz;
    covered     record;
BEGIN
    fresh := '{}';
    partial := '{}';
    raw_lo := '{}';
    raw_hi := '{}';
    cursor_at := coalesce(range_start, '-infinity');
    IF usage_analytics._filter_rollup_compatible(filters) THEN
        -- Whole UTC days inside [range_start, range_end).
        first_day := CASE WHEN range_start IS NULL THEN '-infinity'::date
                          WHEN range_start = date_trunc('day', range_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                          THEN (range_start AT TIME ZONE 'UTC')::date
                          ELSE (range_start AT TIME ZONE 'UTC')::date + 1 END;
        last_day := CASE WHEN range_end IS NULL THEN 'infinity'::date
                         ELSE (range_end AT TIME ZONE 'UTC')::date - 1 END;
        -- Raw ranges are the gaps between the parts the rollups cover.
        FOR covered IN SELECT * FROM usage_analytics._rollup_coverage(first_day, last_day)
                        WHERE first_day <= last_day LOOP
            fresh := fresh || covered.day;
            IF covered.partial THEN
                partial := partial || covered.day;
            END IF;
            IF covered.day::timestamp AT TIME ZONE 'UTC' > cursor_at THEN
                raw_lo := raw_lo || cursor_at;
                raw_hi := raw_hi || (covered.day::timestamp AT TIME ZONE 'UTC');
            END IF;
            cursor_at := covered.covered_until;
        END LOOP;
    END IF;
    IF coalesce(range_end, 'infinity') > cursor_at THEN
        raw_lo := raw_lo || cursor_at;
        raw_hi := raw_hi || coalesce(range_end, 'infinity');
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._usage_fact_plan FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._usage_fact_plan TO PUBLIC;

-- One row per (day, user, agent, framework, provider) group of usage in the
-- filtered range, from the fresh rollup days and the raw ranges of
-- _usage_fact_plan. Both sources are read as the caller, under row-level
-- security. A single-SELECT SQL function: callers EXECUTE it with constant
-- arguments, so it is inlined and the filters fold into index conditions.
CREATE FUNCTION usage_analytics._usage_facts(filters jsonb, fresh date[], raw_lo timestamptz[],
                                             raw_hi timestamptz[])
RETURNS TABLE (day date, user_id uuid, agent_id text, framework text, provider text,
               requests bigint, successful bigint, input_tokens bigint, output_tokens bigint,
               cost_usd numeric, unpriced bigint, response_time_sum_ms bigint, response_time_count bigint,
               cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
               cache_savings_usd numeric, priced_tokens bigint)
LANGUAGE sql STABLE
AS $$
    SELECT r.date, r.user_id, r.agent_id, r.framework, r.provider,
           r.total_requests::bigint, r.successful_requests::bigint,
           r.total_input_tokens, r.total_output_tokens, r.total_cost_usd,
           r.unpriced_requests::bigint, r.response_time_sum_ms, r.response_time_count::bigint,
           r.total_cache_read_tokens, r.total_cache_write_tokens, r.total_reasoning_tokens,
           r.cache_savings_usd, r.priced_tokens
      FROM usage_analytics.agent_performance_metrics r
     WHERE r.date = ANY (fresh)
       AND usage_analytics._rollup_matches(r, filters)
    UNION ALL
    SELECT (u."timestamp" AT TIME ZONE 'UTC')::date, u.user_id, u.agent_id, u.framework, u.provider,
           count(*), count(*) FILTER (WHERE u.success),
           coalesce(sum(u.input_tokens), 0), coalesce(sum(u.output_tokens), 0),
           coalesce(sum(u.cost_usd), 0), count(*) FILTER (WHERE u.cost_usd IS NULL),
           coalesce(sum(u.response_time_ms), 0), count(u.response_time_ms),
           coalesce(sum(u.cache_read_tokens), 0), coalesce(sum(u.cache_write_tokens::bigint + u.cache_write_1h_tokens), 0),
           coalesce(sum(u.reasoning_tokens), 0), coalesce(sum(u.cache_savings_usd), 0),
           coalesce(sum(u.input_tokens::bigint + u.output_tokens) FILTER (WHERE u.cost_usd IS NOT NULL), 0)
      FROM unnest(raw_lo, raw_hi) AS span(lo, hi)
      JOIN LATERAL (
            SELECT * FROM usage_analytics.agent_usage_detailed x
             WHERE x."timestamp" >= span.lo AND x."timestamp" < span.hi
               AND usage_analytics._usage_matches(x, filters)
      ) u ON true
     GROUP BY 1, 2, 3, 4, 5
$$;
REVOKE ALL ON FUNCTION usage_analytics._usage_facts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._usage_facts TO PUBLIC;

-- The whole UTC days inside a filter's date range, and the raw timestamp
-- ranges at its edges ([raw_lo[i], raw_hi[i])) that per-day tables cannot
-- answer. Without a start (end) the whole days reach back (forward) forever.
CREATE FUNCTION usage_analytics._whole_days(filters jsonb, OUT first_day date, OUT last_day date,
                                           OUT raw_lo timestamptz[], OUT raw_hi timestamptz[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    range_start timestamptz := usage_analytics._filter_timestamp(filters, 'start_date');
    range_end   timestamptz := usage_analytics._filter_timestamp(filters, 'end_date');
    days_lo     timestamptz;
    days_hi     timestamptz;
BEGIN
    first_day := CASE WHEN range_start IS NULL THEN '-infinity'::date
                      WHEN range_start = date_trunc('day', range_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                      THEN (range_start AT TIME ZONE 'UTC')::date
                      ELSE (range_start AT TIME ZONE 'UTC')::date + 1 END;
    last_day := CASE WHEN range_end IS NULL THEN 'infinity'::date
                     ELSE (range_end AT TIME ZONE 'UTC')::date - 1 END;
    raw_lo := '{}';
    raw_hi := '{}';
    IF first_day > last_day THEN
        -- Within one day: no whole day, all raw.
        raw_lo := ARRAY[range_start];
        raw_hi := ARRAY[range_end];
        RETURN;
    END IF;
    days_lo := first_day::timestamp AT TIME ZONE 'UTC';
    days_hi := (last_day + 1)::timestamp AT TIME ZONE 'UTC';
    IF range_start < days_lo THEN
        raw_lo := raw_lo || range_start;
        raw_hi := raw_hi || days_lo;
    END IF;
    IF range_end > days_hi THEN
        raw_lo := raw_lo || days_hi;
        raw_hi := raw_hi || range_end;
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._whole_days FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._whole_days TO PUBLIC;

-- The summary document from its inputs: dims, per (agent_id, framework,
-- provider), a jsonb array of the objects the _summary_* sources build; and
-- per user, parallel arrays (ids, requests, tokens, cost: thousands of users
-- travel far cheaper as arrays than as jsonb objects). Pure: the same
-- inputs, the same document.
CREATE FUNCTION usage_analytics._summary_json(dims jsonb, user_ids uuid[], user_requests numeric[],
                                             user_tokens numeric[], user_costs numeric[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    WITH d AS (
        SELECT * FROM jsonb_to_recordset(dims)
            AS x(agent_id text, framework text, provider text, requests numeric, successful numeric,
                 input_tokens numeric, output_tokens numeric, cost numeric, unpriced numeric,
                 rt_sum numeric, rt_count numeric, cache_read numeric, cache_write numeric, reasoning numeric,
                 cache_savings numeric, priced_tokens numeric)
    ), u AS (
        SELECT * FROM unnest(user_ids, user_requests, user_tokens, user_costs) AS x(user_id, requests, tokens, cost)
    ), t AS (
        SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(successful), 0) AS successful,
               coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,
               coalesce(sum(cost), 0) AS cost, coalesce(sum(unpriced), 0) AS unpriced,
               sum(rt_sum) AS rt_sum, coalesce(sum(rt_count), 0) AS rt_count,
               coalesce(sum(cache_read), 0) AS cache_read, coalesce(sum(cache_write), 0) AS cache_write,
               coalesce(sum(reasoning), 0) AS reasoning, coalesce(sum(cache_savings), 0) AS cache_savings,
               coalesce(sum(priced_tokens), 0) AS priced_tokens
          FROM d
    )
    SELECT jsonb_build_object(
        'total_requests', t.requests,
        'successful_requests', t.successful,
        'failed_requests', t.requests - t.successful,
        'success_rate', CASE WHEN t.requests > 0 THEN round(100.0 * t.successful / t.requests, 2) END,
        'total_input_tokens', t.input_tokens,
        'total_output_tokens', t.output_tokens,
        'total_tokens', t.input_tokens + t.output_tokens,
        'total_cost_usd', t.cost,
        'avg_response_time_ms', CASE WHEN t.rt_count > 0 THEN t.rt_sum / t.rt_count END,
        'unique_users', (SELECT count(*) FROM u),
        'unpriced_requests', t.unpriced,
        'cache_read_tokens', t.cache_read,
        'cache_write_tokens', t.cache_write,
        'reasoning_tokens', t.reasoning,
        'cache_savings_usd', t.cache_savings,
        -- Efficiency: over priced requests only (an unpriced one has no cost).
        'cost_per_request_usd', CASE WHEN t.requests > t.unpriced THEN t.cost / (t.requests - t.unpriced) END,
        'tokens_per_usd', CASE WHEN t.cost > 0 THEN t.priced_tokens / t.cost END,
        'cost_by_provider', (SELECT coalesce(jsonb_object_agg(k, v ORDER BY k), '{}')
                               FROM (SELECT coalesce(provider, 'unknown') k, sum(cost) v FROM d GROUP BY 1) x),
        'cost_by_framework', (SELECT coalesce(jsonb_object_agg(k, v ORDER BY k), '{}')
                                FROM (SELECT coalesce(framework, 'unknown') k, sum(cost) v FROM d GROUP BY 1) x),
        'requests_by_agent', (SELECT coalesce(jsonb_object_agg(agent_id, v ORDER BY agent_id), '{}')
                                FROM (SELECT agent_id, sum(requests) v FROM d GROUP BY 1) x),
        'top_users', (SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'requests', requests,
                                                                   'total_tokens', tokens, 'cost_usd', cost)
                                                ORDER BY cost DESC, user_id), '[]')
                        FROM (SELECT user_id, requests, tokens, cost FROM u ORDER BY cost DESC, user_id LIMIT 10) x)
    )
    FROM t
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_json FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_json TO PUBLIC;

-- The summary's inputs for the system-wide view (admins, date filters
-- only): whole days from usage_daily_totals and usage_daily_user, which the
-- usage table's triggers keep exact at every moment (live writers, deletes
-- and updates included), and the range's edge days from raw rows. A few
-- dozen rows a day, whatever the traffic.
CREATE FUNCTION usage_analytics._summary_system(filters jsonb, OUT dims jsonb, OUT user_ids uuid[],
                                               OUT user_requests numeric[], OUT user_tokens numeric[],
                                               OUT user_costs numeric[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    plan record;
BEGIN
    plan := usage_analytics._whole_days(filters);
    -- EXECUTE plans with the actual documents, so the filters fold into
    -- partition pruning and index conditions.
    EXECUTE $q$
        WITH raw AS MATERIALIZED (
            SELECT f.user_id, f.agent_id, f.framework, f.provider, sum(f.requests) AS requests,
                   sum(f.successful) AS successful, sum(f.input_tokens) AS input_tokens,
                   sum(f.output_tokens) AS output_tokens, sum(f.cost_usd) AS cost, sum(f.unpriced) AS unpriced,
                   sum(f.response_time_sum_ms) AS rt_sum, sum(f.response_time_count) AS rt_count,
                   sum(f.cache_read_tokens) AS cache_read, sum(f.cache_write_tokens) AS cache_write,
                   sum(f.reasoning_tokens) AS reasoning, sum(f.cache_savings_usd) AS cache_savings,
                   sum(f.priced_tokens) AS priced_tokens
              FROM usage_analytics._usage_facts($1, '{}', $4, $5) f
             GROUP BY 1, 2, 3, 4
        ), d AS (
            SELECT agent_id, framework, provider, sum(requests) AS requests, sum(successful) AS successful,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost) AS cost,
                   sum(unpriced) AS unpriced, sum(rt_sum) AS rt_sum, sum(rt_count) AS rt_count,
                   sum(cache_read) AS cache_read, sum(cache_write) AS cache_write, sum(reasoning) AS reasoning,
                   sum(cache_savings) AS cache_savings, sum(priced_tokens) AS priced_tokens
              FROM (SELECT t.agent_id, t.framework, t.provider, t.total_requests, t.successful_requests,
                           t.total_input_tokens, t.total_output_tokens, t.total_cost_usd, t.unpriced_requests,
                           t.response_time_sum_ms, t.response_time_count, t.total_cache_read_tokens,
                           t.total_cache_write_tokens, t.total_reasoning_tokens, t.cache_savings_usd, t.priced_tokens
                      FROM usage_analytics.usage_daily_totals t WHERE t.date BETWEEN $2 AND $3
                    UNION ALL
                    SELECT agent_id, framework, provider, requests, successful, input_tokens, output_tokens,
                           cost, unpriced, rt_sum, rt_count, cache_read, cache_write, reasoning, cache_savings,
                           priced_tokens FROM raw)
                   AS x (agent_id, framework, provider, requests, successful, input_tokens, output_tokens, cost,
                         unpriced, rt_sum, rt_count, cache_read, cache_write, reasoning, cache_savings,
                         priced_tokens)
             GROUP BY 1, 2, 3
            -- A group whose rows were all deleted is no group.
            HAVING sum(requests) <> 0
        ), u AS (
            -- The day table summed per user on its own first: its integer
            -- columns sum as integers (the union with raw would make them
            -- numeric, several times slower over a month of user-days).
            SELECT user_id, sum(requests) AS requests, sum(tokens) AS tokens, sum(cost) AS cost
              FROM (SELECT d.user_id, sum(d.requests), sum(d.input_tokens + d.output_tokens), sum(d.cost_usd)
                      FROM usage_analytics.usage_daily_user d WHERE d.day BETWEEN $2 AND $3
                     GROUP BY d.user_id
                    UNION ALL
                    SELECT user_id, requests, input_tokens + output_tokens, cost FROM raw)
                   AS x (user_id, requests, tokens, cost)
             GROUP BY 1
            HAVING sum(requests) > 0
        )
        SELECT (SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]') FROM d),
               coalesce(array_agg(u.user_id), '{}'), coalesce(array_agg(u.requests), '{}'),
               coalesce(array_agg(u.tokens), '{}'), coalesce(array_agg(u.cost), '{}')
          FROM u
    $q$ INTO dims, user_ids, user_requests, user_tokens, user_costs
        USING filters, plan.first_day, plan.last_day, plan.raw_lo, plan.raw_hi;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_system FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_system TO PUBLIC;

-- The summary's inputs for everything else (any user, agent, framework or
-- provider filter; every non-admin caller): whole days that are safely
-- rolled up from agent_performance_metrics, the rest from raw rows (see
-- _usage_fact_plan), both read as the caller, under row-level security.
CREATE FUNCTION usage_analytics._summary_groups(filters jsonb, OUT dims jsonb, OUT user_ids uuid[],
                                               OUT user_requests numeric[], OUT user_tokens numeric[],
                                               OUT user_costs numeric[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    plan record;
BEGIN
    plan := usage_analytics._usage_fact_plan(filters);
    EXECUTE $q$
        WITH g AS MATERIALIZED (
            SELECT f.user_id, f.agent_id, f.framework, f.provider,
                   sum(f.requests) AS requests, sum(f.successful) AS successful,
                   sum(f.input_tokens) AS input_tokens, sum(f.output_tokens) AS output_tokens,
                   sum(f.cost_usd) AS cost, sum(f.unpriced) AS unpriced,
                   sum(f.response_time_sum_ms) AS rt_sum, sum(f.response_time_count) AS rt_count,
                   sum(f.cache_read_tokens) AS cache_read, sum(f.cache_write_tokens) AS cache_write,
                   sum(f.reasoning_tokens) AS reasoning, sum(f.cache_savings_usd) AS cache_savings,
                   sum(f.priced_tokens) AS priced_tokens
              FROM usage_analytics._usage_facts($1, $2, $3, $4) f
             GROUP BY 1, 2, 3, 4
        )
        SELECT (SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]')
                  FROM (SELECT agent_id, framework, provider, sum(requests) AS requests,
                               sum(successful) AS successful, sum(input_tokens) AS input_tokens,
                               sum(output_tokens) AS output_tokens, sum(cost) AS cost, sum(unpriced) AS unpriced,
                               sum(rt_sum) AS rt_sum, sum(rt_count) AS rt_count,
                               sum(cache_read) AS cache_read, sum(cache_write) AS cache_write,
                               sum(reasoning) AS reasoning, sum(cache_savings) AS cache_savings,
                               sum(priced_tokens) AS priced_tokens
                          FROM g GROUP BY 1, 2, 3) d),
               coalesce(array_agg(u.user_id), '{}'), coalesce(array_agg(u.requests), '{}'),
               coalesce(array_agg(u.tokens), '{}'), coalesce(array_agg(u.cost), '{}')
          FROM (SELECT user_id, sum(requests) AS requests, sum(input_tokens + output_tokens) AS tokens,
                       sum(cost) AS cost
                  FROM g GROUP BY 1) u
    $q$ INTO dims, user_ids, user_requests, user_tokens, user_costs
        USING filters, plan.fresh, plan.raw_lo, plan.raw_hi;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_groups FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_groups TO PUBLIC;

-- The summary's inputs for one (checked) filter document, from the fastest
-- exact source: sessions that see every user's rows (admins, auditors)
-- filtering only by date read the per-day tables (_summary_system);
-- everyone else reads rollups and raw rows under row-level security
-- (_summary_groups).
CREATE FUNCTION usage_analytics._summary_parts(filters jsonb, OUT dims jsonb, OUT user_ids uuid[],
                                              OUT user_requests numeric[], OUT user_tokens numeric[],
                                              OUT user_costs numeric[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    parts record;
BEGIN
    IF usage_analytics._filter_dates_only(filters) AND usage_analytics._sees_all() THEN
        parts := usage_analytics._summary_system(filters);
    ELSE
        parts := usage_analytics._summary_groups(filters);
    END IF;
    dims := parts.dims;
    user_ids := parts.user_ids;
    user_requests := parts.user_requests;
    user_tokens := parts.user_tokens;
    user_costs := parts.user_costs;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_parts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_parts TO PUBLIC;

-- Totals and breakdowns; equal to the raw rows at every moment. Both
-- sources (see _summary_parts) feed one document (_summary_json).
CREATE FUNCTION usage_analytics.get_usage_summary(filters jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql STABLE
-- Its queries read small per-day tables, but their estimates can pass
-- jit_above_cost: compiling them would cost more than running them.
SET jit = off
AS $$
DECLARE
    parts record;
BEGIN
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    parts := usage_analytics._summary_parts(filters);
    RETURN usage_analytics._summary_json(parts.dims, parts.user_ids, parts.user_requests, parts.user_tokens,
                                         parts.user_costs);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.get_usage_summary FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.get_usage_summary TO PUBLIC;

-- Usage per UTC day for one (checked) filter document, the trend's input:
-- sessions that see every user's rows filtering only by date read whole
-- days from usage_daily_totals and the range's edges raw (as
-- _summary_system); everyone else reads rollups where fresh and raw rows
-- elsewhere (as _summary_groups), under row-level security. Sums as
-- numeric; a day whose rows were all deleted may sum to zero.
CREATE FUNCTION usage_analytics._trend_days(filters jsonb)
RETURNS TABLE (day date, requests numeric, successful numeric, input_tokens numeric, output_tokens numeric,
               cost numeric, unpriced numeric, rt_sum numeric, rt_count numeric, cache_read numeric,
               cache_write numeric, reasoning numeric, cache_savings numeric, priced_tokens numeric)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    plan      record;
    facts     text;
    first_day date;
    last_day  date;
    fresh     date[];
    raw_lo    timestamptz[];
    raw_hi    timestamptz[];
BEGIN
    IF usage_analytics._filter_dates_only(filters) AND usage_analytics._sees_all() THEN
        plan := usage_analytics._whole_days(filters);
        first_day := plan.first_day;
        last_day := plan.last_day;
        raw_lo := plan.raw_lo;
        raw_hi := plan.raw_hi;
        facts := $q$
            SELECT t.date, t.total_requests, t.successful_requests, t.total_input_tokens, t.total_output_tokens,
                   t.total_cost_usd, t.unpriced_requests, t.response_time_sum_ms, t.response_time_count,
                   t.total_cache_read_tokens, t.total_cache_write_tokens, t.total_reasoning_tokens,
                   t.cache_savings_usd, t.priced_tokens
              FROM usage_analytics.usage_daily_totals t WHERE t.date BETWEEN $2 AND $3
            UNION ALL
            SELECT f.day, f.requests, f.successful, f.input_tokens, f.output_tokens, f.cost_usd, f.unpriced,
                   f.response_time_sum_ms, f.response_time_count, f.cache_read_tokens, f.cache_write_tokens,
                   f.reasoning_tokens, f.cache_savings_usd, f.priced_tokens
              FROM usage_analytics._usage_facts($1, '{}', $4, $5) f$q$;
    ELSE
        plan := usage_analytics._usage_fact_plan(filters);
        fresh := plan.fresh;
        raw_lo := plan.raw_lo;
        raw_hi := plan.raw_hi;
        facts := $q$
            SELECT f.day, f.requests, f.successful, f.input_tokens, f.output_tokens, f.cost_usd, f.unpriced,
                   f.response_time_sum_ms, f.response_time_count, f.cache_read_tokens, f.cache_write_tokens,
                   f.reasoning_tokens, f.cache_savings_usd, f.priced_tokens
              FROM usage_analytics._usage_facts($1, $6, $4, $5) f$q$;
    END IF;
    -- EXECUTE plans with the actual documents, so the filters fold into
    -- partition pruning and index conditions.
    RETURN QUERY EXECUTE format($q$
        SELECT x.day, sum(x.requests), sum(x.successful), sum(x.input_tokens), sum(x.output_tokens), sum(x.cost),
               sum(x.unpriced), sum(x.rt_sum), sum(x.rt_count), sum(x.cache_read), sum(x.cache_write),
               sum(x.reasoning), sum(x.cache_savings), sum(x.priced_tokens)
          FROM (%s) AS x (day, requests, successful, input_tokens, output_tokens, cost, unpriced, rt_sum, rt_count,
                          cache_read, cache_write, reasoning, cache_savings, priced_tokens)
         GROUP BY 1
    $q$, facts) USING filters, first_day, last_day, raw_lo, raw_hi, fresh;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._trend_days FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._trend_days TO PUBLIC;

-- The trend of the union of the rows of several (checked, disjoint) filter
-- documents, per day, ISO week (Monday) or month (granularity lower-case):
-- usage_trend's rows for one document, the explorer's for several. A
-- period whose rows were all deleted is no period.
CREATE FUNCTION usage_analytics._trend_rows(granularity text, docs jsonb[])
RETURNS TABLE (period_start timestamptz, requests bigint, successful_requests bigint, input_tokens bigint,
               output_tokens bigint, cost_usd numeric, avg_response_time_ms numeric,
               cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
               cache_savings_usd numeric, unpriced_requests bigint, cost_per_request_usd numeric,
               tokens_per_usd numeric)
LANGUAGE sql STABLE
AS $$
    SELECT date_trunc(granularity, d.day::timestamp) AT TIME ZONE 'UTC',
           sum(d.requests)::bigint, sum(d.successful)::bigint,
           sum(d.input_tokens)::bigint, sum(d.output_tokens)::bigint, sum(d.cost),
           CASE WHEN sum(d.rt_count) > 0 THEN sum(d.rt_sum) / sum(d.rt_count) END,
           sum(d.cache_read)::bigint, sum(d.cache_write)::bigint, sum(d.reasoning)::bigint,
           sum(d.cache_savings), sum(d.unpriced)::bigint,
           CASE WHEN sum(d.requests) > sum(d.unpriced) THEN sum(d.cost) / (sum(d.requests) - sum(d.unpriced)) END,
           CASE WHEN sum(d.cost) > 0 THEN sum(d.priced_tokens) / sum(d.cost) END
      FROM unnest(docs) AS f (doc)
     CROSS JOIN LATERAL usage_analytics._trend_days(f.doc) AS d
     GROUP BY 1
    HAVING sum(d.requests) <> 0
     ORDER BY 1
$$;
REVOKE ALL ON FUNCTION usage_analytics._trend_rows FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._trend_rows TO PUBLIC;

-- Usage per day, ISO week (Monday) or month, UTC; from the same sources as
-- get_usage_summary (see _trend_days), with the same efficiency figures per
-- period.
CREATE FUNCTION usage_analytics.usage_trend(granularity text, filters jsonb DEFAULT '{}')
RETURNS TABLE (period_start timestamptz, requests bigint, successful_requests bigint, input_tokens bigint,
               output_tokens bigint, cost_usd numeric, avg_response_time_ms numeric,
               cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
               cache_savings_usd numeric, unpriced_requests bigint, cost_per_request_usd numeric,
               tokens_per_usd numeric)
LANGUAGE plpgsql STABLE
SET jit = off  -- as get_usage_summary
AS $$
BEGIN
    IF granularity IS NULL OR lower(granularity) NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'usage_trend: granularity must be day, week or month, got %',
            coalesce(quote_literal(granularity), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    RETURN QUERY SELECT * FROM usage_analytics._trend_rows(lower(granularity), ARRAY[filters]);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.usage_trend FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.usage_trend TO PUBLIC;

