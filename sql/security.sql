-- Security: roles, identity, row-level security, admin actions and audit.
-- Runs last in the install script, so it covers every object created before.
--
-- Model:
--  * usage_analytics_admin  sees and manages everything (pricing, roles, rollups, partitions);
--  * usage_analytics_writer records usage (track_detailed_usage, INSERT) and reads nothing;
--  * usage_analytics_reader reads its own user's rows;
--  * usage_analytics_monitor reads the exporter's aggregates (no usage rows);
--  * usage_analytics_app    marks a trusted application connection, which may
--    say which end user it acts for (see current_user_id()).
-- The end user a session acts for is current_user_id(): a role mapped in
-- user_role_map is that user, always; otherwise, for members of
-- usage_analytics_app only, the transaction setting usage_analytics.user_id
-- or the sub of request.jwt.claims (PostgREST/Supabase); otherwise NULL
-- (acts for nobody, sees nothing): identity fails closed.

-- The extension's group roles, the one list every check uses.
CREATE FUNCTION usage_analytics._group_roles() RETURNS name[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['usage_analytics_admin', 'usage_analytics_writer', 'usage_analytics_reader',
                 'usage_analytics_monitor', 'usage_analytics_app']::name[]
$$;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY usage_analytics._group_roles() LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by an install in another database
            END;
        END IF;
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- Identity

CREATE FUNCTION usage_analytics.is_admin()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT pg_has_role(usage_analytics.acting_role(), 'usage_analytics_admin', 'MEMBER')
$$;

CREATE FUNCTION usage_analytics.current_user_id()
RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    mapped  uuid;
    setting text;
    claims  text;
BEGIN
    -- A mapped role is its user whatever the settings say: the login role
    -- first (so SET ROLE cannot shed the mapping), then the acting role.
    SELECT m.user_id INTO mapped FROM usage_analytics.user_role_map m WHERE m.role_name = session_user;
    IF mapped IS NULL THEN
        SELECT m.user_id INTO mapped FROM usage_analytics.user_role_map m
         WHERE m.role_name = usage_analytics.acting_role();
    END IF;
    IF mapped IS NOT NULL THEN
        RETURN mapped;
    END IF;
    -- Only a trusted application connection may say whom it acts for.
    IF NOT (pg_has_role(session_user, 'usage_analytics_app', 'MEMBER')
            OR pg_has_role(usage_analytics.acting_role(), 'usage_analytics_app', 'MEMBER')) THEN
        RETURN NULL;
    END IF;
    setting := nullif(btrim(current_setting('usage_analytics.user_id', true)), '');
    IF setting IS NOT NULL THEN
        BEGIN
            RETURN setting::uuid;
        EXCEPTION WHEN invalid_text_representation THEN
            RAISE EXCEPTION 'usage_analytics.user_id is not a valid uuid: %', setting
                USING ERRCODE = 'invalid_parameter_value';
        END;
    END IF;
    claims := nullif(current_setting('request.jwt.claims', true), '');
    IF claims IS NOT NULL THEN
        BEGIN
            RETURN (claims::jsonb ->> 'sub')::uuid;
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN NULL;  -- a claim that is not a uuid identifies nobody
        END;
    END IF;
    RETURN NULL;
END;
$$;

-- ---------------------------------------------------------------------------
-- Audit log: append-only for everyone (admins only read it; the owner can
-- still disable the trigger deliberately).

CREATE FUNCTION usage_analytics._refuse_audit_change()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER refuse_update_delete BEFORE UPDATE OR DELETE ON usage_analytics.admin_audit_log
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._refuse_audit_change();
CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON usage_analytics.admin_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._refuse_audit_change();

-- Records every change to pricing and to the role map, by whoever made it.
CREATE FUNCTION usage_analytics._audit_change()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    changed jsonb := coalesce(to_jsonb(NEW), to_jsonb(OLD));
BEGIN
    IF usage_analytics._restoring() THEN
        RETURN NULL;  -- a restore loads the dumped audit log as it was
    END IF;
    INSERT INTO usage_analytics.admin_audit_log (actor_role, actor_user_id, action, target, details)
    VALUES (usage_analytics.acting_role(), usage_analytics.current_user_id(),
            lower(TG_OP) || ' ' || TG_TABLE_NAME,
            coalesce(changed ->> 'role_name', (changed ->> 'provider') || '/' || coalesce(changed ->> 'model', '')),
            jsonb_strip_nulls(jsonb_build_object('old', to_jsonb(OLD), 'new', to_jsonb(NEW))));
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_change AFTER INSERT OR UPDATE OR DELETE ON usage_analytics.model_pricing
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._audit_change();
CREATE TRIGGER audit_change AFTER INSERT OR UPDATE OR DELETE ON usage_analytics.provider_default_model
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._audit_change();
CREATE TRIGGER audit_change AFTER INSERT OR UPDATE OR DELETE ON usage_analytics.user_role_map
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._audit_change();

-- Rows CREATE EXTENSION installed (seeded) are recreated by every install,
-- but pg_dump dumps these tables whole, so that admin changes to installed
-- rows survive a restore. While a dump loads (_restoring()), a dumped row
-- replaces the installed row it collides with. Outside restores, changing
-- an installed row marks it as no longer seeded.
CREATE FUNCTION usage_analytics._keep_installed_rows_restorable() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' AND usage_analytics._restoring() THEN
        IF TG_TABLE_NAME = 'model_pricing' THEN
            DELETE FROM usage_analytics.model_pricing p
             WHERE p.id = NEW.id
                OR (p.provider, p.model, p.effective_from) = (NEW.provider, NEW.model, NEW.effective_from);
        ELSE
            DELETE FROM usage_analytics.provider_default_model d WHERE d.provider = NEW.provider;
        END IF;
    ELSIF TG_OP = 'UPDATE' AND OLD.seeded AND NOT usage_analytics._restoring() THEN
        NEW.seeded := false;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER keep_installed_rows_restorable BEFORE INSERT OR UPDATE ON usage_analytics.model_pricing
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._keep_installed_rows_restorable();
CREATE TRIGGER keep_installed_rows_restorable BEFORE INSERT OR UPDATE ON usage_analytics.provider_default_model
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._keep_installed_rows_restorable();

-- ---------------------------------------------------------------------------
-- Admin actions

CREATE FUNCTION usage_analytics._require_admin(action text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT usage_analytics.is_admin() THEN
        RAISE EXCEPTION 'permission denied: % requires membership of usage_analytics_admin (acting role %)',
            action, usage_analytics.acting_role()
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END;
$$;

CREATE FUNCTION usage_analytics._set_admin(role_name name, make_admin boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    action text := CASE WHEN make_admin THEN 'grant_admin' ELSE 'revoke_admin' END;
BEGIN
    PERFORM usage_analytics._require_admin(action);
    IF role_name IS NULL OR NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name) THEN
        RAISE EXCEPTION '%: role % does not exist', action, coalesce(quote_ident(role_name), 'NULL')
            USING ERRCODE = 'undefined_object';
    END IF;
    IF role_name = ANY (usage_analytics._group_roles()) THEN
        RAISE EXCEPTION '%: % is one of the extension''s group roles', action, role_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF make_admin THEN
        EXECUTE format('GRANT usage_analytics_admin TO %I', role_name);
    ELSE
        EXECUTE format('REVOKE usage_analytics_admin FROM %I', role_name);
    END IF;
    INSERT INTO usage_analytics.admin_audit_log (actor_role, actor_user_id, action, target, details)
    VALUES (usage_analytics.acting_role(), usage_analytics.current_user_id(), action, role_name,
            jsonb_build_object('session_user', session_user));
END;
$$;

-- Only admins may promote or demote; the first admin is granted by a
-- superuser with a plain GRANT usage_analytics_admin TO <role>.
CREATE FUNCTION usage_analytics.grant_admin(role_name name)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM usage_analytics._require_admin('grant_admin');
    PERFORM usage_analytics._set_admin(role_name, true);
END;
$$;

CREATE FUNCTION usage_analytics.revoke_admin(role_name name)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM usage_analytics._require_admin('revoke_admin');
    PERFORM usage_analytics._set_admin(role_name, false);
END;
$$;

-- Adds a dated price row (audited by the trigger on model_pricing). The
-- previous open row for the model is closed at effective_from.
CREATE FUNCTION usage_analytics.set_model_price(provider text, model text, input_usd_per_1k numeric,
                                                output_usd_per_1k numeric,
                                                effective_from timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    p text := lower(btrim(provider));
    m text := lower(btrim(model));
BEGIN
    PERFORM usage_analytics._require_admin('set_model_price');
    IF p IS NULL OR p = '' THEN
        RAISE EXCEPTION 'set_model_price: provider must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF m IS NULL OR m = '' THEN
        RAISE EXCEPTION 'set_model_price: model must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF input_usd_per_1k IS NULL OR input_usd_per_1k < 0 OR output_usd_per_1k IS NULL OR output_usd_per_1k < 0 THEN
        RAISE EXCEPTION 'set_model_price: prices must be >= 0, got input % and output %',
            coalesce(input_usd_per_1k::text, 'NULL'), coalesce(output_usd_per_1k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF input_usd_per_1k > 1000000 OR output_usd_per_1k > 1000000 THEN
        RAISE EXCEPTION 'set_model_price: prices must be at most 1000000 USD per 1k tokens, got input % and output %',
            input_usd_per_1k, output_usd_per_1k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scale(input_usd_per_1k) > 12 OR scale(output_usd_per_1k) > 12 THEN
        RAISE EXCEPTION 'set_model_price: prices may have at most 12 decimal places'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF effective_from IS NULL OR NOT isfinite(effective_from) THEN
        RAISE EXCEPTION 'set_model_price: effective_from must be a finite timestamp'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO usage_analytics.model_pricing AS mp (provider, model, input_usd_per_1k, output_usd_per_1k, effective_from)
    VALUES (p, m, input_usd_per_1k, output_usd_per_1k, set_model_price.effective_from)
    ON CONFLICT ON CONSTRAINT model_pricing_provider_model_effective_from_key DO UPDATE
        SET input_usd_per_1k = excluded.input_usd_per_1k, output_usd_per_1k = excluded.output_usd_per_1k;
END;
$$;

-- ---------------------------------------------------------------------------
-- The seed's "test page": one row per check of the installation.

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
    SELECT string_agg(m, ', ') INTO missing
      FROM unnest(ARRAY['gpt-4o', 'gpt-4o-mini', 'gpt-4-turbo', 'gpt-3.5-turbo', 'claude-3-5-sonnet',
                        'claude-3-opus', 'claude-3-haiku', 'llama-3.1-sonar-small-128k-online',
                        'llama-3.1-sonar-large-128k-online', 'llama-3.1-sonar-huge-128k-online',
                        'gemini-1.5-pro', 'gemini-1.5-flash']) AS m
     WHERE usage_analytics.calculate_cost(NULL, m, 1000, 1000) IS NULL;
    RETURN QUERY SELECT 'pricing_seeded', missing IS NULL,
        coalesce('no price in force for ' || missing, 'all 12 seed models priced');

    SELECT string_agg(d.provider || ' -> ' || d.model, ', ') INTO missing
      FROM usage_analytics.provider_default_model d
     WHERE usage_analytics.calculate_cost(d.provider, NULL, 1000, 1000) IS NULL;
    RETURN QUERY SELECT 'default_models_priced', missing IS NULL,
        coalesce('unpriced defaults: ' || missing, 'every provider default model is priced');

    RETURN QUERY SELECT 'model_detection',
        usage_analytics.resolve_model('openai', 'gpt-4o-mini-2024-07-18') = 'gpt-4o-mini'
        AND usage_analytics.resolve_model('anthropic', 'claude-3.5-sonnet') = 'claude-3-5-sonnet'
        AND usage_analytics.resolve_model('openai', 'no-such-model') IS NULL,
        'dated, dotted and unknown model names resolve as documented';

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

-- ---------------------------------------------------------------------------
-- Row-level security. Policies call current_user_id() through a scalar
-- subquery, so it runs once per query (an InitPlan) and the
-- (user_id, "timestamp") index stays usable.

ALTER TABLE usage_analytics.agent_usage_detailed ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON usage_analytics.agent_usage_detailed FOR SELECT
    USING (user_id = (SELECT usage_analytics.current_user_id()));
CREATE POLICY admin_all ON usage_analytics.agent_usage_detailed FOR SELECT TO usage_analytics_admin
    USING (true);
CREATE POLICY record_usage ON usage_analytics.agent_usage_detailed FOR INSERT
    TO usage_analytics_writer, usage_analytics_admin
    WITH CHECK (true);

ALTER TABLE usage_analytics.agent_performance_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON usage_analytics.agent_performance_metrics FOR SELECT
    USING (user_id = (SELECT usage_analytics.current_user_id()));
CREATE POLICY admin_all ON usage_analytics.agent_performance_metrics FOR SELECT TO usage_analytics_admin
    USING (true);

ALTER TABLE usage_analytics.system_analytics ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_only ON usage_analytics.system_analytics FOR SELECT TO usage_analytics_admin USING (true);

ALTER TABLE usage_analytics.admin_audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_only ON usage_analytics.admin_audit_log FOR SELECT TO usage_analytics_admin USING (true);

ALTER TABLE usage_analytics.user_role_map ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_mapping ON usage_analytics.user_role_map FOR SELECT
    USING (role_name IN (session_user, current_user));
CREATE POLICY admin_all ON usage_analytics.user_role_map FOR ALL TO usage_analytics_admin
    USING (true) WITH CHECK (true);

ALTER TABLE usage_analytics.model_pricing ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON usage_analytics.model_pricing FOR SELECT USING (true);
CREATE POLICY admin_write ON usage_analytics.model_pricing FOR ALL TO usage_analytics_admin
    USING (true) WITH CHECK (true);

ALTER TABLE usage_analytics.provider_default_model ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON usage_analytics.provider_default_model FOR SELECT USING (true);
CREATE POLICY admin_write ON usage_analytics.provider_default_model FOR ALL TO usage_analytics_admin
    USING (true) WITH CHECK (true);

ALTER TABLE usage_analytics.usage_daily_totals ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_only ON usage_analytics.usage_daily_totals FOR SELECT TO usage_analytics_admin USING (true);

-- Internal aggregates: only the owner, the SECURITY DEFINER functions and
-- (for usage_daily_user, which system-wide summaries read) admins.
ALTER TABLE usage_analytics.usage_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.usage_daily_user ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.usage_daily_user FOR SELECT TO usage_analytics_admin USING (true);
ALTER TABLE usage_analytics.rollup_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.maintenance_lock ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.usage_series ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.active_user_sketches ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.rollup_state FOR SELECT TO usage_analytics_admin USING (true);

-- ---------------------------------------------------------------------------
-- Privileges: nothing by default, then exactly what each role needs.

REVOKE ALL ON ALL TABLES IN SCHEMA usage_analytics FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA usage_analytics FROM PUBLIC;

GRANT USAGE ON SCHEMA usage_analytics
    TO usage_analytics_admin, usage_analytics_writer, usage_analytics_reader, usage_analytics_monitor;

-- Functions anyone with schema access may call (they run as the caller, or
-- reveal nothing beyond the caller's own rows).
GRANT EXECUTE ON FUNCTION
    usage_analytics.resolve_model(text, text),
    usage_analytics.calculate_cost(text, text, bigint, bigint, timestamptz),
    usage_analytics.current_user_id(),
    usage_analytics.is_admin(),
    usage_analytics.acting_role(),
    usage_analytics.check_filters(jsonb),
    usage_analytics._filter_timestamp(jsonb, text),
    usage_analytics._filter_text(jsonb, text),
    usage_analytics._filter_uuid(jsonb, text),
    usage_analytics._filter_success(jsonb),
    usage_analytics._filter_rollup_compatible(jsonb),
    usage_analytics._usage_matches(usage_analytics.agent_usage_detailed, jsonb),
    usage_analytics._rollup_matches(usage_analytics.agent_performance_metrics, jsonb),
    usage_analytics._rollup_coverage(date, date),
    usage_analytics._fresh_rollup_days(date, date),
    usage_analytics._usage_fact_plan(jsonb),
    usage_analytics._usage_facts(jsonb, date[], timestamptz[], timestamptz[]),
    usage_analytics.get_usage_records(jsonb, integer, integer),
    usage_analytics.get_usage_summary(jsonb),
    usage_analytics.usage_trend(text, jsonb),
    usage_analytics.export_usage_csv(jsonb),
    usage_analytics.usage_export(jsonb),
    usage_analytics.self_test(),
    usage_analytics._require_admin(text),
    usage_analytics.grant_admin(name),
    usage_analytics.revoke_admin(name),
    usage_analytics.metrics_response_time_bucket_bounds()
TO PUBLIC;

-- Pricing is public knowledge and every insert path reads it.
GRANT SELECT ON usage_analytics.model_pricing, usage_analytics.provider_default_model TO PUBLIC;
-- Each role can look up its own mapping (policy own_mapping).
GRANT SELECT ON usage_analytics.user_role_map TO PUBLIC;

GRANT SELECT ON usage_analytics.agent_usage_detailed, usage_analytics.agent_performance_metrics
    TO usage_analytics_reader, usage_analytics_admin;
GRANT INSERT ON usage_analytics.agent_usage_detailed TO usage_analytics_writer, usage_analytics_admin;
GRANT EXECUTE ON FUNCTION
    usage_analytics.track_detailed_usage(uuid, text, text, text, text, text, integer, integer, integer,
                                         boolean, text, jsonb, text)
    TO usage_analytics_writer, usage_analytics_admin;

GRANT EXECUTE ON FUNCTION
    usage_analytics.metrics_usage_counters(),
    usage_analytics.metrics_active_users(),
    usage_analytics.metrics_top_users(integer),
    usage_analytics.metrics_rollup_last_success()
    TO usage_analytics_monitor, usage_analytics_admin;

GRANT SELECT ON usage_analytics.system_analytics, usage_analytics.admin_audit_log,
                usage_analytics.rollup_state, usage_analytics.usage_daily_totals, usage_analytics.usage_daily_user
    TO usage_analytics_admin;
GRANT INSERT, UPDATE, DELETE ON usage_analytics.model_pricing, usage_analytics.provider_default_model,
                                usage_analytics.user_role_map
    TO usage_analytics_admin;
GRANT EXECUTE ON FUNCTION
    usage_analytics._set_admin(name, boolean),
    usage_analytics.set_model_price(text, text, numeric, numeric, timestamptz),
    usage_analytics.rollup_daily(date),
    usage_analytics.rollup_range(date, date),
    usage_analytics.run_scheduled_maintenance(),
    usage_analytics._compact_bookkeeping(),
    usage_analytics.ensure_partitions(integer, integer),
    usage_analytics.schedule_rollups(text)
    TO usage_analytics_admin;
GRANT EXECUTE ON PROCEDURE usage_analytics.run_maintenance() TO usage_analytics_admin;
REVOKE ALL ON PROCEDURE usage_analytics.run_maintenance() FROM PUBLIC;

-- pg_dump: the extension's tables hold user data, so their rows are dumped
-- (a restore recreates the tables with CREATE EXTENSION, then loads the rows
-- with every trigger standing aside: see _restoring()). The pricing tables
-- are dumped whole: a dumped row replaces the installed row it collides
-- with (_keep_installed_rows_restorable). maintenance_lock holds only
-- install-time rows and is not dumped. One call per statement: each call
-- updates the pg_extension row.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relkind IN ('r', 'S')
                AND c.relname <> 'maintenance_lock'
                AND EXISTS (SELECT 1 FROM pg_depend d
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t, '');
    END LOOP;
END;
$$;
