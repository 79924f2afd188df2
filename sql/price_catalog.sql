-- Price catalogs and repricing: import_price_catalog (LiteLLM's
-- model_prices_and_context_window.json format), the snapshot the extension
-- ships and installs, and reprice for rows recorded before a price change.

-- Repriced cost, by direction: reprice changes stored costs, but the
-- exporter's cost counters only ever grow, so the change is counted here
-- (ai_usage_cost_repriced_usd_total{direction}).
CREATE TABLE usage_analytics.usage_repriced (
    direction text    PRIMARY KEY CHECK (direction IN ('up', 'down')),
    usd       numeric NOT NULL CHECK (usd >= 0 AND usd < 'Infinity')
);
INSERT INTO usage_analytics.usage_repriced
SELECT * FROM (VALUES ('up', 0), ('down', 0)) AS v WHERE NOT usage_analytics._restoring();
ALTER TABLE usage_analytics.usage_repriced ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON usage_analytics.usage_repriced FROM PUBLIC;

-- Imports a price catalog (admin only, audited): a model whose prices
-- differ from those in force at effective_from gets new rows from then
-- (the old rows keep pricing their time). The document is read from its
-- text, so every digit of every price is kept. Returns
-- {"added": n, "changed": n, "unchanged": n, "skipped": n}; a document in
-- the wrong format is refused whole, naming the offending key.
CREATE FUNCTION usage_analytics.import_price_catalog(catalog jsonb, format text DEFAULT 'litellm',
                                                     effective_from timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    result jsonb;
BEGIN
    PERFORM usage_analytics._require_admin('import_price_catalog');
    IF catalog IS NULL OR jsonb_typeof(catalog) <> 'object' THEN
        RAISE EXCEPTION 'import_price_catalog: invalid catalog: must be a JSON object of model entries'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF effective_from IS NULL OR NOT isfinite(effective_from) THEN
        RAISE EXCEPTION 'import_price_catalog: invalid effective_from: must be a finite timestamp'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    result := usage_analytics._import_price_catalog(catalog::text, coalesce(format, 'litellm'),
                                                    import_price_catalog.effective_from, false);
    PERFORM usage_analytics._audit('import_price_catalog', format,
            result || jsonb_build_object('effective_from', import_price_catalog.effective_from));
    RETURN result;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.import_price_catalog FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.import_price_catalog TO usage_analytics_admin;

-- Re-rates the rows of [from_ts, to_ts) matching the filters whose cost was
-- not supplied by the caller, at the prices in force at each row's time
-- (admin only, audited). Per-day totals follow at once (the usage table's
-- update trigger), the rollups of the days touched are rebuilt, and the
-- change is counted in usage_repriced for the exporter. Returns
-- {"rows": n, "cost_delta_usd": x}.
CREATE FUNCTION usage_analytics.reprice(from_ts timestamptz, to_ts timestamptz, filters jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    n    bigint;
    up   numeric;
    down numeric;
    result jsonb;
BEGIN
    PERFORM usage_analytics._require_admin('reprice');
    IF from_ts IS NULL OR to_ts IS NULL OR NOT isfinite(from_ts) OR NOT isfinite(to_ts) OR to_ts <= from_ts THEN
        RAISE EXCEPTION 'reprice: invalid range: from_ts and to_ts must be finite with from_ts < to_ts'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_ts - from_ts > interval '3661 days' THEN
        RAISE EXCEPTION 'reprice: invalid range: at most 3661 days per call'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    EXECUTE $q$
        WITH target AS (
            SELECT u.id, u."timestamp", u.cost_usd AS old_cost, p[1] AS new_cost, p[2] AS savings
              FROM usage_analytics.agent_usage_detailed u
             CROSS JOIN LATERAL (SELECT usage_analytics._catalog_cost(
                        u.provider, coalesce(u.requested_model, u.model), u.input_tokens, u.output_tokens,
                        u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens, u.reasoning_tokens,
                        u.service_tier, u."timestamp") AS p) priced
             WHERE u."timestamp" >= $2 AND u."timestamp" < $3
               AND u.cost_source IS DISTINCT FROM 'caller'
               AND usage_analytics._usage_matches(u, $1)
        ), changed AS (
            UPDATE usage_analytics.agent_usage_detailed u
               SET cost_usd = t.new_cost, cache_savings_usd = t.savings,
                   cost_source = CASE WHEN t.new_cost IS NULL THEN NULL ELSE 'catalog' END
              FROM target t
             WHERE u.id = t.id AND u."timestamp" = t."timestamp"
               AND (u.cost_usd IS DISTINCT FROM t.new_cost OR u.cache_savings_usd IS DISTINCT FROM t.savings)
            RETURNING t.old_cost, t.new_cost
        )
        SELECT count(*),
               coalesce(sum(greatest(coalesce(new_cost, 0) - coalesce(old_cost, 0), 0)), 0),
               coalesce(sum(greatest(coalesce(old_cost, 0) - coalesce(new_cost, 0), 0)), 0)
          FROM changed
    $q$ INTO n, up, down USING filters, from_ts, to_ts;
    UPDATE usage_analytics.usage_repriced SET usd = usd + up WHERE direction = 'up';
    UPDATE usage_analytics.usage_repriced SET usd = usd + down WHERE direction = 'down';
    IF n > 0 THEN
        PERFORM usage_analytics.rollup_range((from_ts AT TIME ZONE 'UTC')::date,
                                             ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date);
    END IF;
    result := jsonb_build_object('rows', n, 'cost_delta_usd', up - down);
    PERFORM usage_analytics._audit('reprice',
            from_ts || ' .. ' || to_ts, result || jsonb_build_object('filters', filters));
    RETURN result;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.reprice FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.reprice TO usage_analytics_admin;

-- The exporter's repriced-cost counters.
CREATE FUNCTION usage_analytics.metrics_repriced()
RETURNS TABLE (direction text, usd numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$ SELECT direction, usd FROM usage_analytics.usage_repriced ORDER BY direction $$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_repriced FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_repriced TO usage_analytics_monitor, usage_analytics_admin;

-- The shipped catalog (LiteLLM's, snapshot of 2026-11-29: see
-- scripts/refresh_price_catalog.sh), as installed prices: models it adds are
-- priced since 1970 like the original twelve, a model whose price it
-- changes from that snapshot's date. Not audited (no admin acted), and not
-- during a restore, which loads the dumped prices instead.
ALTER TABLE usage_analytics.model_pricing DISABLE TRIGGER audit_change;
SELECT usage_analytics._import_price_catalog(usage_analytics._shipped_price_catalog(), 'litellm',
                                             '2026-11-29 00:00:00+00', true)
 WHERE NOT usage_analytics._restoring();
ALTER TABLE usage_analytics.model_pricing ENABLE TRIGGER audit_change;
