-- Triggers on the usage table and the counters the exporter reads.
--
-- Pricing: a BEFORE INSERT row trigger (Rust) prices every row, whichever
-- path inserted it (track_detailed_usage, INSERT, COPY).
--
-- Counters: an AFTER INSERT statement trigger with a transition table folds
-- each statement's rows into two small tables in the same transaction:
--  * usage_counters: lifetime totals per label set, the exporter's counters;
--  * usage_daily_user: per (UTC day, user) totals, for active users, today's
--    top users and knowing which days the rollups still describe exactly.
-- Being transactional, a rolled-back insert never counts and transactions
-- that commit out of order are each counted once. Deletes do not touch the
-- counters, so retention never makes a counter go down. Concurrent writers
-- spread over shards (backend pid mod 8), and each statement upserts its
-- keys in sorted order, so two writers never deadlock on counter rows.

CREATE TRIGGER price_usage_row
    BEFORE INSERT ON usage_analytics.agent_usage_detailed
    FOR EACH ROW EXECUTE FUNCTION usage_analytics.price_usage_row();

CREATE TRIGGER invalidate_price_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON usage_analytics.model_pricing
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics.invalidate_price_cache();

CREATE TRIGGER invalidate_price_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON usage_analytics.provider_default_model
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics.invalidate_price_cache();

CREATE TABLE usage_analytics.usage_counters (
    shard                smallint NOT NULL,
    provider             text     NOT NULL,
    framework            text     NOT NULL,
    agent_id             text     NOT NULL,
    -- The canonical model, or for unknown models the name that was sent.
    model                text     NOT NULL,
    message_type         text     NOT NULL,
    success              boolean  NOT NULL,
    requests             bigint   NOT NULL,
    input_tokens         bigint   NOT NULL,
    output_tokens        bigint   NOT NULL,
    cost_usd             numeric  NOT NULL,
    unpriced_requests    bigint   NOT NULL,
    -- Response-time histogram: cumulative bucket counts (le), count and sum.
    response_time_count  bigint   NOT NULL,
    response_time_sum_ms bigint   NOT NULL,
    rt_le_100ms          bigint   NOT NULL,
    rt_le_250ms          bigint   NOT NULL,
    rt_le_500ms          bigint   NOT NULL,
    rt_le_1s             bigint   NOT NULL,
    rt_le_2500ms         bigint   NOT NULL,
    rt_le_5s             bigint   NOT NULL,
    rt_le_10s            bigint   NOT NULL,
    rt_le_20s            bigint   NOT NULL,
    rt_le_30s            bigint   NOT NULL,
    rt_le_60s            bigint   NOT NULL,
    PRIMARY KEY (provider, framework, agent_id, model, message_type, success, shard)
);

CREATE TABLE usage_analytics.usage_daily_user (
    day               date        NOT NULL,
    user_id           uuid        NOT NULL,
    requests          bigint      NOT NULL,
    input_tokens      bigint      NOT NULL,
    output_tokens     bigint      NOT NULL,
    cost_usd          numeric     NOT NULL,
    first_seen        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    PRIMARY KEY (day, user_id)
);
CREATE INDEX usage_daily_user_user_idx ON usage_analytics.usage_daily_user (user_id, day);

CREATE FUNCTION usage_analytics._count_inserted_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    INSERT INTO usage_analytics.usage_counters AS c
    SELECT (pg_backend_pid() % 8)::smallint,
           coalesce(provider, ''), coalesce(framework, ''), agent_id,
           coalesce(model, lower(requested_model), ''), coalesce(message_type, ''), success,
           count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
           coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL),
           count(response_time_ms), coalesce(sum(response_time_ms), 0),
           count(*) FILTER (WHERE response_time_ms <= 100),
           count(*) FILTER (WHERE response_time_ms <= 250),
           count(*) FILTER (WHERE response_time_ms <= 500),
           count(*) FILTER (WHERE response_time_ms <= 1000),
           count(*) FILTER (WHERE response_time_ms <= 2500),
           count(*) FILTER (WHERE response_time_ms <= 5000),
           count(*) FILTER (WHERE response_time_ms <= 10000),
           count(*) FILTER (WHERE response_time_ms <= 20000),
           count(*) FILTER (WHERE response_time_ms <= 30000),
           count(*) FILTER (WHERE response_time_ms <= 60000)
      FROM new_usage
     GROUP BY 2, 3, 4, 5, 6, 7
     ORDER BY 2, 3, 4, 5, 6, 7
    ON CONFLICT (provider, framework, agent_id, model, message_type, success, shard) DO UPDATE SET
        requests             = c.requests + excluded.requests,
        input_tokens         = c.input_tokens + excluded.input_tokens,
        output_tokens        = c.output_tokens + excluded.output_tokens,
        cost_usd             = c.cost_usd + excluded.cost_usd,
        unpriced_requests    = c.unpriced_requests + excluded.unpriced_requests,
        response_time_count  = c.response_time_count + excluded.response_time_count,
        response_time_sum_ms = c.response_time_sum_ms + excluded.response_time_sum_ms,
        rt_le_100ms          = c.rt_le_100ms + excluded.rt_le_100ms,
        rt_le_250ms          = c.rt_le_250ms + excluded.rt_le_250ms,
        rt_le_500ms          = c.rt_le_500ms + excluded.rt_le_500ms,
        rt_le_1s             = c.rt_le_1s + excluded.rt_le_1s,
        rt_le_2500ms         = c.rt_le_2500ms + excluded.rt_le_2500ms,
        rt_le_5s             = c.rt_le_5s + excluded.rt_le_5s,
        rt_le_10s            = c.rt_le_10s + excluded.rt_le_10s,
        rt_le_20s            = c.rt_le_20s + excluded.rt_le_20s,
        rt_le_30s            = c.rt_le_30s + excluded.rt_le_30s,
        rt_le_60s            = c.rt_le_60s + excluded.rt_le_60s;

    INSERT INTO usage_analytics.usage_daily_user AS d
    SELECT ("timestamp" AT TIME ZONE 'UTC')::date, user_id,
           count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
           coalesce(sum(cost_usd), 0), min("timestamp"), max("timestamp")
      FROM new_usage
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (day, user_id) DO UPDATE SET
        requests      = d.requests + excluded.requests,
        input_tokens  = d.input_tokens + excluded.input_tokens,
        output_tokens = d.output_tokens + excluded.output_tokens,
        cost_usd      = d.cost_usd + excluded.cost_usd,
        first_seen    = least(d.first_seen, excluded.first_seen),
        last_seen     = greatest(d.last_seen, excluded.last_seen);
    RETURN NULL;
