-- Cost recommendations: cheaper models of the same provider at the same or a
-- lower capability tier (model_tiers), priced exactly on the same rows.

-- Capability tiers for cost_recommendations (admins may add rows for
-- catalog models). A suggestion never moves to a higher tier.
CREATE TABLE usage_analytics.model_tiers (
    provider text NOT NULL,
    model    text NOT NULL,
    tier     text NOT NULL CHECK (tier IN ('flagship', 'mid', 'economy')),
    PRIMARY KEY (provider, model)
);
INSERT INTO usage_analytics.model_tiers (provider, model, tier) VALUES
    ('openai',     'gpt-4-turbo',                       'flagship'),
    ('openai',     'gpt-4o',                            'flagship'),
    ('openai',     'gpt-4o-mini',                       'economy'),
    ('openai',     'gpt-3.5-turbo',                     'economy'),
    ('anthropic',  'claude-3-opus',                     'flagship'),
    ('anthropic',  'claude-3-5-sonnet',                 'flagship'),
    ('anthropic',  'claude-3-haiku',                    'economy'),
    ('perplexity', 'llama-3.1-sonar-huge-128k-online',  'flagship'),
    ('perplexity', 'llama-3.1-sonar-large-128k-online', 'mid'),
    ('perplexity', 'llama-3.1-sonar-small-128k-online', 'economy'),
    ('google',     'gemini-1.5-pro',                    'flagship'),
    ('google',     'gemini-1.5-flash',                  'economy'),
    -- Current models of the shipped catalog.
    ('openai',     'gpt-5',                             'flagship'),
    ('openai',     'gpt-4.1',                           'mid'),
    ('openai',     'gpt-5-mini',                        'economy'),
    ('openai',     'gpt-4.1-mini',                      'economy'),
    ('anthropic',  'claude-opus-4-5',                   'flagship'),
    ('anthropic',  'claude-sonnet-4-5',                 'mid'),
    ('anthropic',  'claude-haiku-4-5',                  'economy'),
    ('google',     'gemini-2.5-pro',                    'flagship'),
    ('google',     'gemini-2.5-flash',                  'mid'),
    ('google',     'gemini-2.5-flash-lite',             'economy');
-- A restore loads the dumped tiers over the installed ones (see audit.sql).
CREATE TRIGGER keep_installed_rows_restorable BEFORE INSERT ON usage_analytics.model_tiers
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._keep_installed_rows_restorable();

ALTER TABLE usage_analytics.model_tiers ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON usage_analytics.model_tiers FOR SELECT USING (true);
CREATE POLICY admin_write ON usage_analytics.model_tiers FOR ALL TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin())) WITH CHECK ((SELECT usage_analytics.is_admin()));
REVOKE ALL ON usage_analytics.model_tiers FROM PUBLIC;
GRANT SELECT ON usage_analytics.model_tiers TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON usage_analytics.model_tiers TO usage_analytics_admin;

-- For each (agent, provider, model) with usage in the lookback window
-- (filters apply; row-level security too: readers get their own), the
-- suggestion is the model that
--  * belongs to the same provider and is listed in model_tiers, as is the
--    current model, at the same or a lower tier (flagship > mid > economy:
--    never an upsell),
--  * is priced now (calculate_cost is not NULL for every one of the rows),
--  * is cheaper on these rows: suggested_cost_usd = the same rows' token
--    classes (cache reads and writes, reasoning) and service tier at the
--    suggested model's current price, exactly (calculate_cost per distinct
--    usage, times its count; a model with no price for the tier is skipped),
-- the cheapest such model (ties: same tier first, then name).
-- current_cost_usd is the same rows at the current model's current price,
-- so both sides use today's prices; savings = current - suggested.
CREATE FUNCTION usage_analytics.cost_recommendations(filters jsonb DEFAULT '{}',
                                                     lookback interval DEFAULT '30 days')
RETURNS TABLE (agent_id text, provider text, current_model text, suggested_model text, requests bigint,
               current_cost_usd numeric, suggested_cost_usd numeric, savings_usd numeric, reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    IF lookback IS NULL OR lookback <= interval '0' THEN
        RAISE EXCEPTION 'cost_recommendations: lookback must be a positive interval, got %',
            coalesce(lookback::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    RETURN QUERY EXECUTE $q$
        WITH r AS MATERIALIZED (
            SELECT u.agent_id, u.provider, u.model, u.service_tier AS st,
                   jsonb_build_object('input_tokens', u.input_tokens, 'output_tokens', u.output_tokens,
                                      'cache_read_tokens', u.cache_read_tokens,
                                      'cache_write_tokens', u.cache_write_tokens,
                                      'cache_write_1h_tokens', u.cache_write_1h_tokens,
                                      'reasoning_tokens', u.reasoning_tokens) AS usage,
                   count(*) AS n
              FROM usage_analytics.agent_usage_detailed u
             WHERE u."timestamp" >= now() - $2
               AND u.model IS NOT NULL
               AND usage_analytics._usage_matches(u, $1)
             GROUP BY 1, 2, 3, 4, 5
        ), tiers AS (
            SELECT t.provider, t.model, t.tier,
                   CASE t.tier WHEN 'flagship' THEN 3 WHEN 'mid' THEN 2 ELSE 1 END AS rank
              FROM usage_analytics.model_tiers t
        ), cur AS (
            SELECT r.agent_id, r.provider, r.model, sum(r.n)::bigint AS requests,
                   sum(r.n * usage_analytics.calculate_cost(r.provider, r.model, r.usage, now(), r.st)) AS cost,
                   bool_and(usage_analytics.calculate_cost(r.provider, r.model, r.usage, now(), r.st) IS NOT NULL) AS priced
              FROM r GROUP BY 1, 2, 3
        ), cand AS (
            SELECT r.agent_id, r.provider, r.model, t2.model AS suggested, t1.tier AS cur_tier,
                   t2.tier AS new_tier, t2.rank = t1.rank AS same_tier,
                   sum(r.n * usage_analytics.calculate_cost(r.provider, t2.model, r.usage, now(), r.st)) AS cost,
                   bool_and(usage_analytics.calculate_cost(r.provider, t2.model, r.usage, now(), r.st) IS NOT NULL) AS priced
              FROM r
              JOIN tiers t1 ON t1.provider = r.provider AND t1.model = r.model
              JOIN tiers t2 ON t2.provider = r.provider AND t2.model <> r.model AND t2.rank <= t1.rank
             GROUP BY 1, 2, 3, 4, 5, 6, 7
        )
        SELECT DISTINCT ON (c.agent_id, c.provider, c.model)
               c.agent_id, c.provider, c.model, c.suggested, cur.requests, cur.cost, c.cost, cur.cost - c.cost,
               format('same provider, %s tier%s, priced now: %s%% cheaper on these %s requests',
                      c.new_tier, CASE WHEN c.same_tier THEN '' ELSE ' (from ' || c.cur_tier || ')' END,
                      round(100 * (cur.cost - c.cost) / cur.cost, 1), cur.requests)
          FROM cand c
          JOIN cur USING (agent_id, provider, model)
         WHERE c.priced AND cur.priced AND c.cost < cur.cost
         ORDER BY c.agent_id, c.provider, c.model, c.cost, c.same_tier DESC, c.suggested
    $q$ USING filters, lookback;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.cost_recommendations FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.cost_recommendations TO PUBLIC;
