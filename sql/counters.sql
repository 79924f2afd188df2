-- Triggers on the usage table and the counters the exporter reads.
--
-- Pricing: a BEFORE INSERT row trigger (Rust) prices every row, whichever
-- path inserted it (track_detailed_usage, INSERT, COPY).
--
-- Counters: AFTER statement triggers with transition tables fold each
-- statement's rows into two small tables in the same transaction:
--  * usage_counters: lifetime totals per label set, the exporter's counters
--    (inserts only: deletes never make a counter go down);
--  * usage_daily_user: per (UTC day, user) totals, for active users, today's
--    top users and knowing which days the rollups still describe exactly
--    (inserts add, deletes subtract, updates do both and count as changes).
-- Being transactional, a rolled-back insert never counts and transactions
-- that commit out of order are each counted once.
--
-- Every writer upserts only rows of its own shard, shard = its backend pid.
-- No two live backends share a pid, so writers never wait for each other's
-- bookkeeping rows: no deadlock whatever order they write users in, no
-- serialization failure under REPEATABLE READ, and an open transaction never
-- blocks another writer. The scheduled maintenance folds the shards of
-- backends that have exited into shard 0 (_compact_bookkeeping), so the
-- tables stay as small as (keys x live backends).
--
-- Restores: pg_dump and pg_restore run with row_security = off and load the
-- dumped bookkeeping as it was, so these triggers (and the pricing and audit
-- triggers) leave restored rows alone (_restoring()).

-- Whether this session is loading a dump: pg_dump's output and pg_restore
-- both SET row_security = off, which no ordinary session of the extension's
-- roles can work with (row-level security would refuse its reads).
CREATE FUNCTION usage_analytics._restoring() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT current_setting('row_security') = 'off' $$;
REVOKE ALL ON FUNCTION usage_analytics._restoring FROM PUBLIC;

CREATE TRIGGER price_usage_row
    BEFORE INSERT ON usage_analytics.agent_usage_detailed
    FOR EACH ROW EXECUTE FUNCTION usage_analytics.price_usage_row();

CREATE TRIGGER invalidate_price_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON usage_analytics.model_pricing
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics.invalidate_price_cache();

CREATE TRIGGER invalidate_price_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON usage_analytics.provider_default_model
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics.invalidate_price_cache();

-- The response-time histogram's bucket upper bounds in seconds, the one
-- place they are written: usage_counters.rt_bucket_i counts the requests
-- with response_time_ms <= 1000 x bound i (cumulative, as Prometheus's le).
CREATE FUNCTION usage_analytics.metrics_response_time_bucket_bounds() RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY[0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60]::double precision[] $$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_response_time_bucket_bounds FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_response_time_bucket_bounds TO PUBLIC;

-- Bound i in milliseconds; folded to a constant where i is one.
CREATE FUNCTION usage_analytics._bucket_bound_ms(i integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT round(1000 * (usage_analytics.metrics_response_time_bucket_bounds())[i])::integer $$;
REVOKE ALL ON FUNCTION usage_analytics._bucket_bound_ms FROM PUBLIC;

-- usage_counters, usage_daily_user and usage_daily_totals (schema.sql) are
-- updated in place by every statement that records usage. The room each page
-- keeps (fillfactor) lets such an update stay on its page, a HOT update: it
-- adds no index entries, and the next reader of the page reclaims the old
-- version without waiting for VACUUM. At the default of 100, pages fill up and
-- updates move rows and grow the indexes.
CREATE TABLE usage_analytics.usage_counters (
    -- The writing backend's pid (0: folded shards of exited backends).
    shard                integer  NOT NULL,
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
    -- Response-time histogram: count, sum and the cumulative bucket counts
    -- (bounds: metrics_response_time_bucket_bounds()).
    response_time_count  bigint   NOT NULL,
    response_time_sum_ms bigint   NOT NULL,
    rt_bucket_1          bigint   NOT NULL,
    rt_bucket_2          bigint   NOT NULL,
    rt_bucket_3          bigint   NOT NULL,
    rt_bucket_4          bigint   NOT NULL,
    rt_bucket_5          bigint   NOT NULL,
    rt_bucket_6          bigint   NOT NULL,
    rt_bucket_7          bigint   NOT NULL,
    rt_bucket_8          bigint   NOT NULL,
    rt_bucket_9          bigint   NOT NULL,
    rt_bucket_10         bigint   NOT NULL,
    cache_read_tokens    bigint   NOT NULL DEFAULT 0,
    -- 5-minute and 1-hour cache writes together.
    cache_write_tokens   bigint   NOT NULL DEFAULT 0,
    reasoning_tokens     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, framework, agent_id, model, message_type, success, shard)
) WITH (fillfactor = 50);

CREATE TABLE usage_analytics.usage_daily_user (
    day               date        NOT NULL,
    user_id           uuid        NOT NULL,
    requests          bigint      NOT NULL,
    input_tokens      bigint      NOT NULL,
    output_tokens     bigint      NOT NULL,
    cost_usd          numeric     NOT NULL,
    first_seen        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    -- As in usage_counters: the writing backend's pid, 0 for folded shards.
    shard             integer     NOT NULL DEFAULT 0,
    -- Rows of the day updated or deleted (rollups of the day go stale).
    changes           bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, shard)
) WITH (fillfactor = 70);
CREATE INDEX usage_daily_user_user_idx ON usage_analytics.usage_daily_user (user_id, day);

