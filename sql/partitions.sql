-- Monthly partitions of agent_usage_detailed (UTC months).

-- Creates the monthly partitions from months_back before the current month to
-- months_ahead after it; returns how many it created. Rows that had landed
-- in the default partition for a month being created are moved into it.
-- New partitions get no grants: nobody but the owner reads a partition
-- directly (row-level security is enforced on the parent only).
CREATE FUNCTION usage_analytics.ensure_partitions(months_ahead integer DEFAULT 3, months_back integer DEFAULT 1)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    month_start date;
    lo          timestamptz;
    hi          timestamptz;
    part        text;
    columns     text;
    created     integer := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'ensure_partitions: months_ahead must be between 0 and 120, got %',
            coalesce(months_ahead::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF months_back IS NULL OR months_back < 0 OR months_back > 600 THEN
        RAISE EXCEPTION 'ensure_partitions: months_back must be between 0 and 600, got %',
            coalesce(months_back::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One creator at a time (pg_cron and an admin may run it together).
    PERFORM pg_advisory_xact_lock(hashtext('usage_analytics.ensure_partitions'));

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
        IF EXISTS (SELECT 1 FROM usage_analytics.agent_usage_detailed_default
                    WHERE "timestamp" >= lo AND "timestamp" < hi) THEN
            -- Move the month's rows out of the default partition, then attach.
            EXECUTE format('CREATE TABLE usage_analytics.%I (LIKE usage_analytics.agent_usage_detailed '
                           'INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)', part);
            EXECUTE format('INSERT INTO usage_analytics.%I (%s) SELECT %s FROM usage_analytics.agent_usage_detailed_default '
                           'WHERE "timestamp" >= $1 AND "timestamp" < $2', part, columns, columns)
                USING lo, hi;
            DELETE FROM usage_analytics.agent_usage_detailed_default WHERE "timestamp" >= lo AND "timestamp" < hi;
            EXECUTE format('ALTER TABLE usage_analytics.agent_usage_detailed ATTACH PARTITION usage_analytics.%I '
                           'FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        ELSE
            EXECUTE format('CREATE TABLE usage_analytics.%I PARTITION OF usage_analytics.agent_usage_detailed '
                           'FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        END IF;
        EXECUTE format('REVOKE ALL ON usage_analytics.%I FROM PUBLIC', part);
        created := created + 1;
    END LOOP;
    RETURN created;
END;
$$;

SELECT usage_analytics.ensure_partitions();
