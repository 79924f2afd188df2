-- Budget spend: booking each statement's priced rows into the ledger, and
-- threshold events. The budget tables are in budgets.sql.
--
-- Spent accounting: a ledger, not on-demand sums. budget_spend holds the
-- exact spent per (budget, period, shard), shard = the writing backend's pid
-- as for usage_counters. Statement triggers on the usage table (inserts,
-- updates, deletes; COPY and every writer included) join the statement's
-- transition table with the budgets whose scope matches and upsert their own
-- shard only, so writers never wait for each other's bookkeeping; spent is
-- the sum of a budget period's shards (a handful of rows). Computing spent on
-- demand would cost a scan of the period's matching rows at every
-- authorize_request and status call, and no index serves every scope (a
-- provider- or model-wide month is a partition scan). Rows in periods before
-- the budget was (re)defined are not booked (tracked_from): set_budget
-- books the current period (or, for period total, everything) from the rows.
--
-- Threshold events (exactly once, never missed): a deferred constraint
-- trigger on the ledger runs at COMMIT of each transaction that booked spend.
-- It locks the budgets it touched (FOR NO KEY UPDATE, in id order, so two
-- committers never deadlock) and only then sums the shards: READ COMMITTED
-- gives the statement after the lock a snapshot with every transaction that
-- committed before, so of two writers that cross a threshold together the
-- later committer sees both and records the crossing. Writers wait for each
-- other only during the commit of a transaction that spent on the same
-- budget, never while a transaction is open. An event is a row of
-- budget_events, unique on (budget, period_start, threshold), inserted with
-- ON CONFLICT DO NOTHING; NOTIFY usage_analytics_budget is sent only for an
-- inserted row, so exactly once per threshold per period.

-- ---------------------------------------------------------------------------
-- Booking spend from the usage table's statement triggers.

-- Remembers (transaction-locally) the budget periods this transaction
-- booked, for the commit-time threshold check.
CREATE FUNCTION usage_analytics._budget_note_touched(keys text) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF keys IS NOT NULL AND keys <> '' THEN
        PERFORM set_config('pg_usage_analytics_budgets.touched',
                           concat_ws(',', nullif(current_setting('pg_usage_analytics_budgets.touched', true), ''), keys),
                           true);
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_note_touched FROM PUBLIC;

-- Books each statement's priced rows against every matching budget and
-- period (from tracked_from on) in this backend's shard, in plain SQL planned
-- once per session. As for _count_usage, each trigger names its transition
-- table usage_rows and passes TG_ARGV[0] = 1 to add the rows (inserts, the
-- new rows of updates) or -1 to subtract them (deletes, the old rows of
-- updates). Inserts first release the reservations their rows were
-- authorized under. The periods that grew are noted for the commit-time
-- threshold check.
CREATE FUNCTION usage_analytics._budget_book_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
-- Planned once per session, as _count_usage (see there).
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    sign    integer := TG_ARGV[0]::integer;
    touched text;