-- Label tuples (provider, framework, agent_id, model, message_type) that
-- have their own exporter series. Label values are free text, and each
-- distinct tuple would be a permanent series: a flood of distinct agent ids
-- or unknown model names would make every scrape slower until monitoring
-- fails. The first usage_analytics.exporter_max_series tuples (a superuser
-- setting, default 10000) are admitted; rows of any later tuple are counted
-- under the tuple ('other', 'other', 'other', 'other', 'other'). Admission is
-- permanent, so every series stays monotonic. Sharded by backend like the
-- counters: admitting never waits for another writer.
CREATE TABLE usage_analytics.usage_series (
    provider     text    NOT NULL,
    framework    text    NOT NULL,
    agent_id     text    NOT NULL,
    model        text    NOT NULL,
    message_type text    NOT NULL,
    shard        integer NOT NULL,
    PRIMARY KEY (provider, framework, agent_id, model, message_type, shard)
);

-- Active users per bucket (5 minutes, 1 hour, 1 day) as HyperLogLog
-- sketches, one shard per writing backend (see src/active_users.rs): the
-- exporter's active-user gauges then cost the same at any number of users.
-- A sketch is at most 3,074 bytes (core::hll: 4,096 registers of 6 bits)
-- and is rewritten whenever a new user changes it: stored as is (PLAIN), as
-- pglz compression and a TOAST row on every write cost a third of the
-- write-back. At fillfactor 50 a page takes no second full sketch, so the
-- rewrite fits beside the old version: a HOT update, reclaimed by the next
-- reader of the page, where each rewrite used to take a new page.
CREATE TABLE usage_analytics.active_user_sketches (
    width_seconds integer     NOT NULL,
    bucket_start  timestamptz NOT NULL,
    shard         integer     NOT NULL,
    sketch        bytea       NOT NULL,
    PRIMARY KEY (width_seconds, bucket_start, shard)
) WITH (fillfactor = 50);
ALTER TABLE usage_analytics.active_user_sketches ALTER COLUMN sketch SET STORAGE PLAIN;

-- Every statement's rows are folded into the bookkeeping by one statement
-- trigger function, _count_usage (src/counting.rs): each trigger names its
-- transition table usage_rows and passes how to count it, TG_ARGV[0] = 1 to
-- add the rows (inserts, the new rows of updates) or -1 to subtract them
-- (deletes, the old rows of updates), TG_ARGV[1] = 1 to count them as
-- changed. Inserts also feed the exporter's lifetime counters and the
-- active-user sketches; deletes and updates keep usage_daily_totals and
-- usage_daily_user equal to the table (the counters never go down). It
-- writes tables no writer may, hence SECURITY DEFINER, with a fixed
-- search_path for the statements it plans.
ALTER FUNCTION usage_analytics._count_usage() SECURITY DEFINER
    SET search_path = pg_catalog, usage_analytics, pg_temp;
REVOKE ALL ON FUNCTION usage_analytics._count_usage FROM PUBLIC;

CREATE TRIGGER count_inserted_usage
    AFTER INSERT ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('1', '0');
CREATE TRIGGER count_deleted_usage
    AFTER DELETE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('-1', '1');
-- An update is its old rows taken out and its new rows put in: two triggers,
-- so each sees its rows under the one name.
CREATE TRIGGER count_updated_usage_new
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('1', '0');
CREATE TRIGGER count_updated_usage_old
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('-1', '1');