END;
$$;

CREATE TRIGGER count_inserted_usage
    AFTER INSERT ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS new_usage
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_inserted_usage();

-- ---------------------------------------------------------------------------
-- What the exporter reads. Each function scans only the small tables above
-- (and the rollup bookkeeping), never the usage table, so a scrape costs the
-- same at ten thousand rows as at ten million.

CREATE FUNCTION usage_analytics.metrics_usage_counters()
RETURNS TABLE (provider text, framework text, agent_id text, model text, message_type text,
               success boolean, requests bigint, input_tokens numeric, output_tokens numeric,
               cost_usd numeric, unpriced_requests bigint, response_time_count bigint,
               response_time_sum_seconds numeric, response_time_buckets bigint[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT provider, framework, agent_id, model, message_type, success,
           sum(requests)::bigint, sum(input_tokens), sum(output_tokens), sum(cost_usd),
           sum(unpriced_requests)::bigint, sum(response_time_count)::bigint,
           sum(response_time_sum_ms) / 1000.0,
           ARRAY[sum(rt_le_100ms), sum(rt_le_250ms), sum(rt_le_500ms), sum(rt_le_1s),
                 sum(rt_le_2500ms), sum(rt_le_5s), sum(rt_le_10s), sum(rt_le_20s),
                 sum(rt_le_30s), sum(rt_le_60s)]::bigint[]
      FROM usage_analytics.usage_counters
     GROUP BY 1, 2, 3, 4, 5, 6
     ORDER BY 1, 2, 3, 4, 5, 6
$$;

COMMENT ON FUNCTION usage_analytics.metrics_usage_counters() IS
    'Lifetime counters per label set; response_time_buckets are cumulative counts for le = 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60 seconds.';

-- Upper bounds, in seconds, of response_time_buckets.
CREATE FUNCTION usage_analytics.metrics_response_time_bucket_bounds() RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY[0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60]::double precision[] $$;

-- Users with usage in the last hour, 24 hours and 30 days.
CREATE FUNCTION usage_analytics.metrics_active_users()
RETURNS TABLE ("window" text, users bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT w.name, count(DISTINCT d.user_id)
      FROM (VALUES ('1h', interval '1 hour'), ('24h', interval '24 hours'), ('30d', interval '30 days'))
           AS w(name, span)
      LEFT JOIN usage_analytics.usage_daily_user d
        ON d.day >= ((now() - w.span) AT TIME ZONE 'UTC')::date
       AND d.last_seen >= now() - w.span
     GROUP BY w.name, w.span
     ORDER BY w.span
$$;

-- Today's (UTC) top users by cost.
CREATE FUNCTION usage_analytics.metrics_top_users(n integer DEFAULT 10)
RETURNS TABLE (rank integer, user_id uuid, cost_usd numeric, requests bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT (row_number() OVER (ORDER BY d.cost_usd DESC, d.user_id))::integer,
           d.user_id, d.cost_usd, d.requests
      FROM usage_analytics.usage_daily_user d
     WHERE d.day = (now() AT TIME ZONE 'UTC')::date
     ORDER BY d.cost_usd DESC, d.user_id
     LIMIT greatest(n, 0)
$$;

-- When the last rollup run finished (NULL when none ran yet).
CREATE FUNCTION usage_analytics.metrics_rollup_last_success() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$ SELECT max(rolled_at) FROM usage_analytics.rollup_state $$;
