-- Row-level security and table privileges: nothing by default, then
-- exactly what each role needs. Runs after every table exists.

-- subquery, so it runs once per query (an InitPlan) and the
-- (user_id, "timestamp") index stays usable.

ALTER TABLE usage_analytics.agent_usage_detailed ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON usage_analytics.agent_usage_detailed FOR SELECT
    USING (user_id = (SELECT usage_analytics.current_user_id()));
CREATE POLICY admin_all ON usage_analytics.agent_usage_detailed FOR SELECT TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin()));
CREATE POLICY record_usage ON usage_analytics.agent_usage_detailed FOR INSERT
    TO usage_analytics_writer, usage_analytics_admin
    WITH CHECK (true);

ALTER TABLE usage_analytics.agent_performance_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON usage_analytics.agent_performance_metrics FOR SELECT
    USING (user_id = (SELECT usage_analytics.current_user_id()));
CREATE POLICY admin_all ON usage_analytics.agent_performance_metrics FOR SELECT TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin()));

ALTER TABLE usage_analytics.system_analytics ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_only ON usage_analytics.system_analytics FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));

ALTER TABLE usage_analytics.admin_audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_only ON usage_analytics.admin_audit_log FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));

ALTER TABLE usage_analytics.user_role_map ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_mapping ON usage_analytics.user_role_map FOR SELECT
    USING (role_name IN (session_user, current_user));
CREATE POLICY admin_all ON usage_analytics.user_role_map FOR ALL TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin())) WITH CHECK ((SELECT usage_analytics.is_admin()));

ALTER TABLE usage_analytics.model_pricing ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON usage_analytics.model_pricing FOR SELECT USING (true);
CREATE POLICY admin_write ON usage_analytics.model_pricing FOR ALL TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin())) WITH CHECK ((SELECT usage_analytics.is_admin()));

ALTER TABLE usage_analytics.provider_default_model ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON usage_analytics.provider_default_model FOR SELECT USING (true);
CREATE POLICY admin_write ON usage_analytics.provider_default_model FOR ALL TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin())) WITH CHECK ((SELECT usage_analytics.is_admin()));

ALTER TABLE usage_analytics.usage_daily_totals ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_only ON usage_analytics.usage_daily_totals FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));

-- Internal aggregates: only the owner, the SECURITY DEFINER functions and
-- (for usage_daily_user, which system-wide summaries read) admins.
ALTER TABLE usage_analytics.usage_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.usage_daily_user ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.usage_daily_user FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));
ALTER TABLE usage_analytics.rollup_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.maintenance_lock ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.admin_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.admin_roles FOR SELECT TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin()));
GRANT SELECT ON usage_analytics.admin_roles TO usage_analytics_admin;
ALTER TABLE usage_analytics.usage_series ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.active_user_sketches ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.search_texts ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.rollup_state FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));

REVOKE ALL ON ALL TABLES IN SCHEMA usage_analytics FROM PUBLIC;
-- Pricing is public knowledge and every insert path reads it; the model
-- tiers too (cost_recommendations runs as its caller).
GRANT SELECT ON usage_analytics.model_pricing, usage_analytics.provider_default_model,
    usage_analytics.model_tiers TO PUBLIC;
-- Each role can look up its own mapping (policy own_mapping).
GRANT SELECT ON usage_analytics.user_role_map TO PUBLIC;
GRANT SELECT ON usage_analytics.agent_usage_detailed, usage_analytics.agent_performance_metrics
    TO usage_analytics_reader, usage_analytics_admin;
GRANT INSERT ON usage_analytics.agent_usage_detailed TO usage_analytics_writer, usage_analytics_admin;
GRANT SELECT ON usage_analytics.system_analytics, usage_analytics.admin_audit_log,
                usage_analytics.rollup_state, usage_analytics.usage_daily_totals, usage_analytics.usage_daily_user
    TO usage_analytics_admin;
GRANT INSERT, UPDATE, DELETE ON usage_analytics.model_pricing, usage_analytics.provider_default_model,
                                usage_analytics.user_role_map
    TO usage_analytics_admin;

-- The auditor (read-only tools such as Grafana's PostgreSQL data source):
-- every user's rows, the rollups and the per-day tables the fast paths
-- read, and nothing else: no INSERT, UPDATE or DELETE anywhere, no
-- admin_audit_log, no rollup_state (read only by the SECURITY DEFINER
-- _rollup_coverage). The read functions are executable by PUBLIC already.
CREATE POLICY auditor_all ON usage_analytics.agent_usage_detailed FOR SELECT TO usage_analytics_auditor
    USING (true);
CREATE POLICY auditor_all ON usage_analytics.agent_performance_metrics FOR SELECT TO usage_analytics_auditor
    USING (true);
CREATE POLICY auditor_read ON usage_analytics.system_analytics FOR SELECT TO usage_analytics_auditor
    USING (true);
CREATE POLICY auditor_read ON usage_analytics.usage_daily_totals FOR SELECT TO usage_analytics_auditor
    USING (true);
CREATE POLICY auditor_read ON usage_analytics.usage_daily_user FOR SELECT TO usage_analytics_auditor
    USING (true);
CREATE POLICY auditor_read ON usage_analytics.usage_counters FOR SELECT TO usage_analytics_auditor
    USING (true);
GRANT SELECT ON usage_analytics.agent_usage_detailed, usage_analytics.agent_performance_metrics,
                usage_analytics.system_analytics, usage_analytics.usage_daily_totals,
                usage_analytics.usage_daily_user, usage_analytics.usage_counters
    TO usage_analytics_auditor;
