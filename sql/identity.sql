-- Identity: who is acting (is_admin) and for which end user (current_user_id).

-- Admin rights are per database: a superuser, or a member of
-- usage_analytics_admin whose login or role in effect is (or belongs to) a
-- role listed in this database's admin_roles. SECURITY DEFINER to read that
-- list; it reveals only a boolean about the caller (acting_role() and
-- session_user are the caller's, inside a definer function too).
CREATE FUNCTION usage_analytics.is_admin()
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = usage_analytics.acting_role()), false)
        OR (pg_has_role(usage_analytics.acting_role(), 'usage_analytics_admin', 'MEMBER')
            AND EXISTS (SELECT 1 FROM usage_analytics.admin_roles a
                         WHERE pg_has_role(usage_analytics.acting_role(), a.role_name, 'MEMBER')
                            -- a listed login that SET ROLE to the group itself
                            OR (usage_analytics.acting_role() = 'usage_analytics_admin'
                                AND pg_has_role(session_user, a.role_name, 'MEMBER'))))
$$;
REVOKE ALL ON FUNCTION usage_analytics.is_admin FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.is_admin TO PUBLIC;

-- Whether this session reads every user's
-- rows: admins and auditors. Only picks the fastest exact source (the
-- system-wide per-day tables); what a session may read is still decided by
-- privileges and row-level security. is_admin() stays false for auditors.
CREATE FUNCTION usage_analytics._sees_all()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT usage_analytics.is_admin()
        OR pg_has_role(usage_analytics.acting_role(), 'usage_analytics_auditor', 'MEMBER')
$$;
REVOKE ALL ON FUNCTION usage_analytics._sees_all FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._sees_all TO PUBLIC;

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
REVOKE ALL ON FUNCTION usage_analytics.current_user_id FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.current_user_id TO PUBLIC;