-- TRUNCATE empties the table: the per-day bookkeeping follows (rollups stay,
-- and read as stale until rolled up again).
CREATE FUNCTION usage_analytics._count_truncated_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    IF NOT usage_analytics._restoring() THEN
        DELETE FROM usage_analytics.usage_daily_user;
        DELETE FROM usage_analytics.usage_daily_totals;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._count_truncated_usage FROM PUBLIC;

CREATE TRIGGER count_truncated_usage
    AFTER TRUNCATE ON usage_analytics.agent_usage_detailed
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_truncated_usage();

-- Folds the bookkeeping shards of backends that have exited into shard 0.
-- Rows of live backends are never touched, so no writer ever waits for this.
-- Returns the number of shard rows folded.
CREATE FUNCTION usage_analytics._compact_bookkeeping() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    folded_counters bigint;
    folded_days     bigint;
    live            integer[];
BEGIN
    PERFORM usage_analytics._require_admin('compact_bookkeeping');
    PERFORM 1 FROM usage_analytics.maintenance_lock WHERE name = 'compact_bookkeeping' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;  -- another run is compacting
    END IF;
    live := ARRAY(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL);
    WITH gone AS (
        DELETE FROM usage_analytics.usage_counters c
         WHERE c.shard <> 0 AND NOT c.shard = ANY (live)
        RETURNING c.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_counters AS c
        SELECT 0, provider, framework, agent_id, model, message_type, success,
               sum(requests), sum(input_tokens), sum(output_tokens), sum(cost_usd), sum(unpriced_requests),
               sum(response_time_count), sum(response_time_sum_ms),
               sum(rt_bucket_1), sum(rt_bucket_2), sum(rt_bucket_3), sum(rt_bucket_4), sum(rt_bucket_5),
               sum(rt_bucket_6), sum(rt_bucket_7), sum(rt_bucket_8), sum(rt_bucket_9), sum(rt_bucket_10),
               sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
          FROM gone
         GROUP BY provider, framework, agent_id, model, message_type, success
         ORDER BY provider, framework, agent_id, model, message_type, success
        ON CONFLICT (provider, framework, agent_id, model, message_type, success, shard) DO UPDATE SET
            requests             = c.requests + excluded.requests,
            input_tokens         = c.input_tokens + excluded.input_tokens,
            output_tokens        = c.output_tokens + excluded.output_tokens,
            cost_usd             = c.cost_usd + excluded.cost_usd,
            unpriced_requests    = c.unpriced_requests + excluded.unpriced_requests,
            response_time_count  = c.response_time_count + excluded.response_time_count,
            response_time_sum_ms = c.response_time_sum_ms + excluded.response_time_sum_ms,
            rt_bucket_1          = c.rt_bucket_1 + excluded.rt_bucket_1,
            rt_bucket_2          = c.rt_bucket_2 + excluded.rt_bucket_2,
            rt_bucket_3          = c.rt_bucket_3 + excluded.rt_bucket_3,
            rt_bucket_4          = c.rt_bucket_4 + excluded.rt_bucket_4,
            rt_bucket_5          = c.rt_bucket_5 + excluded.rt_bucket_5,
            rt_bucket_6          = c.rt_bucket_6 + excluded.rt_bucket_6,
            rt_bucket_7          = c.rt_bucket_7 + excluded.rt_bucket_7,
            rt_bucket_8          = c.rt_bucket_8 + excluded.rt_bucket_8,
            rt_bucket_9          = c.rt_bucket_9 + excluded.rt_bucket_9,
            rt_bucket_10         = c.rt_bucket_10 + excluded.rt_bucket_10,
            cache_read_tokens    = c.cache_read_tokens + excluded.cache_read_tokens,
            cache_write_tokens   = c.cache_write_tokens + excluded.cache_write_tokens,
            reasoning_tokens     = c.reasoning_tokens + excluded.reasoning_tokens
        RETURNING 1
    )
    SELECT count(*) INTO folded_counters FROM gone;

    WITH gone AS (
        DELETE FROM usage_analytics.usage_daily_user d
         WHERE d.shard <> 0 AND NOT d.shard = ANY (live)
        RETURNING d.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_daily_user AS d
            (day, user_id, shard, requests, input_tokens, output_tokens, cost_usd, first_seen, last_seen, changes)
        SELECT day, user_id, 0, sum(requests), sum(input_tokens), sum(output_tokens), sum(cost_usd),
               min(first_seen), max(last_seen), sum(changes)
          FROM gone
         GROUP BY day, user_id
         ORDER BY day, user_id
        ON CONFLICT (day, user_id, shard) DO UPDATE SET
            requests      = d.requests + excluded.requests,
            input_tokens  = d.input_tokens + excluded.input_tokens,
            output_tokens = d.output_tokens + excluded.output_tokens,
            cost_usd      = d.cost_usd + excluded.cost_usd,
            first_seen    = least(d.first_seen, excluded.first_seen),
            last_seen     = greatest(d.last_seen, excluded.last_seen),
            changes       = d.changes + excluded.changes
        RETURNING 1
    )
    SELECT count(*) INTO folded_days FROM gone;

    WITH gone AS (
        DELETE FROM usage_analytics.usage_daily_totals t
         WHERE t.shard <> 0 AND NOT t.shard = ANY (live)
        RETURNING t.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_daily_totals AS t
            (date, agent_id, framework, provider, total_requests, successful_requests, total_input_tokens,
             total_output_tokens, total_cost_usd, unpriced_requests, response_time_sum_ms, response_time_count,
             shard, total_cache_read_tokens, total_cache_write_tokens, total_reasoning_tokens, cache_savings_usd,
             priced_tokens)
        SELECT date, agent_id, framework, provider, sum(total_requests), sum(successful_requests),
               sum(total_input_tokens), sum(total_output_tokens), sum(total_cost_usd), sum(unpriced_requests),
               sum(response_time_sum_ms), sum(response_time_count), 0, sum(total_cache_read_tokens),
               sum(total_cache_write_tokens), sum(total_reasoning_tokens), sum(cache_savings_usd), sum(priced_tokens)
          FROM gone
         GROUP BY date, agent_id, framework, provider
        ON CONFLICT (date, agent_id, framework, provider, shard) DO UPDATE SET
            total_requests       = t.total_requests + excluded.total_requests,
            successful_requests  = t.successful_requests + excluded.successful_requests,
            total_input_tokens   = t.total_input_tokens + excluded.total_input_tokens,
            total_output_tokens  = t.total_output_tokens + excluded.total_output_tokens,
            total_cost_usd       = t.total_cost_usd + excluded.total_cost_usd,
            unpriced_requests    = t.unpriced_requests + excluded.unpriced_requests,
            response_time_sum_ms = t.response_time_sum_ms + excluded.response_time_sum_ms,
            response_time_count  = t.response_time_count + excluded.response_time_count,
            total_cache_read_tokens  = t.total_cache_read_tokens + excluded.total_cache_read_tokens,
            total_cache_write_tokens = t.total_cache_write_tokens + excluded.total_cache_write_tokens,
            total_reasoning_tokens   = t.total_reasoning_tokens + excluded.total_reasoning_tokens,
            cache_savings_usd        = t.cache_savings_usd + excluded.cache_savings_usd,
            priced_tokens            = t.priced_tokens + excluded.priced_tokens
        RETURNING 1
    )
    SELECT folded_days + count(*) INTO folded_days FROM gone;

    WITH gone AS (
        DELETE FROM usage_analytics.usage_series s
         WHERE s.shard <> 0 AND NOT s.shard = ANY (live)
        RETURNING s.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_series (provider, framework, agent_id, model, message_type, shard)
        SELECT DISTINCT provider, framework, agent_id, model, message_type, 0 FROM gone
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT folded_days + count(*) INTO folded_days FROM gone;

    DELETE FROM usage_analytics.active_user_sketches s
     WHERE s.bucket_start < now() - CASE s.width_seconds WHEN 300 THEN interval '2 hours 5 minutes'
                                                         WHEN 3600 THEN interval '27 hours'
                                                         ELSE interval '33 days' END;
    WITH gone AS (
        DELETE FROM usage_analytics.active_user_sketches s
         WHERE s.shard <> 0 AND NOT s.shard = ANY (live)
        RETURNING s.*
    ), folded AS (
        INSERT INTO usage_analytics.active_user_sketches AS s (width_seconds, bucket_start, shard, sketch)
        SELECT width_seconds, bucket_start, 0, usage_analytics._hll_union(array_agg(sketch))
          FROM gone
         GROUP BY width_seconds, bucket_start
        ON CONFLICT (width_seconds, bucket_start, shard) DO UPDATE
            SET sketch = usage_analytics._hll_union(ARRAY[s.sketch, excluded.sketch])
        RETURNING 1
    )
    SELECT folded_days + count(*) INTO folded_days FROM gone;
    RETURN folded_counters + folded_days;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._compact_bookkeeping FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._compact_bookkeeping TO usage_analytics_admin;

-- ---------------------------------------------------------------------------
-- What the exporter reads. Each function scans only the small tables above
-- (and the rollup bookkeeping), never the usage table, so a scrape costs the
-- same at ten thousand rows as at ten million.

CREATE FUNCTION usage_analytics.metrics_usage_counters()
RETURNS TABLE (provider text, framework text, agent_id text, model text, message_type text,
               success boolean, requests bigint, input_tokens numeric, output_tokens numeric,
               cost_usd numeric, unpriced_requests bigint, response_time_count bigint,
               response_time_sum_seconds numeric, response_time_buckets bigint[],
               cache_read_tokens numeric, cache_write_tokens numeric, reasoning_tokens numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT provider, framework, agent_id, model, message_type, success,
           sum(requests)::bigint, sum(input_tokens), sum(output_tokens), sum(cost_usd),
           sum(unpriced_requests)::bigint, sum(response_time_count)::bigint,
           sum(response_time_sum_ms) / 1000.0,
           ARRAY[sum(rt_bucket_1), sum(rt_bucket_2), sum(rt_bucket_3), sum(rt_bucket_4),
                 sum(rt_bucket_5), sum(rt_bucket_6), sum(rt_bucket_7), sum(rt_bucket_8),
                 sum(rt_bucket_9), sum(rt_bucket_10)]::bigint[],
           sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
      FROM usage_analytics.usage_counters
     GROUP BY 1, 2, 3, 4, 5, 6
     ORDER BY 1, 2, 3, 4, 5, 6
$$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_usage_counters FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_usage_counters TO usage_analytics_monitor, usage_analytics_admin;

COMMENT ON FUNCTION usage_analytics.metrics_usage_counters() IS
    'Lifetime counters per label set; response_time_buckets are cumulative counts for the bounds (le, seconds) of metrics_response_time_bucket_bounds().';

-- Users with usage in the last hour, 24 hours and 30 days: the union of
-- the sketches of every bucket that overlaps the window (so a window reaches
-- back up to one bucket further: 5 minutes, 1 hour, 1 day). Exact up to 384
-- users, then within about 1.6%; the cost does not grow with users.
CREATE FUNCTION usage_analytics.metrics_active_users()
RETURNS TABLE ("window" text, users bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT w.name, usage_analytics._hll_estimate(usage_analytics._hll_union(array_agg(s.sketch)))
      FROM (VALUES ('1h', 300, interval '1 hour'), ('24h', 3600, interval '24 hours'),
                   ('30d', 86400, interval '30 days')) AS w(name, width, span)
      LEFT JOIN usage_analytics.active_user_sketches s
        ON s.width_seconds = w.width
       AND s.bucket_start > now() - w.span - make_interval(secs => w.width)
       AND s.bucket_start <= now()
     GROUP BY w.name, w.span
     ORDER BY w.span
$$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_active_users FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_active_users TO usage_analytics_monitor, usage_analytics_admin;

-- Today's (UTC) top users by cost; at most 100 (a bounded label set).
CREATE FUNCTION usage_analytics.metrics_top_users(n integer DEFAULT 10)
RETURNS TABLE (rank integer, user_id uuid, cost_usd numeric, requests bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT (row_number() OVER (ORDER BY d.cost_usd DESC, d.user_id))::integer,
           d.user_id, d.cost_usd, d.requests
      FROM (SELECT user_id, sum(cost_usd) AS cost_usd, sum(requests)::bigint AS requests
              FROM usage_analytics.usage_daily_user
             WHERE day = (now() AT TIME ZONE 'UTC')::date
             GROUP BY user_id
            HAVING sum(requests) > 0) d
     ORDER BY d.cost_usd DESC, d.user_id
     LIMIT least(greatest(n, 0), 100)
$$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_top_users FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_top_users TO usage_analytics_monitor, usage_analytics_admin;

-- When the last rollup run finished (NULL when none ran yet).
CREATE FUNCTION usage_analytics.metrics_rollup_last_success() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$ SELECT max(rolled_at) FROM usage_analytics.rollup_state $$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_rollup_last_success FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_rollup_last_success TO usage_analytics_monitor, usage_analytics_admin;