BEGIN
    IF usage_analytics._restoring() THEN
        RETURN NULL;
    END IF;
    -- Row locks in key order; no budget lock needed: releasing only lowers
    -- reserved. Only for statements with a row that names a reservation (most
    -- inserts come without), looked for among the statement's rows first:
    -- budget_reservations is a queue whose released rows leave empty pages
    -- until VACUUM, and finding out that it has no row reads every page (a
    -- tenth of a plain insert's time after a burst of reservations).
    IF TG_OP = 'INSERT'
       AND EXISTS (SELECT 1 FROM usage_rows n WHERE n.request_metadata ? 'reservation_id')
       AND EXISTS (SELECT 1 FROM usage_analytics.budget_reservations) THEN
        DELETE FROM usage_analytics.budget_reservations r
         WHERE (r.reservation_id, r.budget_id) IN (
                SELECT x.reservation_id, x.budget_id FROM usage_analytics.budget_reservations x
                 WHERE x.reservation_id IN (
                        SELECT (n.request_metadata ->> 'reservation_id')::uuid FROM usage_rows n
                         WHERE n.request_metadata ->> 'reservation_id'
                               ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$')
                 ORDER BY x.reservation_id, x.budget_id
                   FOR UPDATE);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM usage_analytics.budgets) THEN
        RETURN NULL;
    END IF;
    WITH hit AS (
        SELECT b.id, usage_analytics._budget_period_start(b.period, b.timezone, r."timestamp") AS period_start,
               b.tracked_from, sum(r.cost_usd) AS amount
          FROM usage_rows r
          JOIN usage_analytics.budgets b
            ON usage_analytics._budget_in_scope(b, r.user_id, r.agent_id, r.framework, r.provider, r.model)
         WHERE r.cost_usd IS NOT NULL AND r.cost_usd <> 0
         GROUP BY 1, 2, 3
    ), booked AS (
        INSERT INTO usage_analytics.budget_spend AS s (budget_id, period_start, shard, spent_usd)
        SELECT id, period_start, pg_backend_pid(), sign * amount
          FROM hit
         WHERE period_start >= tracked_from
         ORDER BY id, period_start
        ON CONFLICT (budget_id, period_start, shard) DO UPDATE SET spent_usd = s.spent_usd + excluded.spent_usd
        RETURNING budget_id, period_start
    )
    SELECT string_agg(budget_id || '@' || extract(epoch FROM period_start), ',') INTO touched FROM booked;
    IF sign > 0 THEN
        PERFORM usage_analytics._budget_note_touched(touched);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_book_usage FROM PUBLIC;

CREATE FUNCTION usage_analytics._budget_truncated_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    IF NOT usage_analytics._restoring() THEN
        DELETE FROM usage_analytics.budget_spend;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_truncated_usage FROM PUBLIC;

-- _budgets_exist() (src/budget_cache.rs): whether any budget exists, cached
-- per backend and dropped when a statement changes budgets (the trigger
-- below announces it to every backend at commit). The usage table's budget
-- triggers fire only when one does: without budgets an insert pays nothing
-- for them (no budget, no reservation: delete_budget releases its
-- reservations). SECURITY DEFINER to read budgets under row-level security;
-- callable by anyone who inserts usage, since a trigger's WHEN runs as the
-- inserting role (it tells only whether some budget exists).
ALTER FUNCTION usage_analytics._budgets_exist() SECURITY DEFINER;
REVOKE ALL ON FUNCTION usage_analytics._budgets_exist FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._budgets_exist TO PUBLIC;
CREATE TRIGGER announce_budget_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON usage_analytics.budgets
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._announce_change();

-- Named to fire after count_* (triggers fire in name order).
CREATE TRIGGER track_budget_inserted_usage
    AFTER INSERT ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('1');
CREATE TRIGGER track_budget_deleted_usage
    AFTER DELETE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('-1');
CREATE TRIGGER track_budget_updated_usage_new
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('1');
CREATE TRIGGER track_budget_updated_usage_old
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('-1');
CREATE TRIGGER track_budget_truncated_usage
    AFTER TRUNCATE ON usage_analytics.agent_usage_detailed
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._budget_truncated_usage();

-- ---------------------------------------------------------------------------
-- Threshold events.


-- Records (and notifies) the thresholds the given budget periods have
-- crossed. keys: 'budget_id@period_start epoch'. The caller holds the
-- budgets' row locks. Returns the events inserted.
CREATE FUNCTION usage_analytics._budget_record_crossings(keys text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    ev record;
    n  integer := 0;
BEGIN
    FOR ev IN
        WITH k AS (
            SELECT DISTINCT split_part(key, '@', 1)::bigint AS budget_id,
                   to_timestamp(split_part(key, '@', 2)::double precision) AS period_start
              FROM unnest(keys) AS key
        ), spent AS MATERIALIZED (  -- the ledger summed once, not once per use
            SELECT b.id, b.name, b.scope, b.period, b.timezone, b.limit_usd, b.enforcement, b.alert_thresholds,
                   k.period_start, usage_analytics._budget_spent(b.id, k.period_start) AS spent_usd
              FROM k JOIN usage_analytics.budgets b ON b.id = k.budget_id
             WHERE k.period_start >= b.tracked_from
        )
        INSERT INTO usage_analytics.budget_events AS e
            (budget_id, budget_name, scope, period_start, threshold, limit_usd, spent_usd)
        SELECT s.id, s.name, s.scope, s.period_start, t, s.limit_usd, s.spent_usd
          FROM spent s CROSS JOIN LATERAL unnest(s.alert_thresholds) AS t
         WHERE s.spent_usd > 0 AND s.spent_usd >= t * s.limit_usd
         ORDER BY s.id, t
        ON CONFLICT (budget_id, period_start, threshold) DO NOTHING
        RETURNING e.*
    LOOP
        n := n + 1;
        PERFORM pg_notify('usage_analytics_budget', jsonb_build_object(
            'event_id', ev.id, 'budget', ev.budget_name, 'budget_id', ev.budget_id, 'scope', ev.scope,
            'period_start', CASE WHEN isfinite(ev.period_start) THEN ev.period_start END,
            'threshold', ev.threshold, 'limit_usd', ev.limit_usd, 'spent_usd', ev.spent_usd,
            'utilization', CASE WHEN ev.limit_usd > 0 THEN round(ev.spent_usd / ev.limit_usd, 6) END,
            'at', ev.created_at)::text);
    END LOOP;
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_record_crossings FROM PUBLIC;

-- At COMMIT (deferred constraint trigger on the ledger): lock the budgets
-- this transaction booked spend on, in id order, then check their periods
-- with a snapshot that includes every earlier committer. The first firing
-- does the whole transaction's work; the rest find nothing to do.
CREATE FUNCTION usage_analytics._budget_commit_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    keys text[];
BEGIN
    keys := string_to_array(nullif(current_setting('pg_usage_analytics_budgets.touched', true), ''), ',');
    IF keys IS NULL OR usage_analytics._restoring() THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('pg_usage_analytics_budgets.touched', '', true);
    PERFORM 1 FROM usage_analytics.budgets b
     WHERE b.id IN (SELECT split_part(key, '@', 1)::bigint FROM unnest(keys) AS key)
     ORDER BY b.id
       FOR NO KEY UPDATE;
    PERFORM usage_analytics._budget_record_crossings(keys);
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_commit_check FROM PUBLIC;

CREATE CONSTRAINT TRIGGER check_budget_thresholds
    AFTER INSERT OR UPDATE ON usage_analytics.budget_spend
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._budget_commit_check();
