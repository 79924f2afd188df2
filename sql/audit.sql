-- The audit log: append-only, and who changed prices, default models and
-- the role map, recorded by triggers. Restores stand aside (_restoring()).

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
REVOKE ALL ON FUNCTION usage_analytics._refuse_audit_change FROM PUBLIC;

CREATE TRIGGER refuse_update_delete BEFORE UPDATE OR DELETE ON usage_analytics.admin_audit_log
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._refuse_audit_change();
CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON usage_analytics.admin_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._refuse_audit_change();

-- Appends one entry, by the acting role (and its mapped user): every
-- audited admin action and _audit_change below write through it. Its
-- callers are SECURITY DEFINER, so it runs as the extension's owner.
CREATE FUNCTION usage_analytics._audit(audited_action text, audited_target text, audited_details jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    INSERT INTO usage_analytics.admin_audit_log (actor_role, actor_user_id, action, target, details)
    VALUES (usage_analytics.acting_role(), usage_analytics.current_user_id(),
            audited_action, audited_target, audited_details);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._audit FROM PUBLIC;

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
    PERFORM usage_analytics._audit(lower(TG_OP) || ' ' || TG_TABLE_NAME,
            coalesce(changed ->> 'role_name', (changed ->> 'provider') || '/' || coalesce(changed ->> 'model', '')),
            jsonb_strip_nulls(jsonb_build_object('old', to_jsonb(OLD), 'new', to_jsonb(NEW))));
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._audit_change FROM PUBLIC;

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
                OR (p.provider, p.model, p.service_tier, p.effective_from)
                   = (NEW.provider, NEW.model, NEW.service_tier, NEW.effective_from);
        ELSIF TG_TABLE_NAME = 'model_tiers' THEN
            DELETE FROM usage_analytics.model_tiers t WHERE (t.provider, t.model) = (NEW.provider, NEW.model);
        ELSE
            DELETE FROM usage_analytics.provider_default_model d WHERE d.provider = NEW.provider;
        END IF;
    ELSIF TG_OP = 'UPDATE' AND TG_TABLE_NAME <> 'model_tiers' THEN
        -- Nested: OLD.seeded exists only in the pricing tables.
        IF OLD.seeded AND NOT usage_analytics._restoring() THEN
            NEW.seeded := false;
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._keep_installed_rows_restorable FROM PUBLIC;

CREATE TRIGGER keep_installed_rows_restorable BEFORE INSERT OR UPDATE ON usage_analytics.model_pricing
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._keep_installed_rows_restorable();
CREATE TRIGGER keep_installed_rows_restorable BEFORE INSERT OR UPDATE ON usage_analytics.provider_default_model
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._keep_installed_rows_restorable();
