-- self_test(): the installation's "test page", one row per check.

CREATE FUNCTION usage_analytics.self_test()
RETURNS TABLE (check_name text, ok boolean, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    missing text;
    n       bigint;
    has_cron boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron');
    job_active boolean;
BEGIN
    SELECT string_agg(p.provider || '/' || p.model, ', ') INTO missing
      FROM (SELECT DISTINCT provider, model FROM usage_analytics.model_pricing
             WHERE seeded AND service_tier = 'standard'
               AND usage_analytics.calculate_cost(provider, model, 1000, 1000) IS NULL) p;
    RETURN QUERY SELECT 'pricing_installed', missing IS NULL,
        coalesce('no price in force for ' || missing,
                 (SELECT count(DISTINCT (provider, model)) FROM usage_analytics.model_pricing WHERE seeded)
                 || ' installed models priced (the original twelve and the shipped catalog)');

    SELECT string_agg(d.provider || ' -> ' || d.model, ', ') INTO missing
      FROM usage_analytics.provider_default_model d
     WHERE usage_analytics.calculate_cost(d.provider, NULL, 1000, 1000) IS NULL;
    RETURN QUERY SELECT 'default_models_priced', missing IS NULL,
        coalesce('unpriced defaults: ' || missing, 'every provider default model is priced');

    RETURN QUERY SELECT 'model_detection',
        usage_analytics.resolve_model('openai', 'OpenAI/GPT-4o') = 'gpt-4o'
        AND usage_analytics.resolve_model('anthropic', 'claude-3.5-sonnet') = 'claude-3-5-sonnet'
        AND usage_analytics.resolve_model('openai', 'gpt-4o-mini-2024-07-18') IS NOT NULL
        AND usage_analytics.resolve_model('openai', 'no-such-model') IS NULL,
        'prefixed, dotted, dated and unknown model names resolve as documented';

    SELECT string_agg(c.relname, ', ') INTO missing
      FROM pg_class c
     WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relkind IN ('r', 'p')
       AND NOT c.relispartition AND NOT c.relrowsecurity;
    RETURN QUERY SELECT 'row_level_security', missing IS NULL,
        coalesce('RLS disabled on ' || missing, 'enabled on every table');

    SELECT string_agg(c.relname, ', ') INTO missing
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass
       AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner);
    RETURN QUERY SELECT 'partitions_private', missing IS NULL,
        coalesce('partitions readable by others: ' || missing, 'no grants on any partition');

    SELECT string_agg(to_char(m, 'YYYY-MM'), ', ') INTO missing
      FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                           date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months',
                           interval '1 month') AS m
     WHERE to_regclass(format('usage_analytics.agent_usage_detailed_p%s', to_char(m, 'YYYY_MM'))) IS NULL;
    RETURN QUERY SELECT 'partitions_ahead', missing IS NULL,
        coalesce('missing monthly partitions: ' || missing || ' (run ensure_partitions())',
                 'this month and the next two exist');

    -- Counts across all users are for admins only.
    IF usage_analytics.is_admin() THEN
        SELECT count(*) INTO n FROM usage_analytics.agent_usage_detailed_default;
        RETURN QUERY SELECT 'default_partition', true,
            n || ' rows outside the monthly partitions'
            || CASE WHEN n > 0 THEN ' (ensure_partitions(months_ahead, months_back) moves them)' ELSE '' END;
    END IF;

    SELECT string_agg(r, ', ') INTO missing
      FROM unnest(usage_analytics._group_roles()) AS r
     WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
    RETURN QUERY SELECT 'roles', missing IS NULL,
        coalesce('missing roles: ' || missing, 'all ' || cardinality(usage_analytics._group_roles()) || ' group roles exist');

    IF usage_analytics.is_admin() THEN
        SELECT string_agg(a.role_name::text, ', ' ORDER BY a.role_name) INTO missing FROM usage_analytics.admin_roles a;
        RETURN QUERY SELECT 'admin_scope', true,
            'admin rights are per database; admins here: ' || coalesce(missing, 'none but superusers')
            || ' (grant_admin/revoke_admin in each database)';
        SELECT string_agg(m.rolname, ', ' ORDER BY m.rolname) INTO missing
          FROM pg_roles m
         WHERE pg_has_role(m.oid, 'usage_analytics_app', 'MEMBER') AND m.rolname <> 'usage_analytics_app'
           AND m.rolcanlogin;
        RETURN QUERY SELECT 'trusted_app_logins', true,
            coalesce('logins that may act for any user through the setting or a JWT: ' || missing,
                     'no login is a trusted application; unmapped roles act for nobody');
    END IF;

    IF has_cron THEN
        EXECUTE 'SELECT bool_or(active) FROM cron.job WHERE jobname = $1'
            INTO job_active USING 'usage_analytics_rollups';
    END IF;
    RETURN QUERY SELECT 'pg_cron_job', coalesce(job_active, true),
        CASE WHEN NOT has_cron THEN 'pg_cron not installed in this database (rollups scheduled elsewhere or by hand)'
             WHEN job_active IS NULL THEN 'pg_cron installed, rollups not scheduled yet: SELECT usage_analytics.schedule_rollups()'
             WHEN job_active THEN 'job usage_analytics_rollups scheduled and active'
             ELSE 'job usage_analytics_rollups exists but is inactive' END;

    RETURN QUERY SELECT 'rollups_fresh',
        job_active IS NULL OR NOT job_active
        OR EXISTS (SELECT 1 FROM usage_analytics.rollup_state WHERE rolled_at > now() - interval '1 day'),
        coalesce('last rollup at ' || (SELECT max(rolled_at) FROM usage_analytics.rollup_state)::text,
                 'no rollup has run yet');
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.self_test FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.self_test TO PUBLIC;
