-- Roles: the extension's group roles, created once per cluster (the first
-- install in any database creates them). Runs first in the install script,
-- so every file can grant beside what it creates.
--
-- Model:
--  * usage_analytics_admin  sees and manages everything (pricing, roles, rollups, partitions);
--  * usage_analytics_writer records usage (track_detailed_usage, INSERT) and reads nothing;
--  * usage_analytics_reader reads its own user's rows;
--  * usage_analytics_monitor reads the exporter's aggregates (no usage rows);
--  * usage_analytics_auditor reads every user's rows and rollups, changes nothing
--    (read-only tools such as Grafana's PostgreSQL data source);
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
                 'usage_analytics_monitor', 'usage_analytics_app', 'usage_analytics_auditor']::name[]
$$;
REVOKE ALL ON FUNCTION usage_analytics._group_roles FROM PUBLIC;

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

GRANT USAGE ON SCHEMA usage_analytics
    TO usage_analytics_admin, usage_analytics_writer, usage_analytics_reader, usage_analytics_monitor,
       usage_analytics_auditor;
