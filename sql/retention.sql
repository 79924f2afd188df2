-- Retention: whole monthly partitions older than a kept number of months
-- are removed (dropped, or detached into schema usage_analytics_archive),
-- after their days are rolled up. Never row-by-row DELETEs.
--
-- What stays after a month is removed:
--  * the per-day tables the usage table's triggers keep (usage_daily_totals,
--    usage_daily_user) and the exporter's counters (usage_counters,
--    usage_series, active_user_sketches): DROP and DETACH fire no row or
--    statement trigger, so they keep counting the removed rows;
--  * the rollups (agent_performance_metrics, system_analytics) and their
--    bookkeeping (rollup_state): each removed day was rolled up just
--    before, and rollup_state.source_requests still equals the day's count
--    in usage_daily_user, so _rollup_coverage keeps reading the day as
--    fresh, from the rollups.
-- Hence get_usage_summary and usage_trend over removed months return what
-- they returned before: admins' date-only queries from the per-day tables,
-- everything rollup-compatible (user, agent, framework, provider filters;
-- every reader) from the rollups. What reads raw rows returns nothing for
-- removed months: get_usage_records, usage_export, export_usage_csv, and
-- summaries or trends filtered by model, message_type, success or search
-- (which the rollups cannot answer), and a start_date/end_date that is not
-- a whole UTC day at an edge inside a removed month.

-- Detached partitions (action 'detach'): plain tables, readable by admins
-- only (no row-level security: admins see every row anyway). Not members of
-- the extension, so pg_dump dumps them with their rows. The schema itself
-- is, though: DROP EXTENSION refuses while archived tables are in it, and
-- DROP EXTENSION ... CASCADE drops them; move them out first (ALTER TABLE
-- ... SET SCHEMA) to keep them through an uninstall.
CREATE SCHEMA usage_analytics_archive;
REVOKE ALL ON SCHEMA usage_analytics_archive FROM PUBLIC;
GRANT USAGE ON SCHEMA usage_analytics_archive TO usage_analytics_admin;
COMMENT ON SCHEMA usage_analytics_archive IS
    'Monthly partitions of usage_analytics.agent_usage_detailed detached by apply_retention (admins only).';

-- The retention setting: one row, or none (keep everything). Written only
-- by set_retention and apply_retention (SECURITY DEFINER); admins read it.
-- An extension table created by the install script, so pg_dump.sql's loop
-- adds it to the dump configuration and a restore keeps the setting.
CREATE TABLE usage_analytics.retention_policy (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    keep_months    integer     NOT NULL CHECK (keep_months BETWEEN 1 AND 1200),
    action         text        NOT NULL CHECK (action IN ('drop', 'detach')),
    set_at         timestamptz NOT NULL DEFAULT now(),
    set_by         name        NOT NULL,
    -- Start of the oldest month apply_retention has not removed: rows
    -- before it were removed (or never had a monthly partition).
    removed_before timestamptz,
    last_applied   timestamptz
);
ALTER TABLE usage_analytics.retention_policy ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.retention_policy FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));
REVOKE ALL ON usage_analytics.retention_policy FROM PUBLIC;
GRANT SELECT ON usage_analytics.retention_policy TO usage_analytics_admin;

-- apply_retention runs one at a time (see ensure_partitions).
INSERT INTO usage_analytics.maintenance_lock (name) VALUES ('apply_retention');

-- Sets (or, with keep_months NULL, clears) the retention policy. Admin
-- only, audited. keep_months = N keeps the current UTC month and the N
-- months before it: no row younger than N months is ever removed.
CREATE FUNCTION usage_analytics.set_retention(keep_months integer, action text DEFAULT 'drop')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    how      text := lower(btrim(set_retention.action));
    previous jsonb;
