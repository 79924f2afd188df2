-- Monthly partitions of agent_usage_detailed (UTC months).

-- Creates the monthly partitions from months_back before the current month to
-- months_ahead after it; returns how many it created. Rows that had landed
-- in the default partition for a month being created are moved into it.
--
-- Locking, so that readers never wait and writers wait only milliseconds:
--  * a new month is created as a plain table and then ATTACHed, not with
--    the ACCESS EXCLUSIVE of CREATE TABLE … PARTITION OF;
--  * while it attaches, SHARE on the parent holds writers off (readers
--    pass): a writer that had routed a row of that month to the default
--    partition just before the attach would otherwise be refused with a
--    partition constraint error. Writers resume, routed anew, at commit;
--  * lock_timeout bounds every wait (a long writer transaction, or a reader
--    idle in a transaction that read the default partition, which ATTACH
--    must lock): a month whose locks are not granted in time is skipped with
--    a WARNING and created by the next run;
--  * concurrent runs serialise on a row of maintenance_lock, which no role
--    outside the extension can lock (an advisory lock key can be taken by
--    anyone who can connect).
-- Partitions are created outside the extension (not members): pg_dump then
-- dumps each with its rows, and a restore in another month recreates them.
-- New partitions get no grants: nobody but the owner reads a partition
-- directly (row-level security is enforced on the parent only).
CREATE FUNCTION usage_analytics.ensure_partitions(months_ahead integer DEFAULT 3, months_back integer DEFAULT 1)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    month_start date;
    lo          timestamptz;
    hi          timestamptz;
    part        text;
    columns     text;
    created     integer := 0;
BEGIN
    PERFORM usage_analytics._require_admin('ensure_partitions');
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'ensure_partitions: months_ahead must be between 0 and 120, got %',
            coalesce(months_ahead::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF months_back IS NULL OR months_back < 0 OR months_back > 600 THEN
        RAISE EXCEPTION 'ensure_partitions: months_back must be between 0 and 600, got %',
            coalesce(months_back::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM usage_analytics.maintenance_lock WHERE name = 'ensure_partitions' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RAISE NOTICE 'ensure_partitions: another run is creating partitions; skipped';
        RETURN 0;
    END IF;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
      FROM pg_attribute
     WHERE attrelid = 'usage_analytics.agent_usage_detailed'::regclass
       AND attnum > 0 AND NOT attisdropped AND attgenerated = '';

    FOR i IN -months_back .. months_ahead LOOP
        month_start := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date;
        part := format('agent_usage_detailed_p%s', to_char(month_start, 'YYYY_MM'));
        CONTINUE WHEN to_regclass(format('usage_analytics.%I', part)) IS NOT NULL;
        lo := month_start::timestamp AT TIME ZONE 'UTC';
        hi := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        BEGIN
            LOCK TABLE usage_analytics.agent_usage_detailed IN SHARE MODE;
            -- The default partition is the template: columns, constraints
            -- and the key and indexes every partition carries.
            EXECUTE format('CREATE TABLE usage_analytics.%I (LIKE usage_analytics.agent_usage_detailed_default '
                           'INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING INDEXES)', part);
            IF EXISTS (SELECT 1 FROM usage_analytics.agent_usage_detailed_default
                        WHERE "timestamp" >= lo AND "timestamp" < hi) THEN
                -- The month's rows move in one statement; writers are held
                -- off by the lock above, so none can slip in between.
                EXECUTE format('WITH moved AS (DELETE FROM usage_analytics.agent_usage_detailed_default '
                               'WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING %s) '
                               'INSERT INTO usage_analytics.%I (%s) SELECT %s FROM moved',
                               columns, part, columns, columns)
                    USING lo, hi;
            END IF;
            EXECUTE format('ALTER TABLE usage_analytics.agent_usage_detailed ATTACH PARTITION usage_analytics.%I '
                           'FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
            PERFORM usage_analytics._hide_statistics(format('usage_analytics.%I', part)::regclass);
            PERFORM usage_analytics._hide_index_statistics(format('usage_analytics.%I', part)::regclass);
            EXECUTE format('REVOKE ALL ON usage_analytics.%I FROM PUBLIC', part);
            IF EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = format('usage_analytics.%I', part)::regclass
                          AND d.deptype = 'e') THEN
                EXECUTE format('ALTER EXTENSION pg_usage_analytics DROP TABLE usage_analytics.%I', part);
            END IF;
            created := created + 1;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'ensure_partitions: % not created: its locks were not granted within lock_timeout '
                          '(a long transaction holds the default partition); the next run retries', part;
        END;
    END LOOP;
    RETURN created;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.ensure_partitions FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.ensure_partitions TO usage_analytics_admin;

-- A restore runs CREATE EXTENSION and then recreates the dumped partitions.
SELECT usage_analytics.ensure_partitions() WHERE NOT usage_analytics._restoring();
