-- Admin actions: promotion and demotion, prices. Each checks that the
-- calling role (acting_role(), not the definer) is an admin, and is audited.

CREATE FUNCTION usage_analytics._require_admin(action text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT usage_analytics.is_admin() THEN
        RAISE EXCEPTION 'permission denied: % requires admin rights in this database (usage_analytics.grant_admin) (acting role %)',
            action, usage_analytics.acting_role()
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._require_admin FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._require_admin TO PUBLIC;

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
    -- The group gives the privileges, the per-database list (is_admin())
    -- decides in which databases they count: revoking touches only the
    -- list, so the role stays an admin wherever else it was made one.
    IF make_admin THEN
        EXECUTE format('GRANT usage_analytics_admin TO %I', role_name);
        INSERT INTO usage_analytics.admin_roles (role_name) VALUES (role_name) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM usage_analytics.admin_roles a WHERE a.role_name = _set_admin.role_name;
    END IF;
    PERFORM usage_analytics._audit(action, role_name,
            jsonb_build_object('session_user', session_user));
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._set_admin FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._set_admin TO usage_analytics_admin;

-- Only admins may promote or demote; the first admin of each database is
-- made by a superuser calling grant_admin there (a plain GRANT of the group
-- is not enough: is_admin() also asks for this database's admin_roles).
CREATE FUNCTION usage_analytics.grant_admin(role_name name)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM usage_analytics._require_admin('grant_admin');
    PERFORM usage_analytics._set_admin(role_name, true);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.grant_admin FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.grant_admin TO PUBLIC;

CREATE FUNCTION usage_analytics.revoke_admin(role_name name)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM usage_analytics._require_admin('revoke_admin');
    PERFORM usage_analytics._set_admin(role_name, false);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.revoke_admin FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.revoke_admin TO PUBLIC;

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
    ON CONFLICT ON CONSTRAINT model_pricing_key DO UPDATE
        SET input_usd_per_1k = excluded.input_usd_per_1k, output_usd_per_1k = excluded.output_usd_per_1k;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.set_model_price FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.set_model_price TO usage_analytics_admin;