BEGIN
    PERFORM usage_analytics._require_admin('set_retention');
    IF keep_months IS NOT NULL AND (keep_months < 1 OR keep_months > 1200) THEN
        RAISE EXCEPTION 'set_retention: keep_months must be between 1 and 1200 (or NULL to keep everything), got %',
            keep_months USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF how IS NULL OR how NOT IN ('drop', 'detach') THEN
        RAISE EXCEPTION 'set_retention: action must be drop or detach, got %',
            coalesce(quote_literal(set_retention.action), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT to_jsonb(p) - 'singleton' INTO previous FROM usage_analytics.retention_policy p FOR UPDATE;
    IF keep_months IS NULL THEN
        DELETE FROM usage_analytics.retention_policy;
    ELSE
        INSERT INTO usage_analytics.retention_policy AS p (keep_months, action, set_by)
        VALUES (set_retention.keep_months, how, usage_analytics.acting_role())
        ON CONFLICT (singleton) DO UPDATE
            SET keep_months = excluded.keep_months, action = excluded.action, set_at = now(),
                set_by = excluded.set_by;
    END IF;
    PERFORM usage_analytics._audit('set_retention', 'retention_policy',
            jsonb_build_object('keep_months', keep_months, 'action', CASE WHEN keep_months IS NOT NULL THEN how END,
                               'previous', previous));
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.set_retention FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.set_retention TO usage_analytics_admin;

-- The monthly partitions of the usage table whose month ends on or before
-- cutoff, oldest first (never the default partition; only partitions named
-- and bounded as ensure_partitions creates them).
CREATE FUNCTION usage_analytics._partitions_before(cutoff timestamptz)
RETURNS TABLE (part name, month_start date)
LANGUAGE sql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
SET TimeZone = 'UTC'
AS $$
    SELECT c.relname, m.month_start
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     CROSS JOIN LATERAL (SELECT to_date(substr(c.relname, length('agent_usage_detailed_p') + 1), 'YYYY_MM')
                                AS month_start) m
     WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass
       AND c.relname ~ '^agent_usage_detailed_p[0-9]{4}_[0-9]{2}$'
       AND pg_get_expr(c.relpartbound, c.oid)
           = format('FOR VALUES FROM (%L) TO (%L)', m.month_start::timestamp AT TIME ZONE 'UTC',
                    (m.month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC')
       AND (m.month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= cutoff
     ORDER BY m.month_start
$$;
REVOKE ALL ON FUNCTION usage_analytics._partitions_before FROM PUBLIC;

-- The start of the oldest month a policy keeps at time `at`.
CREATE FUNCTION usage_analytics._retention_cutoff(keep_months integer, at timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (date_trunc('month', at AT TIME ZONE 'UTC') - make_interval(months => keep_months)) AT TIME ZONE 'UTC'
$$;
REVOKE ALL ON FUNCTION usage_analytics._retention_cutoff FROM PUBLIC;

-- Rows of one partition (by name, in schema usage_analytics).
CREATE FUNCTION usage_analytics._count_rows(part name)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM usage_analytics.%I', part) INTO n;
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._count_rows FROM PUBLIC;

-- Removes the monthly partitions older than the policy's keep_months; one
-- row per partition handled: action drop, detach or skipped, and the rows
-- it held. Admin only; each removal is audited. Runs in the scheduled
-- maintenance (run_maintenance), in a transaction of its own.
--
-- Order and locks:
--  1. every due month is rolled up (rollup_range over the month) and its
--     rows counted, with no lock stronger than the rollup's reads;
--  2. then, month by month, the parent is locked (ACCESS EXCLUSIVE, which
--     DROP and DETACH need) under lock_timeout = 1s, and the month is
--     removed only if every one of its days is still exactly what its
--     rollup saw (no row recorded, changed or deleted since step 1);
--     otherwise, or when the lock is not granted in time (a long
--     transaction on the table), the month is skipped with a WARNING, its
--     lock released at once, and the next run retries.
-- So the strong locks are held for milliseconds, never across a rollup, and
-- nothing is removed that the rollups do not describe. The default
-- partition is never removed: rows there (months that never had a
-- partition) stay until ensure_partitions(months_back => …) gives them one.
CREATE FUNCTION usage_analytics.apply_retention()
RETURNS TABLE (partition text, action text, rows bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    policy  usage_analytics.retention_policy;
    cutoff  timestamptz;
    due     record;
    parts   text[] := '{}';
    months  date[] := '{}';
    counts  bigint[] := '{}';
    removed date[] := '{}';
    stale   date;
    target  text;
BEGIN
    PERFORM usage_analytics._require_admin('apply_retention');
    SELECT * INTO policy FROM usage_analytics.retention_policy;
    IF NOT FOUND THEN
        RETURN;  -- no policy: keep everything
    END IF;
    PERFORM 1 FROM usage_analytics.maintenance_lock l WHERE l.name = 'apply_retention' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RAISE NOTICE 'apply_retention: another run is applying retention; skipped';
        RETURN;
    END IF;
    cutoff := usage_analytics._retention_cutoff(policy.keep_months);

    -- 1. Roll up and count, without strong locks (rollups queue on their
    --    days' rollup_state rows as the scheduled job's do).
    PERFORM set_config('lock_timeout', '0', true);
    FOR due IN SELECT * FROM usage_analytics._partitions_before(cutoff) LOOP
        PERFORM usage_analytics.rollup_range(due.month_start, (due.month_start + interval '1 month')::date - 1);
        parts := parts || due.part::text;
        months := months || due.month_start;
        counts := counts || usage_analytics._count_rows(due.part);
    END LOOP;

    -- 2. Remove, each month under a short lock in a subtransaction of its own.
    PERFORM set_config('lock_timeout', '1s', true);
    FOR i IN 1 .. coalesce(array_length(parts, 1), 0) LOOP
        partition := parts[i];
        rows := counts[i];
        BEGIN
            LOCK TABLE usage_analytics.agent_usage_detailed IN ACCESS EXCLUSIVE MODE;
            -- With writers held off, the month's days must still be as rolled up.
            SELECT d.day INTO stale
              FROM generate_series(months[i], (months[i] + interval '1 month')::date - 1, interval '1 day') AS g(x)
             CROSS JOIN LATERAL (SELECT g.x::date AS day) d
             CROSS JOIN LATERAL (SELECT coalesce(sum(u.requests), 0) AS recorded, coalesce(sum(u.changes), 0) AS changes
                                   FROM usage_analytics.usage_daily_user u WHERE u.day = d.day) c
              LEFT JOIN usage_analytics.rollup_state s ON s.day = d.day
             WHERE s.day IS NULL AND (c.recorded <> 0 OR c.changes <> 0)
                OR s.source_requests <> c.recorded OR s.source_changes <> c.changes
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = format('usage of %s changed since its rollup', stale);
            END IF;
            IF policy.action = 'detach' THEN
                target := parts[i];
                IF to_regclass(format('usage_analytics_archive.%I', target)) IS NOT NULL THEN
                    target := target || '_' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS');
                END IF;
                EXECUTE format('ALTER TABLE usage_analytics.agent_usage_detailed DETACH PARTITION usage_analytics.%I',
                               parts[i]);
                IF target <> parts[i] THEN
                    EXECUTE format('ALTER TABLE usage_analytics.%I RENAME TO %I', parts[i], target);
                END IF;
                EXECUTE format('ALTER TABLE usage_analytics.%I SET SCHEMA usage_analytics_archive', target);
                EXECUTE format('REVOKE ALL ON usage_analytics_archive.%I FROM PUBLIC', target);
                EXECUTE format('GRANT SELECT ON usage_analytics_archive.%I TO usage_analytics_admin', target);
                action := 'detach';
            ELSE
                target := NULL;
                EXECUTE format('DROP TABLE usage_analytics.%I', parts[i]);
                action := 'drop';
            END IF;
            removed := removed || months[i];
            PERFORM usage_analytics._audit('apply_retention', parts[i],
                    jsonb_strip_nulls(jsonb_build_object(
                        'action', action, 'rows', rows, 'month', months[i], 'keep_months', policy.keep_months,
                        'archived_as', CASE WHEN target IS NOT NULL
                                            THEN format('usage_analytics_archive.%I', target) END)));
        EXCEPTION
            WHEN lock_not_available THEN
                RAISE WARNING 'apply_retention: % not removed: its locks were not granted within lock_timeout '
                              '(a long transaction holds the usage table); the next run retries', parts[i];
                action := 'skipped';
            WHEN object_not_in_prerequisite_state THEN
                RAISE WARNING 'apply_retention: % not removed: %; the next run rolls it up again and retries',
                    parts[i], SQLERRM;
                action := 'skipped';
        END;
        RETURN NEXT;
    END LOOP;

    UPDATE usage_analytics.retention_policy p
       SET last_applied = now(),
           removed_before = greatest(p.removed_before,
                                     (SELECT (max(m) + interval '1 month')::timestamp AT TIME ZONE 'UTC'
                                        FROM unnest(removed) m));
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.apply_retention FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.apply_retention TO usage_analytics_admin;

-- Forgets the collector's claims (collector_spans) of spans older than the
-- months retention removed (retention_policy.removed_before), through
-- collector_forget_spans (audited): their rows are gone, so the ledger stays
-- as long as the table it guards. Returns how many. run_maintenance calls
-- it after apply_retention, in a transaction of its own, so the usage
-- table's lock is never held while it deletes; the index on "timestamp"
-- makes a run with nothing to forget one probe (and no audit row). Admin only.
CREATE FUNCTION usage_analytics._forget_removed_span_claims()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    before timestamptz;
BEGIN
    PERFORM usage_analytics._require_admin('apply_retention');
    SELECT p.removed_before INTO before FROM usage_analytics.retention_policy p;
    IF before IS NULL
       OR NOT EXISTS (SELECT 1 FROM usage_analytics.collector_spans c WHERE c."timestamp" < before) THEN
        RETURN 0;
    END IF;
    RETURN usage_analytics.collector_forget_spans(before);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._forget_removed_span_claims FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._forget_removed_span_claims TO usage_analytics_admin;

-- Drops the searched texts (search_texts, see schema.sql) that no row has
-- any more, so a deleted row's agent name or error message does not outlive
-- it in the search dictionary. Writers are held off meanwhile (a SHARE lock
-- on the usage table, given up after lock_timeout): a writer that still
-- knows a text (_count_usage caches them) could otherwise record a row
-- under a text just dropped. search_texts' trigger (schema.sql) then makes
-- every backend forget the texts it knew. Returns how many it dropped
-- (NULL when the lock was not granted: call it again), audited when any.
-- READ COMMITTED only.
-- run_maintenance calls it after retention removed months; call it after
-- deleting rows by hand. Admin only.
CREATE FUNCTION usage_analytics.forget_unused_search_texts()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    dropped bigint;
BEGIN
    PERFORM usage_analytics._require_admin('forget_unused_search_texts');
    -- Its DELETE must see every row committed before the lock was granted:
    -- only READ COMMITTED gives a statement a snapshot taken after it.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'forget_unused_search_texts: runs only at READ COMMITTED, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    BEGIN
        LOCK TABLE usage_analytics.agent_usage_detailed IN SHARE MODE;
    EXCEPTION WHEN lock_not_available THEN
        RAISE WARNING 'forget_unused_search_texts: the usage table''s lock was not granted within lock_timeout '
                      '(a long transaction writes to it); nothing dropped, call it again';
        RETURN NULL;
    END;
    WITH gone AS (
        DELETE FROM usage_analytics.search_texts s
         WHERE NOT EXISTS (
               SELECT 1 FROM usage_analytics.agent_usage_detailed u
                WHERE u.agent_id = usage_analytics._search_text_agent(s.search_text)
                  AND usage_analytics._search_key(usage_analytics._search_text(u.agent_id, u.agent_name, u.model,
                                                                             u.error_message)) = s.key
                  AND usage_analytics._search_text(u.agent_id, u.agent_name, u.model, u.error_message)
                      = s.search_text)
        RETURNING 1)
    SELECT count(*) INTO dropped FROM gone;
    IF dropped > 0 THEN
        PERFORM usage_analytics._audit('forget_unused_search_texts',
                'search_texts', jsonb_build_object('texts', dropped));
    END IF;
    RETURN dropped;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.forget_unused_search_texts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.forget_unused_search_texts TO usage_analytics_admin;

-- Adds the searched texts of rows that reached the usage table without
-- passing its statement trigger (inserted straight into a partition, an
-- archived partition attached again, a data-only restore, writes under
-- session_replication_role = replica), so that search finds them. Reads the
-- whole table once; writers go on meanwhile (it only adds texts). Returns
-- how many it added, audited when any. Admin only.
CREATE FUNCTION usage_analytics.add_missing_search_texts()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    added bigint;
BEGIN
    PERFORM usage_analytics._require_admin('add_missing_search_texts');
    added := usage_analytics._add_search_texts(
        ARRAY(SELECT DISTINCT usage_analytics._search_text(u.agent_id, u.agent_name, u.model, u.error_message)
                FROM usage_analytics.agent_usage_detailed u),
        false);
    IF added > 0 THEN
        PERFORM usage_analytics._audit('add_missing_search_texts',
                'search_texts', jsonb_build_object('texts', added));
    END IF;
    RETURN added;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.add_missing_search_texts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.add_missing_search_texts TO usage_analytics_admin;

-- The policy, the oldest month the usage table still holds rows of, and
-- the first UTC day apply_retention has a month to remove (today when one
-- is already due; NULL without a policy or monthly partitions). Admin only.
CREATE FUNCTION usage_analytics.retention_status()
RETURNS TABLE (keep_months integer, action text, oldest_month date, next_due date)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    policy usage_analytics.retention_policy;
    oldest_part date;
BEGIN
    PERFORM usage_analytics._require_admin('retention_status');
    SELECT * INTO policy FROM usage_analytics.retention_policy;
    keep_months := policy.keep_months;
    action := policy.action;
    oldest_month := (SELECT date_trunc('month', min(u."timestamp") AT TIME ZONE 'UTC')::date
                       FROM usage_analytics.agent_usage_detailed u);
    SELECT min(b.month_start) INTO oldest_part FROM usage_analytics._partitions_before('infinity') b;
    IF policy.keep_months IS NOT NULL AND oldest_part IS NOT NULL THEN
        next_due := greatest((now() AT TIME ZONE 'UTC')::date,
                             (oldest_part + make_interval(months => policy.keep_months + 1))::date);
    END IF;
    RETURN NEXT;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.retention_status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.retention_status TO usage_analytics_admin;
