-- Budget reservations: authorizing requests against hard budgets, and
-- releasing and expiring their reservations. The budget tables are in
-- budgets.sql.
--
-- Reservations: authorize_request locks the hard budgets in scope (id order)
-- and reserves the estimate when spent + unexpired reservations + estimate
-- stays within every limit, so concurrent authorizers can never together
-- pass a hard limit. A reservation is released by deleting its rows, which
-- needs no budget lock (it only lowers reserved): the insert trigger deletes
-- the reservations named by request_metadata.reservation_id in the same
-- transaction that books the spend, so an authorizer sees either the
-- reservation or the spend, never neither. Expired reservations stop counting
-- at once; budget_maintenance() deletes them.

-- ---------------------------------------------------------------------------
-- Authorizing requests.

CREATE FUNCTION usage_analytics.authorize_request(user_id uuid, agent_id text, provider text, model text,
                                                  estimated_input_tokens integer, estimated_output_tokens integer,
                                                  ttl interval DEFAULT '10 minutes', framework text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    p        text := lower(btrim(authorize_request.provider));
    m        text;
    cost     numeric;
    hard_ids bigint[];
    rid      uuid;
    blocked  text;
    list     jsonb;
    reason   text;
BEGIN
    IF authorize_request.user_id IS NULL THEN
        RAISE EXCEPTION 'authorize_request: user_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF authorize_request.agent_id IS NULL OR btrim(authorize_request.agent_id) = '' THEN
        RAISE EXCEPTION 'authorize_request: agent_id must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Without one, no provider-scoped budget could see the request.
    IF coalesce(p, '') = '' THEN
        RAISE EXCEPTION 'authorize_request: provider must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF estimated_input_tokens IS NULL OR estimated_input_tokens < 0
       OR estimated_output_tokens IS NULL OR estimated_output_tokens < 0 THEN
        RAISE EXCEPTION 'authorize_request: estimated_input_tokens and estimated_output_tokens must be >= 0, got % and %',
            coalesce(estimated_input_tokens::text, 'NULL'), coalesce(estimated_output_tokens::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ttl IS NULL OR ttl <= interval '0' OR ttl > interval '7 days' THEN
        RAISE EXCEPTION 'authorize_request: ttl must be > 0 and at most 7 days, got %', coalesce(ttl::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'authorize_request must run in a READ COMMITTED transaction (it must see reservations committed while it waited), not %',
            current_setting('transaction_isolation') USING ERRCODE = 'invalid_transaction_state';
    END IF;
    m := usage_analytics.resolve_model(p, authorize_request.model);
    cost := usage_analytics.calculate_cost(p, authorize_request.model, estimated_input_tokens, estimated_output_tokens);

    -- The hard budgets in scope, locked in id order (no deadlock between
    -- authorizers or with committing writers); then a fresh snapshot sees
    -- every reservation committed before the lock was granted.
    -- A request whose framework is not given may belong to any framework:
    -- budgets scoped to one count it (a hard one must never let it pass
    -- unchecked), so its framework is taken as each budget's own.
    hard_ids := ARRAY(
        SELECT b.id FROM usage_analytics.budgets b
         WHERE b.enforcement = 'hard'
           AND usage_analytics._budget_in_scope(b, authorize_request.user_id, authorize_request.agent_id,
                                                coalesce(authorize_request.framework, b.scope_framework), p, m)
         ORDER BY b.id
           FOR NO KEY UPDATE);

    SELECT coalesce(jsonb_agg(jsonb_build_object('name', s.name, 'remaining_usd', s.remaining_usd,
                                                 'enforcement', s.enforcement, 'limit_usd', s.limit_usd,
                                                 'spent_usd', s.spent_usd, 'reserved_usd', s.reserved_usd)
                              ORDER BY s.id), '[]'),
           min(s.name) FILTER (WHERE s.enforcement = 'hard' AND cost IS NOT NULL AND s.remaining_usd < cost)
      INTO list, blocked
      FROM usage_analytics._budget_state() s
      JOIN usage_analytics.budgets b ON b.id = s.id
     WHERE usage_analytics._budget_in_scope(b, authorize_request.user_id, authorize_request.agent_id,
                                            coalesce(authorize_request.framework, b.scope_framework), p, m);

    IF cardinality(hard_ids) > 0 AND cost IS NULL THEN
        reason := 'unpriced';
    ELSIF blocked IS NOT NULL THEN
        reason := 'budget_exceeded';
    ELSIF cardinality(hard_ids) > 0 THEN
        rid := gen_random_uuid();
        INSERT INTO usage_analytics.budget_reservations (reservation_id, budget_id, period_start, amount_usd, expires_at)
        SELECT rid, b.id, usage_analytics._budget_period_start(b.period, b.timezone, now()), cost, now() + ttl
          FROM usage_analytics.budgets b WHERE b.id = ANY (hard_ids)
         ORDER BY b.id;
        reason := 'reserved';
        SELECT jsonb_agg(CASE WHEN x ->> 'enforcement' = 'hard'
                              THEN x || jsonb_build_object('remaining_usd', (x ->> 'remaining_usd')::numeric - cost,
                                                           'reserved_usd', (x ->> 'reserved_usd')::numeric + cost)
                              ELSE x END)
          INTO list FROM jsonb_array_elements(list) x;
    ELSE
        reason := CASE WHEN jsonb_array_length(list) > 0 THEN 'no_hard_budget' ELSE 'no_budget' END;
    END IF;
    RETURN jsonb_build_object('allowed', reason NOT IN ('unpriced', 'budget_exceeded'),
                              'reservation_id', rid, 'estimated_cost_usd', cost, 'reason', reason,
                              'blocked_by', blocked, 'model', m, 'budgets', list);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.authorize_request FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.authorize_request TO usage_analytics_writer, usage_analytics_admin;

-- Gives back a reservation whose request was never made (recording usage
-- with request_metadata.reservation_id releases it too). Returns whether
-- anything was released.
CREATE FUNCTION usage_analytics.release_reservation(reservation_id uuid)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM usage_analytics.budget_reservations r
         WHERE (r.reservation_id, r.budget_id) IN (
                SELECT x.reservation_id, x.budget_id FROM usage_analytics.budget_reservations x
                 WHERE x.reservation_id = release_reservation.reservation_id
                 ORDER BY x.budget_id FOR UPDATE)
        RETURNING 1)
    SELECT count(*) > 0 FROM gone
$$;
REVOKE ALL ON FUNCTION usage_analytics.release_reservation FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.release_reservation TO usage_analytics_writer, usage_analytics_admin;

-- Maintenance: deletes expired reservations (skipping any a writer is
-- releasing), folds the ledger shards of exited backends into shard 0 and
-- drops ledger rows of deleted budgets. Never waits for a writer. Returns
-- the rows removed or folded.
INSERT INTO usage_analytics.maintenance_lock (name) VALUES ('budget_maintenance');
CREATE FUNCTION usage_analytics.budget_maintenance()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    expired bigint;
    folded  bigint;
    orphans bigint;
    live    integer[];
BEGIN
    PERFORM usage_analytics._require_admin('budget_maintenance');
    -- A row of maintenance_lock, as the other maintenance uses: an advisory
    -- key could be held by any role that can connect, stopping this for good.
    PERFORM 1 FROM usage_analytics.maintenance_lock WHERE name = 'budget_maintenance' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;  -- another run is at work
    END IF;
    WITH gone AS (
        DELETE FROM usage_analytics.budget_reservations r
         WHERE (r.reservation_id, r.budget_id) IN (
                SELECT x.reservation_id, x.budget_id FROM usage_analytics.budget_reservations x
                 WHERE x.expires_at <= now() FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*) INTO expired FROM gone;
    live := ARRAY(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL);
    WITH gone AS (
        DELETE FROM usage_analytics.budget_spend s
         WHERE s.shard <> 0 AND NOT s.shard = ANY (live)
        RETURNING s.*
    ), folded AS (
        INSERT INTO usage_analytics.budget_spend AS s (budget_id, period_start, shard, spent_usd)
        SELECT budget_id, period_start, 0, sum(spent_usd) FROM gone GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (budget_id, period_start, shard) DO UPDATE SET spent_usd = s.spent_usd + excluded.spent_usd
        RETURNING 1
    )
    SELECT count(*) INTO folded FROM gone;
    WITH gone AS (
        DELETE FROM usage_analytics.budget_spend s
         WHERE NOT EXISTS (SELECT 1 FROM usage_analytics.budgets b WHERE b.id = s.budget_id)
        RETURNING 1)
    SELECT count(*) INTO orphans FROM gone;
    RETURN expired + folded + orphans;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.budget_maintenance FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.budget_maintenance TO usage_analytics_admin;
