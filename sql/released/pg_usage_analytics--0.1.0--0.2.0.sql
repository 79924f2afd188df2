-- pg_usage_analytics 0.1.0 -> 0.2.0 (ALTER EXTENSION pg_usage_analytics UPDATE).
-- Keeps every row, cost and price; tests/tests/upgrade.rs checks that, and
-- that the upgraded catalog equals a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION pg_usage_analytics UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Tables

-- Finite costs only. Rows that already hold NaN or Infinity (0.1.0 let a
-- plain INSERT store them) poison every sum: they become unpriced (NULL),
-- and each is listed in the audit log.
INSERT INTO usage_analytics.admin_audit_log (actor_role, action, target, details)
SELECT session_user, 'upgrade_unprice_non_finite_cost', u.id::text,
       jsonb_build_object('timestamp', u."timestamp", 'cost_usd', u.cost_usd::text)
  FROM usage_analytics.agent_usage_detailed u
 WHERE u.cost_usd >= 'Infinity';
UPDATE usage_analytics.agent_usage_detailed SET cost_usd = NULL WHERE cost_usd >= 'Infinity';
ALTER TABLE usage_analytics.agent_usage_detailed
    DROP CONSTRAINT agent_usage_detailed_cost_usd_check,
    ADD CONSTRAINT agent_usage_detailed_cost_usd_check CHECK (cost_usd >= 0 AND cost_usd < 'Infinity');

-- Token classes, service tier and who priced the row. Rows recorded by
-- 0.1.0 had no classes (all 0, standard tier). cost_source: 'catalog' for
-- every priced row (a constant default: no rewrite), then NULL for the
-- unpriced ones and 'caller' for those whose cost is not what the price
-- book of their time gives (supplied by the caller).
ALTER TABLE usage_analytics.agent_usage_detailed
    ADD COLUMN cache_read_tokens     integer NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    ADD COLUMN cache_write_tokens    integer NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    ADD COLUMN cache_write_1h_tokens integer NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),
    ADD COLUMN reasoning_tokens      integer NOT NULL DEFAULT 0 CHECK (reasoning_tokens >= 0),
    ADD COLUMN service_tier text NOT NULL DEFAULT 'standard'
        CHECK (service_tier IN ('standard', 'batch', 'flex', 'priority')),
    ADD COLUMN cost_source text DEFAULT 'catalog' CHECK (cost_source IN ('catalog', 'caller')),
    ADD CONSTRAINT agent_usage_detailed_token_classes CHECK (
        cache_read_tokens::bigint + cache_write_tokens + cache_write_1h_tokens <= input_tokens
        AND reasoning_tokens <= output_tokens);
ALTER TABLE usage_analytics.agent_usage_detailed
    ALTER COLUMN cost_source DROP DEFAULT,
    ADD COLUMN cache_savings_usd numeric
        CHECK (cache_savings_usd > '-Infinity' AND cache_savings_usd < 'Infinity');
UPDATE usage_analytics.agent_usage_detailed SET cost_source = NULL WHERE cost_usd IS NULL;
UPDATE usage_analytics.agent_usage_detailed SET cost_source = 'caller'
 WHERE cost_usd IS NOT NULL
   AND cost_usd IS DISTINCT FROM usage_analytics.calculate_cost(provider, coalesce(requested_model, model),
                                                                input_tokens, output_tokens, "timestamp");

-- Prices per class and tier; installed prices start in 1970 instead of at
-- '-infinity', which clients such as psycopg cannot read.
CREATE FUNCTION usage_analytics._valid_price(price numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT price IS NULL OR (price >= 0 AND price <= 1000000 AND scale(price) <= 12) $$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM usage_analytics.model_pricing
                WHERE NOT (usage_analytics._valid_price(input_usd_per_1k)
                           AND usage_analytics._valid_price(output_usd_per_1k))) THEN
        RAISE EXCEPTION 'model_pricing holds prices above 1000000 USD per 1k tokens or with more than 12 decimal places'
            USING HINT = 'Correct or delete those rows (they break pricing), then run ALTER EXTENSION pg_usage_analytics UPDATE again.';
    END IF;
END;
$$;
ALTER TABLE usage_analytics.model_pricing
    DROP CONSTRAINT model_pricing_provider_model_effective_from_key,
    ALTER COLUMN effective_from SET DEFAULT '1970-01-01 00:00:00+00',
    ADD COLUMN service_tier text NOT NULL DEFAULT 'standard'
        CHECK (service_tier IN ('standard', 'batch', 'flex', 'priority')),
    ADD COLUMN cache_read_usd_per_1k     numeric,
    ADD COLUMN cache_write_usd_per_1k    numeric,
    ADD COLUMN cache_write_1h_usd_per_1k numeric,
    ADD COLUMN reasoning_usd_per_1k      numeric,
    ADD COLUMN above_input_tokens        integer CHECK (above_input_tokens > 0),
    ADD COLUMN above_input_usd_per_1k          numeric,
    ADD COLUMN above_output_usd_per_1k         numeric,
    ADD COLUMN above_cache_read_usd_per_1k     numeric,
    ADD COLUMN above_cache_write_usd_per_1k    numeric,
    ADD COLUMN above_cache_write_1h_usd_per_1k numeric,
    ADD COLUMN above_reasoning_usd_per_1k      numeric,
    ADD CONSTRAINT model_pricing_key UNIQUE (provider, model, service_tier, effective_from),
    ADD CONSTRAINT model_pricing_price_bounds CHECK (
        usage_analytics._valid_price(input_usd_per_1k) AND usage_analytics._valid_price(output_usd_per_1k)
        AND usage_analytics._valid_price(cache_read_usd_per_1k)
        AND usage_analytics._valid_price(cache_write_usd_per_1k)
        AND usage_analytics._valid_price(cache_write_1h_usd_per_1k)
        AND usage_analytics._valid_price(reasoning_usd_per_1k)
        AND usage_analytics._valid_price(above_input_usd_per_1k)
        AND usage_analytics._valid_price(above_output_usd_per_1k)
        AND usage_analytics._valid_price(above_cache_read_usd_per_1k)
        AND usage_analytics._valid_price(above_cache_write_usd_per_1k)
        AND usage_analytics._valid_price(above_cache_write_1h_usd_per_1k)
        AND usage_analytics._valid_price(above_reasoning_usd_per_1k));
ALTER TABLE usage_analytics.model_pricing DISABLE TRIGGER audit_change;  -- not an admin action
UPDATE usage_analytics.model_pricing SET effective_from = '1970-01-01 00:00:00+00'
 WHERE effective_from = '-infinity';
ALTER TABLE usage_analytics.model_pricing ENABLE TRIGGER audit_change;

-- Default models still as 0.1.0 installed them are "seeded".
ALTER TABLE usage_analytics.provider_default_model ADD COLUMN seeded boolean NOT NULL DEFAULT false;
ALTER TABLE usage_analytics.provider_default_model DISABLE TRIGGER audit_change;  -- not an admin action
UPDATE usage_analytics.provider_default_model d SET seeded = true
  FROM (VALUES ('openai', 'gpt-4o-mini'), ('anthropic', 'claude-3-haiku'),
               ('perplexity', 'llama-3.1-sonar-small-128k-online'), ('google', 'gemini-1.5-flash'))
       AS installed (provider, model)
 WHERE (d.provider, d.model) = (installed.provider, installed.model);
ALTER TABLE usage_analytics.provider_default_model ENABLE TRIGGER audit_change;

-- The login behind each earlier audit row: 0.1.0 kept it in details for
-- grant_admin/revoke_admin, otherwise the acting role is the best known.
ALTER TABLE usage_analytics.admin_audit_log ADD COLUMN session_role name;
ALTER TABLE usage_analytics.admin_audit_log DISABLE TRIGGER refuse_update_delete;
UPDATE usage_analytics.admin_audit_log SET session_role = coalesce(details ->> 'session_user', actor_role);
ALTER TABLE usage_analytics.admin_audit_log ENABLE TRIGGER refuse_update_delete;
ALTER TABLE usage_analytics.admin_audit_log
    ALTER COLUMN session_role SET DEFAULT session_user,
    ALTER COLUMN session_role SET NOT NULL;

ALTER TABLE usage_analytics.rollup_state ADD COLUMN source_changes bigint NOT NULL DEFAULT 0;

-- Admin rights become per database (see is_admin): whoever is a member of
-- usage_analytics_admin when this database upgrades stays its admin.
CREATE TABLE usage_analytics.admin_roles (
    role_name  name        PRIMARY KEY,
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by name        NOT NULL DEFAULT session_user
);
INSERT INTO usage_analytics.admin_roles (role_name)
SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
 WHERE m.roleid = 'usage_analytics_admin'::regrole;

CREATE TABLE usage_analytics.maintenance_lock (
    name text PRIMARY KEY
);
INSERT INTO usage_analytics.maintenance_lock (name) VALUES ('ensure_partitions'), ('compact_bookkeeping');

-- Keys and indexes move from the parent to each partition (see schema.sql:
-- a dump then restores the monthly partitions exactly). Dropping the
-- parent's index drops its partitions' copies, so each is rebuilt: the
-- upgrade reads every row once per index.
ALTER TABLE usage_analytics.agent_usage_detailed DROP CONSTRAINT agent_usage_detailed_pkey;
DROP INDEX usage_analytics.agent_usage_detailed_timestamp_idx;
DROP INDEX usage_analytics.agent_usage_detailed_user_timestamp_idx;
DROP INDEX usage_analytics.agent_usage_detailed_agent_timestamp_idx;
DO $$
DECLARE
    part text;
BEGIN
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass LOOP
        EXECUTE format('ALTER TABLE usage_analytics.%I ADD CONSTRAINT %I PRIMARY KEY (id, "timestamp")',
                       part, part || '_pkey');
        EXECUTE format('CREATE INDEX %I ON usage_analytics.%I ("timestamp", id)', part || '_timestamp_id_idx', part);
        EXECUTE format('CREATE INDEX %I ON usage_analytics.%I (user_id, "timestamp")',
                       part || '_user_id_timestamp_idx', part);
        -- An agent's rows: through the search index (_create_search_index, below).
    END LOOP;
END;
$$;

-- Room on each page for in-place (HOT) updates of the bookkeeping tables, as
-- a new install has (see counters.sql); pages written from here on keep it.
ALTER TABLE usage_analytics.usage_counters SET (fillfactor = 50);
ALTER TABLE usage_analytics.usage_daily_totals SET (fillfactor = 50);
ALTER TABLE usage_analytics.usage_daily_user SET (fillfactor = 70);

-- Bookkeeping shards: one per writing backend (pid) instead of pid mod 8;
-- token classes in the counters and rollups (0.1.0 had none: 0).
ALTER TABLE usage_analytics.usage_counters
    ALTER COLUMN shard TYPE integer,
    ADD COLUMN cache_read_tokens  bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN reasoning_tokens   bigint NOT NULL DEFAULT 0;
-- The histogram's columns are numbered: their bounds are written only in
-- metrics_response_time_bucket_bounds().
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_100ms TO rt_bucket_1;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_250ms TO rt_bucket_2;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_500ms TO rt_bucket_3;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_1s TO rt_bucket_4;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_2500ms TO rt_bucket_5;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_5s TO rt_bucket_6;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_10s TO rt_bucket_7;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_20s TO rt_bucket_8;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_30s TO rt_bucket_9;
ALTER TABLE usage_analytics.usage_counters RENAME COLUMN rt_le_60s TO rt_bucket_10;
ALTER TABLE usage_analytics.agent_performance_metrics
    ADD COLUMN total_cache_read_tokens  bigint  NOT NULL DEFAULT 0,
    ADD COLUMN total_cache_write_tokens bigint  NOT NULL DEFAULT 0,
    ADD COLUMN total_reasoning_tokens   bigint  NOT NULL DEFAULT 0,
    ADD COLUMN cache_savings_usd        numeric NOT NULL DEFAULT 0,
    ADD COLUMN priced_tokens            bigint  NOT NULL DEFAULT 0;

-- Functions whose result columns changed are replaced below.
DROP FUNCTION usage_analytics.usage_export(jsonb);
DROP FUNCTION usage_analytics._usage_facts(jsonb, date[], timestamptz[], timestamptz[]);
DROP FUNCTION usage_analytics.usage_trend(text, jsonb);
DROP FUNCTION usage_analytics.metrics_usage_counters();
-- One counting trigger function (_count_usage) now serves inserts, deletes
-- and updates; its triggers are created below.
DROP TRIGGER count_inserted_usage ON usage_analytics.agent_usage_detailed;
DROP FUNCTION usage_analytics._count_inserted_usage();
ALTER TABLE usage_analytics.usage_daily_user
    ADD COLUMN shard integer NOT NULL DEFAULT 0,
    ADD COLUMN changes bigint NOT NULL DEFAULT 0,
    DROP CONSTRAINT usage_daily_user_pkey,
    ADD PRIMARY KEY (day, user_id, shard);

-- Per-day totals are now kept exact at every moment by the usage table's
-- triggers (0.1.0 built usage_daily_totals for rolled-up days only, and
-- never subtracted deleted rows from usage_daily_user): rebuilt here from
-- the rows, in one read of the table each.
DROP INDEX usage_analytics.usage_daily_totals_date_idx;
ALTER TABLE usage_analytics.usage_daily_totals
    ADD COLUMN shard integer NOT NULL DEFAULT 0,
    ADD COLUMN total_cache_read_tokens  bigint  NOT NULL DEFAULT 0,
    ADD COLUMN total_cache_write_tokens bigint  NOT NULL DEFAULT 0,
    ADD COLUMN total_reasoning_tokens   bigint  NOT NULL DEFAULT 0,
    ADD COLUMN cache_savings_usd        numeric NOT NULL DEFAULT 0,
    ADD COLUMN priced_tokens            bigint  NOT NULL DEFAULT 0,
    ADD CONSTRAINT usage_daily_totals_key UNIQUE NULLS NOT DISTINCT (date, agent_id, framework, provider, shard);
DELETE FROM usage_analytics.usage_daily_totals;
INSERT INTO usage_analytics.usage_daily_totals
    (date, agent_id, framework, provider, total_requests, successful_requests, total_input_tokens,
     total_output_tokens, total_cost_usd, unpriced_requests, response_time_sum_ms, response_time_count, shard,
     priced_tokens)
SELECT ("timestamp" AT TIME ZONE 'UTC')::date, agent_id, framework, provider, count(*),
       count(*) FILTER (WHERE success), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
       coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL), coalesce(sum(response_time_ms), 0),
       count(response_time_ms), 0,
       coalesce(sum(input_tokens::bigint + output_tokens) FILTER (WHERE cost_usd IS NOT NULL), 0)
  FROM usage_analytics.agent_usage_detailed
 GROUP BY 1, 2, 3, 4;
DELETE FROM usage_analytics.usage_daily_user;
INSERT INTO usage_analytics.usage_daily_user
    (day, user_id, shard, requests, input_tokens, output_tokens, cost_usd, first_seen, last_seen, changes)
SELECT ("timestamp" AT TIME ZONE 'UTC')::date, user_id, 0, count(*), coalesce(sum(input_tokens), 0),
       coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0), min("timestamp"), max("timestamp"), 0
  FROM usage_analytics.agent_usage_detailed
 GROUP BY 1, 2;

-- Exporter series admitted so far: every label tuple 0.1.0 counted.
CREATE TABLE usage_analytics.usage_series (
    provider     text    NOT NULL,
    framework    text    NOT NULL,
    agent_id     text    NOT NULL,
    model        text    NOT NULL,
    message_type text    NOT NULL,
    shard        integer NOT NULL,
    PRIMARY KEY (provider, framework, agent_id, model, message_type, shard)
);
INSERT INTO usage_analytics.usage_series
SELECT DISTINCT provider, framework, agent_id, model, message_type, 0 FROM usage_analytics.usage_counters;

-- Active users as sketches per bucket (filled below, once the functions
-- exist, from 0.1.0's per-day user bookkeeping).
CREATE TABLE usage_analytics.active_user_sketches (
    width_seconds integer     NOT NULL,
    bucket_start  timestamptz NOT NULL,
    shard         integer     NOT NULL,
    sketch        bytea       NOT NULL,
    PRIMARY KEY (width_seconds, bucket_start, shard)
) WITH (fillfactor = 50);
ALTER TABLE usage_analytics.active_user_sketches ALTER COLUMN sketch SET STORAGE PLAIN;

-- New functions in the library (src/active_users.rs), before the SQL
-- functions that call them.
-- The counting trigger (src/counting.rs); sql/counters.sql tells why it is
-- SECURITY DEFINER.
CREATE FUNCTION usage_analytics."_count_usage"() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', '_count_usage_wrapper';
ALTER FUNCTION usage_analytics._count_usage() SECURITY DEFINER
    SET search_path = pg_catalog, usage_analytics, pg_temp;
REVOKE ALL ON FUNCTION usage_analytics._count_usage FROM PUBLIC;
-- Whether any budget exists (src/budget_cache.rs), and the trigger that
-- announces a change of a cached table (src/price_cache.rs; budgets and
-- search_texts use it).
CREATE FUNCTION usage_analytics."_budgets_exist"() RETURNS bool
STRICT STABLE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', '_budgets_exist_wrapper';
CREATE FUNCTION usage_analytics."_announce_change"() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', '_announce_change_wrapper';
REVOKE ALL ON FUNCTION usage_analytics._announce_change FROM PUBLIC;
CREATE FUNCTION usage_analytics."_hll_union"("sketches" bytea[]) RETURNS bytea
STRICT IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_hll_union_wrapper';
CREATE FUNCTION usage_analytics."_hll_of"("users" uuid[]) RETURNS bytea
STRICT IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_hll_of_wrapper';
CREATE FUNCTION usage_analytics."_hll_estimate"("sketch" bytea) RETURNS bigint
STRICT IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_hll_estimate_wrapper';
CREATE FUNCTION usage_analytics."_filter_dates_only"("filters" jsonb) RETURNS boolean
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_filter_dates_only_wrapper';
GRANT EXECUTE ON FUNCTION usage_analytics._filter_dates_only TO PUBLIC;
CREATE FUNCTION usage_analytics."_shipped_price_catalog"() RETURNS text
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_shipped_price_catalog_wrapper';
CREATE FUNCTION usage_analytics."_import_price_catalog"("catalog" text, "format" text,
    "effective_from" timestamptz, "installed" bool) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '_import_price_catalog_wrapper';
CREATE FUNCTION usage_analytics."_catalog_cost"("provider" text, "model" text, "input_tokens" int,
    "output_tokens" int, "cache_read_tokens" int, "cache_write_tokens" int, "cache_write_1h_tokens" int,
    "reasoning_tokens" int, "service_tier" text, "at" timestamptz) RETURNS numeric[]
STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_catalog_cost_wrapper';
REVOKE ALL ON FUNCTION usage_analytics._import_price_catalog, usage_analytics._shipped_price_catalog,
    usage_analytics._catalog_cost FROM PUBLIC;
CREATE FUNCTION usage_analytics."normalize_usage"("provider" text, "usage" jsonb) RETURNS jsonb
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_usage_wrapper';
CREATE FUNCTION usage_analytics."calculate_cost"("provider" text, "model" text, "usage" jsonb,
    "at" timestamptz DEFAULT now(), "service_tier" text DEFAULT 'standard') RETURNS numeric
STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'calculate_cost_of_usage_wrapper';
GRANT EXECUTE ON FUNCTION usage_analytics.normalize_usage,
    usage_analytics.calculate_cost(text, text, jsonb, timestamptz, text) TO PUBLIC;
-- track_detailed_usage gains its 14th argument, the provider's usage document.
DROP FUNCTION usage_analytics.track_detailed_usage(uuid, text, text, text, text, text, integer, integer, integer,
                                                   boolean, text, jsonb, text);
CREATE FUNCTION usage_analytics."track_detailed_usage"("user_id" uuid, "agent_id" text, "agent_name" text,
    "framework" text, "provider" text, "message_type" text, "input_tokens" int, "output_tokens" int,
    "response_time_ms" int, "success" bool, "error_message" text DEFAULT NULL,
    "request_metadata" jsonb DEFAULT '{}', "model" text DEFAULT NULL, "usage" jsonb DEFAULT NULL) RETURNS uuid
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'track_detailed_usage_with_usage_wrapper';
REVOKE ALL ON FUNCTION usage_analytics.track_detailed_usage FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.track_detailed_usage TO usage_analytics_writer, usage_analytics_admin;
REVOKE ALL ON FUNCTION usage_analytics._hll_union, usage_analytics._hll_of,
    usage_analytics._hll_estimate FROM PUBLIC;
-- rollup_daily's popular_actions aggregate (src/top_actions.rs).
CREATE FUNCTION usage_analytics."_top_actions_add"("state" internal, "action" text) RETURNS internal
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_top_actions_add_wrapper';
CREATE FUNCTION usage_analytics."_top_actions_combine"("state" internal, "other" internal) RETURNS internal
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_top_actions_combine_wrapper';
CREATE FUNCTION usage_analytics."_top_actions_serialize"("state" internal) RETURNS bytea
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_top_actions_serialize_wrapper';
CREATE FUNCTION usage_analytics."_top_actions_deserialize"("bytes" bytea, "_unused" internal) RETURNS internal
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_top_actions_deserialize_wrapper';
CREATE FUNCTION usage_analytics."_top_actions_final"("state" internal) RETURNS jsonb
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '_top_actions_final_wrapper';
CREATE AGGREGATE usage_analytics._top_actions(text) (
    SFUNC = usage_analytics._top_actions_add,
    STYPE = internal,
    -- What a group's state takes in the aggregate's memory context, the
    -- memory HashAggregate counts (its counts are on Rust's heap, see
    -- top_actions.rs). Without it the planner assumes 8 kB a group and sorts
    -- the day instead of hashing it (spilling to disk at a million rows).
    SSPACE = 160,
    COMBINEFUNC = usage_analytics._top_actions_combine,
    SERIALFUNC = usage_analytics._top_actions_serialize,
    DESERIALFUNC = usage_analytics._top_actions_deserialize,
    FINALFUNC = usage_analytics._top_actions_final,
    PARALLEL = SAFE
);
REVOKE ALL ON FUNCTION usage_analytics._top_actions(text), usage_analytics._top_actions_add,
    usage_analytics._top_actions_combine, usage_analytics._top_actions_serialize,
    usage_analytics._top_actions_deserialize, usage_analytics._top_actions_final FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Every function of sql/*.sql with its grants, filled in between these markers
-- by `make upgrade-script` (scripts/upgrade_functions.py).
-- BEGIN functions generated by scripts/upgrade_functions.py from sql/*.sql: do not edit
-- from sql/roles.sql
CREATE OR REPLACE FUNCTION usage_analytics._group_roles() RETURNS name[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['usage_analytics_admin', 'usage_analytics_writer', 'usage_analytics_reader',
                 'usage_analytics_monitor', 'usage_analytics_app', 'usage_analytics_auditor']::name[]
$$;
REVOKE ALL ON FUNCTION usage_analytics._group_roles FROM PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._search_text(agent_id text, agent_name text, model text, error_message text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(agent_id, '') || E'\x1f' || coalesce(agent_name, '') || E'\x1f' || coalesce(model, '')
           || E'\x1f' || coalesce(error_message, '')
$$;
REVOKE ALL ON FUNCTION usage_analytics._search_text FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_text TO PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._search_text_agent(search_text text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT split_part(search_text, E'\x1f', 1) $$;
REVOKE ALL ON FUNCTION usage_analytics._search_text_agent FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_text_agent TO PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._search_key(search_text text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.hashtextextended(search_text, 0) $$;
REVOKE ALL ON FUNCTION usage_analytics._search_key FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_key TO PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._hide_index_statistics(rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    idx regclass;
    col smallint;
BEGIN
    FOR idx, col IN SELECT i.indexrelid::regclass, a.attnum
                      FROM pg_index i
                      JOIN pg_attribute a ON a.attrelid = i.indexrelid AND a.attnum > 0
                     WHERE i.indrelid = rel AND i.indkey[a.attnum - 1] = 0 LOOP
        EXECUTE format('ALTER INDEX %s ALTER COLUMN %s SET STATISTICS 0', idx, col);
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._hide_index_statistics FROM PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._create_search_index(rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    opclass text := (SELECT format('%I.%I', n.nspname, o.opcname)
                       FROM pg_opclass o JOIN pg_namespace n ON n.oid = o.opcnamespace
                      WHERE o.opcname = 'gin_trgm_ops');
BEGIN
    IF rel = to_regclass('usage_analytics.search_texts') THEN
        IF opclass IS NULL THEN
            RAISE EXCEPTION 'the search index needs the pg_trgm extension'
                USING ERRCODE = 'undefined_object', HINT = 'CREATE EXTENSION pg_trgm;';
        END IF;
        EXECUTE format('CREATE INDEX search_texts_search_text_idx ON %s USING gin (search_text %s)', rel, opclass);
    ELSIF NOT EXISTS (SELECT 1 FROM pg_index i
                       WHERE i.indrelid = rel AND pg_get_indexdef(i.indexrelid) LIKE '%_search_key(%') THEN
        EXECUTE format('CREATE INDEX ON %s (agent_id, usage_analytics._search_key('
                       'usage_analytics._search_text(agent_id, agent_name, model, error_message)), "timestamp")',
                       rel);
    END IF;
    PERFORM usage_analytics._hide_index_statistics(rel);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._create_search_index FROM PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._add_search_texts(texts text[], unchecked boolean)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    added bigint;
BEGIN
    WITH rows AS (
        INSERT INTO usage_analytics.search_texts (search_text)
        SELECT t FROM unnest(texts) AS t
         WHERE unchecked
            OR NOT EXISTS (SELECT 1 FROM usage_analytics.search_texts s
                            WHERE s.key = usage_analytics._search_key(t) AND s.search_text = t)
        RETURNING 1)
    SELECT count(*) INTO added FROM rows;
    RETURN added;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._add_search_texts FROM PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._hide_statistics(rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    col name;
BEGIN
    FOR col IN SELECT attname FROM pg_attribute
                WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped
                  AND attname NOT IN ('id', 'timestamp') LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 0', rel, col);
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._hide_statistics FROM PUBLIC;

-- from sql/schema.sql
CREATE OR REPLACE FUNCTION usage_analytics._valid_price(price numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT price IS NULL OR (price >= 0 AND price <= 1000000 AND scale(price) <= 12) $$;
REVOKE ALL ON FUNCTION usage_analytics._valid_price FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._valid_price TO PUBLIC;

-- from sql/identity.sql
CREATE OR REPLACE FUNCTION usage_analytics.is_admin()
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

-- from sql/identity.sql
CREATE OR REPLACE FUNCTION usage_analytics._sees_all()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT usage_analytics.is_admin()
        OR pg_has_role(usage_analytics.acting_role(), 'usage_analytics_auditor', 'MEMBER')
$$;
REVOKE ALL ON FUNCTION usage_analytics._sees_all FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._sees_all TO PUBLIC;

-- from sql/identity.sql
CREATE OR REPLACE FUNCTION usage_analytics.current_user_id()
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

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics._restoring() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT current_setting('row_security') = 'off' $$;
REVOKE ALL ON FUNCTION usage_analytics._restoring FROM PUBLIC;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics.metrics_response_time_bucket_bounds() RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY[0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60]::double precision[] $$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_response_time_bucket_bounds FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_response_time_bucket_bounds TO PUBLIC;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics._bucket_bound_ms(i integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT round(1000 * (usage_analytics.metrics_response_time_bucket_bounds())[i])::integer $$;
REVOKE ALL ON FUNCTION usage_analytics._bucket_bound_ms FROM PUBLIC;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics._count_truncated_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    IF NOT usage_analytics._restoring() THEN
        DELETE FROM usage_analytics.usage_daily_user;
        DELETE FROM usage_analytics.usage_daily_totals;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._count_truncated_usage FROM PUBLIC;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics._compact_bookkeeping() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    folded_counters bigint;
    folded_days     bigint;
    live            integer[];
BEGIN
    PERFORM usage_analytics._require_admin('compact_bookkeeping');
    PERFORM 1 FROM usage_analytics.maintenance_lock WHERE name = 'compact_bookkeeping' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;  -- another run is compacting
    END IF;
    live := ARRAY(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL);
    WITH gone AS (
        DELETE FROM usage_analytics.usage_counters c
         WHERE c.shard <> 0 AND NOT c.shard = ANY (live)
        RETURNING c.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_counters AS c
        SELECT 0, provider, framework, agent_id, model, message_type, success,
               sum(requests), sum(input_tokens), sum(output_tokens), sum(cost_usd), sum(unpriced_requests),
               sum(response_time_count), sum(response_time_sum_ms),
               sum(rt_bucket_1), sum(rt_bucket_2), sum(rt_bucket_3), sum(rt_bucket_4), sum(rt_bucket_5),
               sum(rt_bucket_6), sum(rt_bucket_7), sum(rt_bucket_8), sum(rt_bucket_9), sum(rt_bucket_10),
               sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
          FROM gone
         GROUP BY provider, framework, agent_id, model, message_type, success
         ORDER BY provider, framework, agent_id, model, message_type, success
        ON CONFLICT (provider, framework, agent_id, model, message_type, success, shard) DO UPDATE SET
            requests             = c.requests + excluded.requests,
            input_tokens         = c.input_tokens + excluded.input_tokens,
            output_tokens        = c.output_tokens + excluded.output_tokens,
            cost_usd             = c.cost_usd + excluded.cost_usd,
            unpriced_requests    = c.unpriced_requests + excluded.unpriced_requests,
            response_time_count  = c.response_time_count + excluded.response_time_count,
            response_time_sum_ms = c.response_time_sum_ms + excluded.response_time_sum_ms,
            rt_bucket_1          = c.rt_bucket_1 + excluded.rt_bucket_1,
            rt_bucket_2          = c.rt_bucket_2 + excluded.rt_bucket_2,
            rt_bucket_3          = c.rt_bucket_3 + excluded.rt_bucket_3,
            rt_bucket_4          = c.rt_bucket_4 + excluded.rt_bucket_4,
            rt_bucket_5          = c.rt_bucket_5 + excluded.rt_bucket_5,
            rt_bucket_6          = c.rt_bucket_6 + excluded.rt_bucket_6,
            rt_bucket_7          = c.rt_bucket_7 + excluded.rt_bucket_7,
            rt_bucket_8          = c.rt_bucket_8 + excluded.rt_bucket_8,
            rt_bucket_9          = c.rt_bucket_9 + excluded.rt_bucket_9,
            rt_bucket_10         = c.rt_bucket_10 + excluded.rt_bucket_10,
            cache_read_tokens    = c.cache_read_tokens + excluded.cache_read_tokens,
            cache_write_tokens   = c.cache_write_tokens + excluded.cache_write_tokens,
            reasoning_tokens     = c.reasoning_tokens + excluded.reasoning_tokens
        RETURNING 1
    )
    SELECT count(*) INTO folded_counters FROM gone;

    WITH gone AS (
        DELETE FROM usage_analytics.usage_daily_user d
         WHERE d.shard <> 0 AND NOT d.shard = ANY (live)
        RETURNING d.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_daily_user AS d
            (day, user_id, shard, requests, input_tokens, output_tokens, cost_usd, first_seen, last_seen, changes)
        SELECT day, user_id, 0, sum(requests), sum(input_tokens), sum(output_tokens), sum(cost_usd),
               min(first_seen), max(last_seen), sum(changes)
          FROM gone
         GROUP BY day, user_id
         ORDER BY day, user_id
        ON CONFLICT (day, user_id, shard) DO UPDATE SET
            requests      = d.requests + excluded.requests,
            input_tokens  = d.input_tokens + excluded.input_tokens,
            output_tokens = d.output_tokens + excluded.output_tokens,
            cost_usd      = d.cost_usd + excluded.cost_usd,
            first_seen    = least(d.first_seen, excluded.first_seen),
            last_seen     = greatest(d.last_seen, excluded.last_seen),
            changes       = d.changes + excluded.changes
        RETURNING 1
    )
    SELECT count(*) INTO folded_days FROM gone;

    WITH gone AS (
        DELETE FROM usage_analytics.usage_daily_totals t
         WHERE t.shard <> 0 AND NOT t.shard = ANY (live)
        RETURNING t.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_daily_totals AS t
            (date, agent_id, framework, provider, total_requests, successful_requests, total_input_tokens,
             total_output_tokens, total_cost_usd, unpriced_requests, response_time_sum_ms, response_time_count,
             shard, total_cache_read_tokens, total_cache_write_tokens, total_reasoning_tokens, cache_savings_usd,
             priced_tokens)
        SELECT date, agent_id, framework, provider, sum(total_requests), sum(successful_requests),
               sum(total_input_tokens), sum(total_output_tokens), sum(total_cost_usd), sum(unpriced_requests),
               sum(response_time_sum_ms), sum(response_time_count), 0, sum(total_cache_read_tokens),
               sum(total_cache_write_tokens), sum(total_reasoning_tokens), sum(cache_savings_usd), sum(priced_tokens)
          FROM gone
         GROUP BY date, agent_id, framework, provider
        ON CONFLICT (date, agent_id, framework, provider, shard) DO UPDATE SET
            total_requests       = t.total_requests + excluded.total_requests,
            successful_requests  = t.successful_requests + excluded.successful_requests,
            total_input_tokens   = t.total_input_tokens + excluded.total_input_tokens,
            total_output_tokens  = t.total_output_tokens + excluded.total_output_tokens,
            total_cost_usd       = t.total_cost_usd + excluded.total_cost_usd,
            unpriced_requests    = t.unpriced_requests + excluded.unpriced_requests,
            response_time_sum_ms = t.response_time_sum_ms + excluded.response_time_sum_ms,
            response_time_count  = t.response_time_count + excluded.response_time_count,
            total_cache_read_tokens  = t.total_cache_read_tokens + excluded.total_cache_read_tokens,
            total_cache_write_tokens = t.total_cache_write_tokens + excluded.total_cache_write_tokens,
            total_reasoning_tokens   = t.total_reasoning_tokens + excluded.total_reasoning_tokens,
            cache_savings_usd        = t.cache_savings_usd + excluded.cache_savings_usd,
            priced_tokens            = t.priced_tokens + excluded.priced_tokens
        RETURNING 1
    )
    SELECT folded_days + count(*) INTO folded_days FROM gone;

    WITH gone AS (
        DELETE FROM usage_analytics.usage_series s
         WHERE s.shard <> 0 AND NOT s.shard = ANY (live)
        RETURNING s.*
    ), folded AS (
        INSERT INTO usage_analytics.usage_series (provider, framework, agent_id, model, message_type, shard)
        SELECT DISTINCT provider, framework, agent_id, model, message_type, 0 FROM gone
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT folded_days + count(*) INTO folded_days FROM gone;

    DELETE FROM usage_analytics.active_user_sketches s
     WHERE s.bucket_start < now() - CASE s.width_seconds WHEN 300 THEN interval '2 hours 5 minutes'
                                                         WHEN 3600 THEN interval '27 hours'
                                                         ELSE interval '33 days' END;
    WITH gone AS (
        DELETE FROM usage_analytics.active_user_sketches s
         WHERE s.shard <> 0 AND NOT s.shard = ANY (live)
        RETURNING s.*
    ), folded AS (
        INSERT INTO usage_analytics.active_user_sketches AS s (width_seconds, bucket_start, shard, sketch)
        SELECT width_seconds, bucket_start, 0, usage_analytics._hll_union(array_agg(sketch))
          FROM gone
         GROUP BY width_seconds, bucket_start
        ON CONFLICT (width_seconds, bucket_start, shard) DO UPDATE
            SET sketch = usage_analytics._hll_union(ARRAY[s.sketch, excluded.sketch])
        RETURNING 1
    )
    SELECT folded_days + count(*) INTO folded_days FROM gone;
    RETURN folded_counters + folded_days;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._compact_bookkeeping FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._compact_bookkeeping TO usage_analytics_admin;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics.metrics_usage_counters()
RETURNS TABLE (provider text, framework text, agent_id text, model text, message_type text,
               success boolean, requests bigint, input_tokens numeric, output_tokens numeric,
               cost_usd numeric, unpriced_requests bigint, response_time_count bigint,
               response_time_sum_seconds numeric, response_time_buckets bigint[],
               cache_read_tokens numeric, cache_write_tokens numeric, reasoning_tokens numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT provider, framework, agent_id, model, message_type, success,
           sum(requests)::bigint, sum(input_tokens), sum(output_tokens), sum(cost_usd),
           sum(unpriced_requests)::bigint, sum(response_time_count)::bigint,
           sum(response_time_sum_ms) / 1000.0,
           ARRAY[sum(rt_bucket_1), sum(rt_bucket_2), sum(rt_bucket_3), sum(rt_bucket_4),
                 sum(rt_bucket_5), sum(rt_bucket_6), sum(rt_bucket_7), sum(rt_bucket_8),
                 sum(rt_bucket_9), sum(rt_bucket_10)]::bigint[],
           sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
      FROM usage_analytics.usage_counters
     GROUP BY 1, 2, 3, 4, 5, 6
     ORDER BY 1, 2, 3, 4, 5, 6
$$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_usage_counters FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_usage_counters TO usage_analytics_monitor, usage_analytics_admin;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics.metrics_active_users()
RETURNS TABLE ("window" text, users bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT w.name, usage_analytics._hll_estimate(usage_analytics._hll_union(array_agg(s.sketch)))
      FROM (VALUES ('1h', 300, interval '1 hour'), ('24h', 3600, interval '24 hours'),
                   ('30d', 86400, interval '30 days')) AS w(name, width, span)
      LEFT JOIN usage_analytics.active_user_sketches s
        ON s.width_seconds = w.width
       AND s.bucket_start > now() - w.span - make_interval(secs => w.width)
       AND s.bucket_start <= now()
     GROUP BY w.name, w.span
     ORDER BY w.span
$$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_active_users FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_active_users TO usage_analytics_monitor, usage_analytics_admin;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics.metrics_top_users(n integer DEFAULT 10)
RETURNS TABLE (rank integer, user_id uuid, cost_usd numeric, requests bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT (row_number() OVER (ORDER BY d.cost_usd DESC, d.user_id))::integer,
           d.user_id, d.cost_usd, d.requests
      FROM (SELECT user_id, sum(cost_usd) AS cost_usd, sum(requests)::bigint AS requests
              FROM usage_analytics.usage_daily_user
             WHERE day = (now() AT TIME ZONE 'UTC')::date
             GROUP BY user_id
            HAVING sum(requests) > 0) d
     ORDER BY d.cost_usd DESC, d.user_id
     LIMIT least(greatest(n, 0), 100)
$$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_top_users FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_top_users TO usage_analytics_monitor, usage_analytics_admin;

-- from sql/counters.sql
CREATE OR REPLACE FUNCTION usage_analytics.metrics_rollup_last_success() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$ SELECT max(rolled_at) FROM usage_analytics.rollup_state $$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_rollup_last_success FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_rollup_last_success TO usage_analytics_monitor, usage_analytics_admin;

-- from sql/audit.sql
CREATE OR REPLACE FUNCTION usage_analytics._refuse_audit_change()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._refuse_audit_change FROM PUBLIC;

-- from sql/audit.sql
CREATE OR REPLACE FUNCTION usage_analytics._audit(audited_action text, audited_target text, audited_details jsonb)
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

-- from sql/audit.sql
CREATE OR REPLACE FUNCTION usage_analytics._audit_change()
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

-- from sql/audit.sql
CREATE OR REPLACE FUNCTION usage_analytics._keep_installed_rows_restorable() RETURNS trigger
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

-- from sql/admin.sql
CREATE OR REPLACE FUNCTION usage_analytics._require_admin(action text)
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

-- from sql/admin.sql
CREATE OR REPLACE FUNCTION usage_analytics._set_admin(role_name name, make_admin boolean)
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

-- from sql/admin.sql
CREATE OR REPLACE FUNCTION usage_analytics.grant_admin(role_name name)
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

-- from sql/admin.sql
CREATE OR REPLACE FUNCTION usage_analytics.revoke_admin(role_name name)
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

-- from sql/admin.sql
CREATE OR REPLACE FUNCTION usage_analytics.set_model_price(provider text, model text, input_usd_per_1k numeric,
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

-- from sql/partitions.sql
CREATE OR REPLACE FUNCTION usage_analytics.ensure_partitions(months_ahead integer DEFAULT 3, months_back integer DEFAULT 1)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    month_start date;
    lo          timestamptz;
    hi          timestamptz;
    part        text;
    columns     text;
    created     integer := 0;
BEGIN
    PERFORM usage_analytics._require_admin('ensure_partitions');
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'ensure_partitions: months_ahead must be between 0 and 120, got %',
            coalesce(months_ahead::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF months_back IS NULL OR months_back < 0 OR months_back > 600 THEN
        RAISE EXCEPTION 'ensure_partitions: months_back must be between 0 and 600, got %',
            coalesce(months_back::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM usage_analytics.maintenance_lock WHERE name = 'ensure_partitions' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RAISE NOTICE 'ensure_partitions: another run is creating partitions; skipped';
        RETURN 0;
    END IF;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
      FROM pg_attribute
     WHERE attrelid = 'usage_analytics.agent_usage_detailed'::regclass
       AND attnum > 0 AND NOT attisdropped AND attgenerated = '';

    FOR i IN -months_back .. months_ahead LOOP
        month_start := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date;
        part := format('agent_usage_detailed_p%s', to_char(month_start, 'YYYY_MM'));
        CONTINUE WHEN to_regclass(format('usage_analytics.%I', part)) IS NOT NULL;
        lo := month_start::timestamp AT TIME ZONE 'UTC';
        hi := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        BEGIN
            LOCK TABLE usage_analytics.agent_usage_detailed IN SHARE MODE;
            -- The default partition is the template: columns, constraints
            -- and the key and indexes every partition carries.
            EXECUTE format('CREATE TABLE usage_analytics.%I (LIKE usage_analytics.agent_usage_detailed_default '
                           'INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING INDEXES)', part);
            IF EXISTS (SELECT 1 FROM usage_analytics.agent_usage_detailed_default
                        WHERE "timestamp" >= lo AND "timestamp" < hi) THEN
                -- The month's rows move in one statement; writers are held
                -- off by the lock above, so none can slip in between.
                EXECUTE format('WITH moved AS (DELETE FROM usage_analytics.agent_usage_detailed_default '
                               'WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING %s) '
                               'INSERT INTO usage_analytics.%I (%s) SELECT %s FROM moved',
                               columns, part, columns, columns)
                    USING lo, hi;
            END IF;
            EXECUTE format('ALTER TABLE usage_analytics.agent_usage_detailed ATTACH PARTITION usage_analytics.%I '
                           'FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
            PERFORM usage_analytics._hide_statistics(format('usage_analytics.%I', part)::regclass);
            PERFORM usage_analytics._hide_index_statistics(format('usage_analytics.%I', part)::regclass);
            EXECUTE format('REVOKE ALL ON usage_analytics.%I FROM PUBLIC', part);
            IF EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = format('usage_analytics.%I', part)::regclass
                          AND d.deptype = 'e') THEN
                EXECUTE format('ALTER EXTENSION pg_usage_analytics DROP TABLE usage_analytics.%I', part);
            END IF;
            created := created + 1;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'ensure_partitions: % not created: its locks were not granted within lock_timeout '
                          '(a long transaction holds the default partition); the next run retries', part;
        END;
    END LOOP;
    RETURN created;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.ensure_partitions FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.ensure_partitions TO usage_analytics_admin;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._reads_every_usage_row()
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    acting oid := (SELECT r.oid FROM pg_roles r WHERE r.rolname = usage_analytics.acting_role());
BEGIN
    IF NOT has_table_privilege(acting, 'usage_analytics.agent_usage_detailed', 'SELECT') THEN
        RETURN false;
    END IF;
    RETURN (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.oid = acting)
       OR pg_has_role(acting, (SELECT c.relowner FROM pg_class c
                                WHERE c.oid = 'usage_analytics.agent_usage_detailed'::regclass), 'USAGE')
       OR pg_has_role(acting, 'usage_analytics_auditor', 'MEMBER')
       OR (pg_has_role(acting, 'usage_analytics_admin', 'MEMBER') AND usage_analytics.is_admin());
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._reads_every_usage_row FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._reads_every_usage_row TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._matching_search_texts(pattern text, most integer DEFAULT NULL)
RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    IF NOT usage_analytics._reads_every_usage_row() THEN
        RETURN NULL;
    END IF;
    -- DISTINCT before LIMIT: a text stored twice must not hide another.
    RETURN (SELECT coalesce(array_agg(t.search_text ORDER BY t.search_text), '{}')
              FROM (SELECT DISTINCT s.search_text FROM usage_analytics.search_texts s
                     WHERE s.search_text ILIKE pattern
                     LIMIT most + 1) t);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._matching_search_texts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._matching_search_texts TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._search_matches(agent_id text, agent_name text, model text, error_message text,
                                                pattern text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT agent_id ILIKE pattern OR agent_name ILIKE pattern OR model ILIKE pattern OR error_message ILIKE pattern
$$;
REVOKE ALL ON FUNCTION usage_analytics._search_matches FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_matches TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._usage_matches(u usage_analytics.agent_usage_detailed, filters jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT (usage_analytics._filter_timestamp(filters, 'start_date') IS NULL
        OR u."timestamp" >= usage_analytics._filter_timestamp(filters, 'start_date'))
   AND (usage_analytics._filter_timestamp(filters, 'end_date') IS NULL
        OR u."timestamp" < usage_analytics._filter_timestamp(filters, 'end_date'))
   AND (usage_analytics._filter_uuid(filters, 'user_id') IS NULL
        OR u.user_id = usage_analytics._filter_uuid(filters, 'user_id'))
   AND (usage_analytics._filter_text(filters, 'agent_id') IS NULL
        OR u.agent_id = usage_analytics._filter_text(filters, 'agent_id'))
   AND (usage_analytics._filter_text(filters, 'framework') IS NULL
        OR u.framework = usage_analytics._filter_text(filters, 'framework'))
   AND (usage_analytics._filter_text(filters, 'provider') IS NULL
        OR u.provider = usage_analytics._filter_text(filters, 'provider'))
   AND (usage_analytics._filter_text(filters, 'model') IS NULL
        OR u.model = usage_analytics._filter_text(filters, 'model'))
   AND (usage_analytics._filter_text(filters, 'message_type') IS NULL
        OR u.message_type = usage_analytics._filter_text(filters, 'message_type'))
   AND (usage_analytics._filter_success(filters) IS NULL
        OR u.success = usage_analytics._filter_success(filters))
   AND (usage_analytics._filter_text(filters, 'search') IS NULL
        OR usage_analytics._search_text(u.agent_id, u.agent_name, u.model, u.error_message)
               ILIKE usage_analytics._filter_text(filters, 'search')
           AND usage_analytics._search_matches(u.agent_id, u.agent_name, u.model, u.error_message,
                                           usage_analytics._filter_text(filters, 'search')))
   AND (usage_analytics._filter_timestamp(filters, 'after_timestamp') IS NULL
        OR (u."timestamp", u.id) < (usage_analytics._filter_timestamp(filters, 'after_timestamp'),
                                    coalesce(usage_analytics._filter_uuid(filters, 'after_id'),
                                             '00000000-0000-0000-0000-000000000000'::uuid)))
$$;
REVOKE ALL ON FUNCTION usage_analytics._usage_matches FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._usage_matches TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._search_probe_rows("limit" integer, "offset" integer)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT least(greatest(("limit"::bigint + "offset") * 20, 1000), 100000) $$;
REVOKE ALL ON FUNCTION usage_analytics._search_probe_rows FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_probe_rows TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._records_by_time(docs jsonb[], "limit" integer, "offset" integer)
RETURNS SETOF usage_analytics.agent_usage_detailed
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    shared  jsonb := docs[1] - ARRAY['framework', 'provider', 'model', 'message_type', 'success'];
    several text;
    newest  text := 'SELECT u.* FROM usage_analytics.agent_usage_detailed u
                      WHERE usage_analytics._usage_matches(u, $1)
                      ORDER BY u."timestamp" DESC, u.id DESC LIMIT '
                    || least(("limit"::bigint + "offset") * 1000, 100000);
    hits    bigint;
BEGIN
    -- The keys are the usage table's column names; values as the parser reads them.
    SELECT coalesce(string_agg(format(' AND u.%I = ANY (%L::%s[])', k.key, k.vals, k.type), ''), '')
      INTO several
      FROM (SELECT c.key, c.type, array_agg(DISTINCT v.value ORDER BY v.value) AS vals
              FROM unnest(docs) AS d (doc)
             CROSS JOIN (VALUES ('framework', 'text'), ('provider', 'text'), ('model', 'text'),
                                ('message_type', 'text'), ('success', 'boolean')) AS c (key, type)
             CROSS JOIN LATERAL (SELECT CASE c.key WHEN 'success' THEN usage_analytics._filter_success(d.doc)::text
                                                   ELSE usage_analytics._filter_text(d.doc, c.key) END) AS v (value)
             WHERE v.value IS NOT NULL
             GROUP BY c.key, c.type) k;
    EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM (' || newest || ') u WHERE true' || several || ' LIMIT $2) p'
        INTO hits
        USING shared, "limit"::bigint + "offset";
    RETURN QUERY EXECUTE
        'SELECT u.* FROM (' || CASE WHEN hits >= "limit"::bigint + "offset" THEN newest
                                    ELSE 'SELECT u.* FROM usage_analytics.agent_usage_detailed u
                                           WHERE usage_analytics._usage_matches(u, $1)' END || ') u
          WHERE true' || several || '
          ORDER BY u."timestamp" DESC, u.id DESC
          LIMIT $2 OFFSET $3'
        USING shared, "limit", "offset";
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._records_by_time FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._records_by_time TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._records_by_keys(filters jsonb, agents text[], keys bigint[], "limit" integer,
                                                 "offset" integer)
RETURNS SETOF usage_analytics.agent_usage_detailed
LANGUAGE plpgsql STABLE
SET enable_sort = off
SET max_parallel_workers_per_gather = 0
SET jit = off
AS $$
BEGIN
    -- EXECUTE plans with the actual filter document.
    RETURN QUERY EXECUTE
        'SELECT r.* FROM (SELECT DISTINCT p.agent, p.key FROM unnest($2, $3) AS p (agent, key)) p
          CROSS JOIN LATERAL (
                SELECT u.* FROM usage_analytics.agent_usage_detailed u
                 WHERE u.agent_id = p.agent
                   AND usage_analytics._search_key(usage_analytics._search_text(u.agent_id, u.agent_name, u.model,
                                                                                u.error_message)) = p.key
                   AND usage_analytics._usage_matches(u, $1)
                 ORDER BY u."timestamp" DESC
                 FETCH FIRST ($4::bigint + $5) ROWS WITH TIES) r
          ORDER BY r."timestamp" DESC, r.id DESC
          LIMIT $4 OFFSET $5'
        USING filters, agents, keys, "limit", "offset";
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._records_by_keys FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._records_by_keys TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._records_by_texts(filters jsonb, texts text[], "limit" integer, "offset" integer)
RETURNS SETOF usage_analytics.agent_usage_detailed
LANGUAGE sql STABLE
AS $$
    SELECT * FROM usage_analytics._records_by_keys(
        filters,
        ARRAY(SELECT usage_analytics._search_text_agent(t) FROM unnest(texts) WITH ORDINALITY AS x (t, i) ORDER BY i),
        ARRAY(SELECT usage_analytics._search_key(t) FROM unnest(texts) WITH ORDINALITY AS x (t, i) ORDER BY i),
        "limit", "offset")
$$;
REVOKE ALL ON FUNCTION usage_analytics._records_by_texts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._records_by_texts TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics._agent_keys(agent text, most integer)
RETURNS bigint[]
LANGUAGE sql STABLE
SET max_parallel_workers_per_gather = 0
SET jit = off
AS $$
    WITH RECURSIVE k (key) AS (
        (SELECT usage_analytics._search_key(usage_analytics._search_text(u.agent_id, u.agent_name, u.model,
                                                                         u.error_message))
           FROM usage_analytics.agent_usage_detailed u
          WHERE u.agent_id = agent
          ORDER BY 1
          LIMIT 1)
        UNION ALL
        SELECT (SELECT usage_analytics._search_key(usage_analytics._search_text(u.agent_id, u.agent_name, u.model,
                                                                                u.error_message))
                  FROM usage_analytics.agent_usage_detailed u
                 WHERE u.agent_id = agent
                   AND usage_analytics._search_key(usage_analytics._search_text(u.agent_id, u.agent_name,
                                                                                u.model, u.error_message)) > k.key
                 ORDER BY 1
                 LIMIT 1)
          FROM k
         WHERE k.key IS NOT NULL)
    SELECT coalesce(array_agg(s.key), '{}') FROM (SELECT k.key FROM k WHERE k.key IS NOT NULL LIMIT most + 1) s
$$;
REVOKE ALL ON FUNCTION usage_analytics._agent_keys FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._agent_keys TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics.get_usage_records(filters jsonb DEFAULT '{}', "limit" integer DEFAULT 100,
                                                             "offset" integer DEFAULT 0)
RETURNS SETOF usage_analytics.agent_usage_detailed
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    -- "Few" texts and rows: the key route then reads at most few_rows rows,
    -- cheaper than the probe; counting them first reads at most as many
    -- index entries.
    few_texts constant integer := 64;
    few_rows  constant bigint := 500;
    pattern text;
    agent   text;
    hits    bigint;
    texts   text[];
    keys    bigint[];
BEGIN
    IF "limit" IS NULL OR "limit" < 0 THEN
        RAISE EXCEPTION 'get_usage_records: "limit" must be >= 0, got %', coalesce("limit"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF "offset" IS NULL OR "offset" < 0 THEN
        RAISE EXCEPTION 'get_usage_records: "offset" must be >= 0, got %', coalesce("offset"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM usage_analytics.check_filters(filters);
    filters := coalesce(filters, '{}'::jsonb);
    pattern := usage_analytics._filter_text(filters, 'search');
    agent := usage_analytics._filter_text(filters, 'agent_id');
    IF pattern IS NOT NULL AND "limit" > 0 THEN
        texts := usage_analytics._matching_search_texts(pattern, few_texts);  -- NULL: not a reader of every row
        IF texts = '{}' THEN
            RETURN;  -- no text holds the term, so no row does
        END IF;
        IF cardinality(texts) <= few_texts THEN
            -- Every row of these texts, whatever the other filters say.
            EXECUTE 'SELECT count(*) FROM (
                         SELECT 1 FROM unnest($1) AS t (search_text)
                          CROSS JOIN LATERAL (
                                SELECT 1 FROM usage_analytics.agent_usage_detailed u
                                 WHERE u.agent_id = usage_analytics._search_text_agent(t.search_text)
                                   AND usage_analytics._search_key(usage_analytics._search_text(
                                           u.agent_id, u.agent_name, u.model, u.error_message))
                                       = usage_analytics._search_key(t.search_text)
                                 LIMIT $2) r
                          LIMIT $2) k'
                INTO hits USING texts, few_rows;
            IF hits < few_rows THEN
                RETURN QUERY SELECT * FROM usage_analytics._records_by_texts(filters, texts, "limit", "offset");
                RETURN;
            END IF;
        END IF;
        -- Stops as soon as the page's rows are found among the newest rows.
        EXECUTE
            'SELECT count(*) FROM (
                SELECT 1 FROM (SELECT u.agent_id, u.agent_name, u.model, u.error_message
                                 FROM usage_analytics.agent_usage_detailed u
                                WHERE usage_analytics._usage_matches(u, $1)
                                ORDER BY u."timestamp" DESC, u.id DESC
                                LIMIT $3) r
                 WHERE usage_analytics._search_matches(r.agent_id, r.agent_name, r.model, r.error_message, $2)
                 LIMIT $4) hits'
            INTO hits
            USING filters - 'search', pattern, usage_analytics._search_probe_rows("limit", "offset"),
                  "limit"::bigint + "offset";
        IF hits >= "limit"::bigint + "offset" THEN
            RETURN QUERY EXECUTE
                'SELECT r.* FROM (SELECT u.* FROM usage_analytics.agent_usage_detailed u
                                   WHERE usage_analytics._usage_matches(u, $1)
                                   ORDER BY u."timestamp" DESC, u.id DESC
                                   LIMIT $5) r
                  WHERE usage_analytics._search_matches(r.agent_id, r.agent_name, r.model, r.error_message, $4)
                  ORDER BY r."timestamp" DESC, r.id DESC
                  LIMIT $2 OFFSET $3'
                USING filters - 'search', "limit", "offset", pattern,
                      usage_analytics._search_probe_rows("limit", "offset");
            RETURN;
        END IF;
        IF cardinality(texts) > few_texts THEN
            texts := usage_analytics._matching_search_texts(pattern);  -- all of them
        END IF;
        IF texts IS NOT NULL THEN
            RETURN QUERY SELECT * FROM usage_analytics._records_by_texts(filters, texts, "limit", "offset");
            RETURN;
        END IF;
    END IF;
    IF pattern IS NULL AND agent IS NOT NULL AND "limit" > 0 AND NOT filters ? 'user_id'
       AND usage_analytics._reads_every_usage_row() THEN
        keys := usage_analytics._agent_keys(agent, few_texts);
        IF cardinality(keys) <= few_texts THEN
            RETURN QUERY SELECT * FROM usage_analytics._records_by_keys(
                filters, array_fill(agent, ARRAY[cardinality(keys)]), keys, "limit", "offset");
            RETURN;
        END IF;
    END IF;
    IF pattern IS NULL AND NOT filters ?| ARRAY['user_id', 'agent_id']
       AND filters ?| ARRAY['framework', 'provider', 'model', 'message_type', 'success'] THEN
        RETURN QUERY SELECT * FROM usage_analytics._records_by_time(ARRAY[filters], "limit", "offset");
        RETURN;
    END IF;
    -- EXECUTE plans with the actual filter document, so it folds to constants.
    RETURN QUERY EXECUTE
        'SELECT u.* FROM usage_analytics.agent_usage_detailed u
          WHERE usage_analytics._usage_matches(u, $1)
          ORDER BY u."timestamp" DESC, u.id DESC
          LIMIT $2 OFFSET $3'
        USING filters, "limit", "offset";
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.get_usage_records FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.get_usage_records TO PUBLIC;

-- from sql/records.sql
CREATE OR REPLACE FUNCTION usage_analytics.usage_export(filters jsonb DEFAULT '{}')
RETURNS TABLE (id uuid, user_id uuid, agent_id text, agent_name text, framework text, provider text,
               message_type text, input_tokens integer, output_tokens integer, total_tokens integer,
               cost_usd numeric, response_time_ms integer, success boolean, error_message text,
               request_metadata jsonb, "timestamp" timestamptz, model text, requested_model text,
               cache_read_tokens integer, cache_write_tokens integer, cache_write_1h_tokens integer,
               reasoning_tokens integer, service_tier text, cost_source text, cache_savings_usd numeric)
LANGUAGE sql STABLE
AS $$
    SELECT u.id, u.user_id, u.agent_id, u.agent_name, u.framework, u.provider, u.message_type,
           u.input_tokens, u.output_tokens, u.total_tokens, u.cost_usd, u.response_time_ms,
           u.success, u.error_message, u.request_metadata, u."timestamp", u.model, u.requested_model,
           u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens, u.reasoning_tokens,
           u.service_tier, u.cost_source, u.cache_savings_usd
      FROM usage_analytics.agent_usage_detailed u
     WHERE usage_analytics.check_filters(filters)
       AND usage_analytics._usage_matches(u, filters)
     ORDER BY u."timestamp", u.id
$$;
REVOKE ALL ON FUNCTION usage_analytics.usage_export FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.usage_export TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._rollup_matches(r usage_analytics.agent_performance_metrics, filters jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT (usage_analytics._filter_uuid(filters, 'user_id') IS NULL
        OR r.user_id = usage_analytics._filter_uuid(filters, 'user_id'))
   AND (usage_analytics._filter_text(filters, 'agent_id') IS NULL
        OR r.agent_id = usage_analytics._filter_text(filters, 'agent_id'))
   AND (usage_analytics._filter_text(filters, 'framework') IS NULL
        OR r.framework = usage_analytics._filter_text(filters, 'framework'))
   AND (usage_analytics._filter_text(filters, 'provider') IS NULL
        OR r.provider = usage_analytics._filter_text(filters, 'provider'))
$$;
REVOKE ALL ON FUNCTION usage_analytics._rollup_matches FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._rollup_matches TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._rollup_coverage(from_day date, to_day date)
RETURNS TABLE (day date, covered_until timestamptz, partial boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT s.day,
           CASE WHEN s.source_requests = c.recorded THEN (s.day + 1)::timestamp AT TIME ZONE 'UTC'
                ELSE s.max_timestamp + interval '1 microsecond' END,
           s.source_requests <> c.recorded
      FROM usage_analytics.rollup_state s
     CROSS JOIN LATERAL (SELECT coalesce(sum(d.requests), 0) AS recorded, coalesce(sum(d.changes), 0) AS changes
                           FROM usage_analytics.usage_daily_user d WHERE d.day = s.day) c
     WHERE s.day BETWEEN from_day AND to_day
       AND s.source_changes = c.changes
       AND (s.source_requests = c.recorded
            OR usage_analytics._sees_all()
               AND s.max_timestamp IS NOT NULL
               AND s.source_requests + (SELECT count(*) FROM usage_analytics.agent_usage_detailed u
                                         WHERE u."timestamp" > s.max_timestamp
                                           AND u."timestamp" < (s.day + 1)::timestamp AT TIME ZONE 'UTC')
                   = c.recorded)
     ORDER BY s.day
$$;
REVOKE ALL ON FUNCTION usage_analytics._rollup_coverage FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._rollup_coverage TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._fresh_rollup_days(from_day date, to_day date)
RETURNS date[]
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(array_agg(c.day ORDER BY c.day), '{}')
      FROM usage_analytics._rollup_coverage(from_day, to_day) c
$$;
REVOKE ALL ON FUNCTION usage_analytics._fresh_rollup_days FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._fresh_rollup_days TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._usage_fact_plan(filters jsonb, OUT fresh date[], OUT raw_lo timestamptz[],
                                                OUT raw_hi timestamptz[], OUT partial date[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    range_start timestamptz := usage_analytics._filter_timestamp(filters, 'start_date');
    range_end   timestamptz := usage_analytics._filter_timestamp(filters, 'end_date');
    first_day   date;
    last_day    date;
    cursor_at   timestamptz;
    covered     record;
BEGIN
    fresh := '{}';
    partial := '{}';
    raw_lo := '{}';
    raw_hi := '{}';
    cursor_at := coalesce(range_start, '-infinity');
    IF usage_analytics._filter_rollup_compatible(filters) THEN
        -- Whole UTC days inside [range_start, range_end).
        first_day := CASE WHEN range_start IS NULL THEN '-infinity'::date
                          WHEN range_start = date_trunc('day', range_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                          THEN (range_start AT TIME ZONE 'UTC')::date
                          ELSE (range_start AT TIME ZONE 'UTC')::date + 1 END;
        last_day := CASE WHEN range_end IS NULL THEN 'infinity'::date
                         ELSE (range_end AT TIME ZONE 'UTC')::date - 1 END;
        -- Raw ranges are the gaps between the parts the rollups cover.
        FOR covered IN SELECT * FROM usage_analytics._rollup_coverage(first_day, last_day)
                        WHERE first_day <= last_day LOOP
            fresh := fresh || covered.day;
            IF covered.partial THEN
                partial := partial || covered.day;
            END IF;
            IF covered.day::timestamp AT TIME ZONE 'UTC' > cursor_at THEN
                raw_lo := raw_lo || cursor_at;
                raw_hi := raw_hi || (covered.day::timestamp AT TIME ZONE 'UTC');
            END IF;
            cursor_at := covered.covered_until;
        END LOOP;
    END IF;
    IF coalesce(range_end, 'infinity') > cursor_at THEN
        raw_lo := raw_lo || cursor_at;
        raw_hi := raw_hi || coalesce(range_end, 'infinity');
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._usage_fact_plan FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._usage_fact_plan TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._usage_facts(filters jsonb, fresh date[], raw_lo timestamptz[],
                                             raw_hi timestamptz[])
RETURNS TABLE (day date, user_id uuid, agent_id text, framework text, provider text,
               requests bigint, successful bigint, input_tokens bigint, output_tokens bigint,
               cost_usd numeric, unpriced bigint, response_time_sum_ms bigint, response_time_count bigint,
               cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
               cache_savings_usd numeric, priced_tokens bigint)
LANGUAGE sql STABLE
AS $$
    SELECT r.date, r.user_id, r.agent_id, r.framework, r.provider,
           r.total_requests::bigint, r.successful_requests::bigint,
           r.total_input_tokens, r.total_output_tokens, r.total_cost_usd,
           r.unpriced_requests::bigint, r.response_time_sum_ms, r.response_time_count::bigint,
           r.total_cache_read_tokens, r.total_cache_write_tokens, r.total_reasoning_tokens,
           r.cache_savings_usd, r.priced_tokens
      FROM usage_analytics.agent_performance_metrics r
     WHERE r.date = ANY (fresh)
       AND usage_analytics._rollup_matches(r, filters)
    UNION ALL
    SELECT (u."timestamp" AT TIME ZONE 'UTC')::date, u.user_id, u.agent_id, u.framework, u.provider,
           count(*), count(*) FILTER (WHERE u.success),
           coalesce(sum(u.input_tokens), 0), coalesce(sum(u.output_tokens), 0),
           coalesce(sum(u.cost_usd), 0), count(*) FILTER (WHERE u.cost_usd IS NULL),
           coalesce(sum(u.response_time_ms), 0), count(u.response_time_ms),
           coalesce(sum(u.cache_read_tokens), 0), coalesce(sum(u.cache_write_tokens::bigint + u.cache_write_1h_tokens), 0),
           coalesce(sum(u.reasoning_tokens), 0), coalesce(sum(u.cache_savings_usd), 0),
           coalesce(sum(u.input_tokens::bigint + u.output_tokens) FILTER (WHERE u.cost_usd IS NOT NULL), 0)
      FROM unnest(raw_lo, raw_hi) AS span(lo, hi)
      JOIN LATERAL (
            SELECT * FROM usage_analytics.agent_usage_detailed x
             WHERE x."timestamp" >= span.lo AND x."timestamp" < span.hi
               AND usage_analytics._usage_matches(x, filters)
      ) u ON true
     GROUP BY 1, 2, 3, 4, 5
$$;
REVOKE ALL ON FUNCTION usage_analytics._usage_facts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._usage_facts TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._whole_days(filters jsonb, OUT first_day date, OUT last_day date,
                                           OUT raw_lo timestamptz[], OUT raw_hi timestamptz[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    range_start timestamptz := usage_analytics._filter_timestamp(filters, 'start_date');
    range_end   timestamptz := usage_analytics._filter_timestamp(filters, 'end_date');
    days_lo     timestamptz;
    days_hi     timestamptz;
BEGIN
    first_day := CASE WHEN range_start IS NULL THEN '-infinity'::date
                      WHEN range_start = date_trunc('day', range_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                      THEN (range_start AT TIME ZONE 'UTC')::date
                      ELSE (range_start AT TIME ZONE 'UTC')::date + 1 END;
    last_day := CASE WHEN range_end IS NULL THEN 'infinity'::date
                     ELSE (range_end AT TIME ZONE 'UTC')::date - 1 END;
    raw_lo := '{}';
    raw_hi := '{}';
    IF first_day > last_day THEN
        -- Within one day: no whole day, all raw.
        raw_lo := ARRAY[range_start];
        raw_hi := ARRAY[range_end];
        RETURN;
    END IF;
    days_lo := first_day::timestamp AT TIME ZONE 'UTC';
    days_hi := (last_day + 1)::timestamp AT TIME ZONE 'UTC';
    IF range_start < days_lo THEN
        raw_lo := raw_lo || range_start;
        raw_hi := raw_hi || days_lo;
    END IF;
    IF range_end > days_hi THEN
        raw_lo := raw_lo || days_hi;
        raw_hi := raw_hi || range_end;
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._whole_days FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._whole_days TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._summary_json(dims jsonb, user_ids uuid[], user_requests numeric[],
                                             user_tokens numeric[], user_costs numeric[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    WITH d AS (
        SELECT * FROM jsonb_to_recordset(dims)
            AS x(agent_id text, framework text, provider text, requests numeric, successful numeric,
                 input_tokens numeric, output_tokens numeric, cost numeric, unpriced numeric,
                 rt_sum numeric, rt_count numeric, cache_read numeric, cache_write numeric, reasoning numeric,
                 cache_savings numeric, priced_tokens numeric)
    ), u AS (
        SELECT * FROM unnest(user_ids, user_requests, user_tokens, user_costs) AS x(user_id, requests, tokens, cost)
    ), t AS (
        SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(successful), 0) AS successful,
               coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,
               coalesce(sum(cost), 0) AS cost, coalesce(sum(unpriced), 0) AS unpriced,
               sum(rt_sum) AS rt_sum, coalesce(sum(rt_count), 0) AS rt_count,
               coalesce(sum(cache_read), 0) AS cache_read, coalesce(sum(cache_write), 0) AS cache_write,
               coalesce(sum(reasoning), 0) AS reasoning, coalesce(sum(cache_savings), 0) AS cache_savings,
               coalesce(sum(priced_tokens), 0) AS priced_tokens
          FROM d
    )
    SELECT jsonb_build_object(
        'total_requests', t.requests,
        'successful_requests', t.successful,
        'failed_requests', t.requests - t.successful,
        'success_rate', CASE WHEN t.requests > 0 THEN round(100.0 * t.successful / t.requests, 2) END,
        'total_input_tokens', t.input_tokens,
        'total_output_tokens', t.output_tokens,
        'total_tokens', t.input_tokens + t.output_tokens,
        'total_cost_usd', t.cost,
        'avg_response_time_ms', CASE WHEN t.rt_count > 0 THEN t.rt_sum / t.rt_count END,
        'unique_users', (SELECT count(*) FROM u),
        'unpriced_requests', t.unpriced,
        'cache_read_tokens', t.cache_read,
        'cache_write_tokens', t.cache_write,
        'reasoning_tokens', t.reasoning,
        'cache_savings_usd', t.cache_savings,
        -- Efficiency: over priced requests only (an unpriced one has no cost).
        'cost_per_request_usd', CASE WHEN t.requests > t.unpriced THEN t.cost / (t.requests - t.unpriced) END,
        'tokens_per_usd', CASE WHEN t.cost > 0 THEN t.priced_tokens / t.cost END,
        'cost_by_provider', (SELECT coalesce(jsonb_object_agg(k, v ORDER BY k), '{}')
                               FROM (SELECT coalesce(provider, 'unknown') k, sum(cost) v FROM d GROUP BY 1) x),
        'cost_by_framework', (SELECT coalesce(jsonb_object_agg(k, v ORDER BY k), '{}')
                                FROM (SELECT coalesce(framework, 'unknown') k, sum(cost) v FROM d GROUP BY 1) x),
        'requests_by_agent', (SELECT coalesce(jsonb_object_agg(agent_id, v ORDER BY agent_id), '{}')
                                FROM (SELECT agent_id, sum(requests) v FROM d GROUP BY 1) x),
        'top_users', (SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'requests', requests,
                                                                   'total_tokens', tokens, 'cost_usd', cost)
                                                ORDER BY cost DESC, user_id), '[]')
                        FROM (SELECT user_id, requests, tokens, cost FROM u ORDER BY cost DESC, user_id LIMIT 10) x)
    )
    FROM t
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_json FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_json TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._summary_system(filters jsonb, OUT dims jsonb, OUT user_ids uuid[],
                                               OUT user_requests numeric[], OUT user_tokens numeric[],
                                               OUT user_costs numeric[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    plan record;
BEGIN
    plan := usage_analytics._whole_days(filters);
    -- EXECUTE plans with the actual documents, so the filters fold into
    -- partition pruning and index conditions.
    EXECUTE $q$
        WITH raw AS MATERIALIZED (
            SELECT f.user_id, f.agent_id, f.framework, f.provider, sum(f.requests) AS requests,
                   sum(f.successful) AS successful, sum(f.input_tokens) AS input_tokens,
                   sum(f.output_tokens) AS output_tokens, sum(f.cost_usd) AS cost, sum(f.unpriced) AS unpriced,
                   sum(f.response_time_sum_ms) AS rt_sum, sum(f.response_time_count) AS rt_count,
                   sum(f.cache_read_tokens) AS cache_read, sum(f.cache_write_tokens) AS cache_write,
                   sum(f.reasoning_tokens) AS reasoning, sum(f.cache_savings_usd) AS cache_savings,
                   sum(f.priced_tokens) AS priced_tokens
              FROM usage_analytics._usage_facts($1, '{}', $4, $5) f
             GROUP BY 1, 2, 3, 4
        ), d AS (
            SELECT agent_id, framework, provider, sum(requests) AS requests, sum(successful) AS successful,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost) AS cost,
                   sum(unpriced) AS unpriced, sum(rt_sum) AS rt_sum, sum(rt_count) AS rt_count,
                   sum(cache_read) AS cache_read, sum(cache_write) AS cache_write, sum(reasoning) AS reasoning,
                   sum(cache_savings) AS cache_savings, sum(priced_tokens) AS priced_tokens
              FROM (SELECT t.agent_id, t.framework, t.provider, t.total_requests, t.successful_requests,
                           t.total_input_tokens, t.total_output_tokens, t.total_cost_usd, t.unpriced_requests,
                           t.response_time_sum_ms, t.response_time_count, t.total_cache_read_tokens,
                           t.total_cache_write_tokens, t.total_reasoning_tokens, t.cache_savings_usd, t.priced_tokens
                      FROM usage_analytics.usage_daily_totals t WHERE t.date BETWEEN $2 AND $3
                    UNION ALL
                    SELECT agent_id, framework, provider, requests, successful, input_tokens, output_tokens,
                           cost, unpriced, rt_sum, rt_count, cache_read, cache_write, reasoning, cache_savings,
                           priced_tokens FROM raw)
                   AS x (agent_id, framework, provider, requests, successful, input_tokens, output_tokens, cost,
                         unpriced, rt_sum, rt_count, cache_read, cache_write, reasoning, cache_savings,
                         priced_tokens)
             GROUP BY 1, 2, 3
            -- A group whose rows were all deleted is no group.
            HAVING sum(requests) <> 0
        ), u AS (
            -- The day table summed per user on its own first: its integer
            -- columns sum as integers (the union with raw would make them
            -- numeric, several times slower over a month of user-days).
            SELECT user_id, sum(requests) AS requests, sum(tokens) AS tokens, sum(cost) AS cost
              FROM (SELECT d.user_id, sum(d.requests), sum(d.input_tokens + d.output_tokens), sum(d.cost_usd)
                      FROM usage_analytics.usage_daily_user d WHERE d.day BETWEEN $2 AND $3
                     GROUP BY d.user_id
                    UNION ALL
                    SELECT user_id, requests, input_tokens + output_tokens, cost FROM raw)
                   AS x (user_id, requests, tokens, cost)
             GROUP BY 1
            HAVING sum(requests) > 0
        )
        SELECT (SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]') FROM d),
               coalesce(array_agg(u.user_id), '{}'), coalesce(array_agg(u.requests), '{}'),
               coalesce(array_agg(u.tokens), '{}'), coalesce(array_agg(u.cost), '{}')
          FROM u
    $q$ INTO dims, user_ids, user_requests, user_tokens, user_costs
        USING filters, plan.first_day, plan.last_day, plan.raw_lo, plan.raw_hi;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_system FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_system TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._summary_groups(filters jsonb, OUT dims jsonb, OUT user_ids uuid[],
                                               OUT user_requests numeric[], OUT user_tokens numeric[],
                                               OUT user_costs numeric[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    plan record;
BEGIN
    plan := usage_analytics._usage_fact_plan(filters);
    EXECUTE $q$
        WITH g AS MATERIALIZED (
            SELECT f.user_id, f.agent_id, f.framework, f.provider,
                   sum(f.requests) AS requests, sum(f.successful) AS successful,
                   sum(f.input_tokens) AS input_tokens, sum(f.output_tokens) AS output_tokens,
                   sum(f.cost_usd) AS cost, sum(f.unpriced) AS unpriced,
                   sum(f.response_time_sum_ms) AS rt_sum, sum(f.response_time_count) AS rt_count,
                   sum(f.cache_read_tokens) AS cache_read, sum(f.cache_write_tokens) AS cache_write,
                   sum(f.reasoning_tokens) AS reasoning, sum(f.cache_savings_usd) AS cache_savings,
                   sum(f.priced_tokens) AS priced_tokens
              FROM usage_analytics._usage_facts($1, $2, $3, $4) f
             GROUP BY 1, 2, 3, 4
        )
        SELECT (SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]')
                  FROM (SELECT agent_id, framework, provider, sum(requests) AS requests,
                               sum(successful) AS successful, sum(input_tokens) AS input_tokens,
                               sum(output_tokens) AS output_tokens, sum(cost) AS cost, sum(unpriced) AS unpriced,
                               sum(rt_sum) AS rt_sum, sum(rt_count) AS rt_count,
                               sum(cache_read) AS cache_read, sum(cache_write) AS cache_write,
                               sum(reasoning) AS reasoning, sum(cache_savings) AS cache_savings,
                               sum(priced_tokens) AS priced_tokens
                          FROM g GROUP BY 1, 2, 3) d),
               coalesce(array_agg(u.user_id), '{}'), coalesce(array_agg(u.requests), '{}'),
               coalesce(array_agg(u.tokens), '{}'), coalesce(array_agg(u.cost), '{}')
          FROM (SELECT user_id, sum(requests) AS requests, sum(input_tokens + output_tokens) AS tokens,
                       sum(cost) AS cost
                  FROM g GROUP BY 1) u
    $q$ INTO dims, user_ids, user_requests, user_tokens, user_costs
        USING filters, plan.fresh, plan.raw_lo, plan.raw_hi;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_groups FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_groups TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._summary_parts(filters jsonb, OUT dims jsonb, OUT user_ids uuid[],
                                              OUT user_requests numeric[], OUT user_tokens numeric[],
                                              OUT user_costs numeric[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    parts record;
BEGIN
    IF usage_analytics._filter_dates_only(filters) AND usage_analytics._sees_all() THEN
        parts := usage_analytics._summary_system(filters);
    ELSE
        parts := usage_analytics._summary_groups(filters);
    END IF;
    dims := parts.dims;
    user_ids := parts.user_ids;
    user_requests := parts.user_requests;
    user_tokens := parts.user_tokens;
    user_costs := parts.user_costs;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._summary_parts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._summary_parts TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics.get_usage_summary(filters jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql STABLE
-- Its queries read small per-day tables, but their estimates can pass
-- jit_above_cost: compiling them would cost more than running them.
SET jit = off
AS $$
DECLARE
    parts record;
BEGIN
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    parts := usage_analytics._summary_parts(filters);
    RETURN usage_analytics._summary_json(parts.dims, parts.user_ids, parts.user_requests, parts.user_tokens,
                                         parts.user_costs);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.get_usage_summary FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.get_usage_summary TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._trend_days(filters jsonb)
RETURNS TABLE (day date, requests numeric, successful numeric, input_tokens numeric, output_tokens numeric,
               cost numeric, unpriced numeric, rt_sum numeric, rt_count numeric, cache_read numeric,
               cache_write numeric, reasoning numeric, cache_savings numeric, priced_tokens numeric)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    plan      record;
    facts     text;
    first_day date;
    last_day  date;
    fresh     date[];
    raw_lo    timestamptz[];
    raw_hi    timestamptz[];
BEGIN
    IF usage_analytics._filter_dates_only(filters) AND usage_analytics._sees_all() THEN
        plan := usage_analytics._whole_days(filters);
        first_day := plan.first_day;
        last_day := plan.last_day;
        raw_lo := plan.raw_lo;
        raw_hi := plan.raw_hi;
        facts := $q$
            SELECT t.date, t.total_requests, t.successful_requests, t.total_input_tokens, t.total_output_tokens,
                   t.total_cost_usd, t.unpriced_requests, t.response_time_sum_ms, t.response_time_count,
                   t.total_cache_read_tokens, t.total_cache_write_tokens, t.total_reasoning_tokens,
                   t.cache_savings_usd, t.priced_tokens
              FROM usage_analytics.usage_daily_totals t WHERE t.date BETWEEN $2 AND $3
            UNION ALL
            SELECT f.day, f.requests, f.successful, f.input_tokens, f.output_tokens, f.cost_usd, f.unpriced,
                   f.response_time_sum_ms, f.response_time_count, f.cache_read_tokens, f.cache_write_tokens,
                   f.reasoning_tokens, f.cache_savings_usd, f.priced_tokens
              FROM usage_analytics._usage_facts($1, '{}', $4, $5) f$q$;
    ELSE
        plan := usage_analytics._usage_fact_plan(filters);
        fresh := plan.fresh;
        raw_lo := plan.raw_lo;
        raw_hi := plan.raw_hi;
        facts := $q$
            SELECT f.day, f.requests, f.successful, f.input_tokens, f.output_tokens, f.cost_usd, f.unpriced,
                   f.response_time_sum_ms, f.response_time_count, f.cache_read_tokens, f.cache_write_tokens,
                   f.reasoning_tokens, f.cache_savings_usd, f.priced_tokens
              FROM usage_analytics._usage_facts($1, $6, $4, $5) f$q$;
    END IF;
    -- EXECUTE plans with the actual documents, so the filters fold into
    -- partition pruning and index conditions.
    RETURN QUERY EXECUTE format($q$
        SELECT x.day, sum(x.requests), sum(x.successful), sum(x.input_tokens), sum(x.output_tokens), sum(x.cost),
               sum(x.unpriced), sum(x.rt_sum), sum(x.rt_count), sum(x.cache_read), sum(x.cache_write),
               sum(x.reasoning), sum(x.cache_savings), sum(x.priced_tokens)
          FROM (%s) AS x (day, requests, successful, input_tokens, output_tokens, cost, unpriced, rt_sum, rt_count,
                          cache_read, cache_write, reasoning, cache_savings, priced_tokens)
         GROUP BY 1
    $q$, facts) USING filters, first_day, last_day, raw_lo, raw_hi, fresh;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._trend_days FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._trend_days TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics._trend_rows(granularity text, docs jsonb[])
RETURNS TABLE (period_start timestamptz, requests bigint, successful_requests bigint, input_tokens bigint,
               output_tokens bigint, cost_usd numeric, avg_response_time_ms numeric,
               cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
               cache_savings_usd numeric, unpriced_requests bigint, cost_per_request_usd numeric,
               tokens_per_usd numeric)
LANGUAGE sql STABLE
AS $$
    SELECT date_trunc(granularity, d.day::timestamp) AT TIME ZONE 'UTC',
           sum(d.requests)::bigint, sum(d.successful)::bigint,
           sum(d.input_tokens)::bigint, sum(d.output_tokens)::bigint, sum(d.cost),
           CASE WHEN sum(d.rt_count) > 0 THEN sum(d.rt_sum) / sum(d.rt_count) END,
           sum(d.cache_read)::bigint, sum(d.cache_write)::bigint, sum(d.reasoning)::bigint,
           sum(d.cache_savings), sum(d.unpriced)::bigint,
           CASE WHEN sum(d.requests) > sum(d.unpriced) THEN sum(d.cost) / (sum(d.requests) - sum(d.unpriced)) END,
           CASE WHEN sum(d.cost) > 0 THEN sum(d.priced_tokens) / sum(d.cost) END
      FROM unnest(docs) AS f (doc)
     CROSS JOIN LATERAL usage_analytics._trend_days(f.doc) AS d
     GROUP BY 1
    HAVING sum(d.requests) <> 0
     ORDER BY 1
$$;
REVOKE ALL ON FUNCTION usage_analytics._trend_rows FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._trend_rows TO PUBLIC;

-- from sql/summaries.sql
CREATE OR REPLACE FUNCTION usage_analytics.usage_trend(granularity text, filters jsonb DEFAULT '{}')
RETURNS TABLE (period_start timestamptz, requests bigint, successful_requests bigint, input_tokens bigint,
               output_tokens bigint, cost_usd numeric, avg_response_time_ms numeric,
               cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
               cache_savings_usd numeric, unpriced_requests bigint, cost_per_request_usd numeric,
               tokens_per_usd numeric)
LANGUAGE plpgsql STABLE
SET jit = off  -- as get_usage_summary
AS $$
BEGIN
    IF granularity IS NULL OR lower(granularity) NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'usage_trend: granularity must be day, week or month, got %',
            coalesce(quote_literal(granularity), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    RETURN QUERY SELECT * FROM usage_analytics._trend_rows(lower(granularity), ARRAY[filters]);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.usage_trend FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.usage_trend TO PUBLIC;

-- from sql/rollups.sql
CREATE OR REPLACE FUNCTION usage_analytics.rollup_daily(day date DEFAULT ((now() AT TIME ZONE 'UTC')::date - 1))
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
-- Room to hash the day's groups (20,000 for a 1M-row day, which the
-- planner, without statistics, takes for 100,000 of about 1.5 KB each with
-- their sums' states) instead of sorting the day's rows: hash tables of at
-- most 128 MB in the leader and in each parallel worker (a cap, not an
-- allocation; popular_actions' counts, outside that cap, add up to half as
-- much again: src/top_actions.rs). With less, the planner sorts, about 25%
-- slower.
SET work_mem = '64MB'
SET hash_mem_multiplier = 2
AS $$
DECLARE
    target  date := rollup_daily.day;
    lo      timestamptz;
    hi      timestamptz;
    source  bigint;
    changed bigint;
    written integer;
    last_seen timestamptz;
    groups  text;
    -- The rollup rows' ids are time-ordered, in the UUIDv7 layout (48 bits of
    -- Unix milliseconds, version 7, 12 random bits, variant, 62 random
    -- bits): a day's rows then go to the right-hand end of the primary key's
    -- index (in random order there) instead of each to a random page of it,
    -- a quarter of the insert. PostgreSQL 15 has no uuidv7(). The random
    -- bits come from random(): ids need to be unique, not unpredictable, and
    -- gen_random_uuid() (OpenSSL's generator) took twice as long per row.
    id_high bigint := (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16) | x'7000'::integer;
BEGIN
    PERFORM usage_analytics._require_admin('rollup_daily');
    IF target IS NULL THEN
        RAISE EXCEPTION 'rollup_daily: day must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(target) THEN
        RAISE EXCEPTION 'rollup_daily: day must be a finite date, got %', target
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A day whose partition retention removed keeps the rollup it had: its
    -- rows are gone, and rebuilding would write an empty day.
    IF EXISTS (SELECT 1 FROM usage_analytics.retention_policy p
                WHERE target < (p.removed_before AT TIME ZONE 'UTC')::date) THEN
        RETURN 0;
    END IF;
    lo := target::timestamp AT TIME ZONE 'UTC';
    hi := (target + 1)::timestamp AT TIME ZONE 'UTC';
    INSERT INTO usage_analytics.rollup_state (day, rolled_at, source_requests, rows_written)
    VALUES (target, '-infinity', -1, 0)
    ON CONFLICT ON CONSTRAINT rollup_state_pkey DO NOTHING;
    PERFORM 1 FROM usage_analytics.rollup_state s WHERE s.day = target FOR UPDATE;

    -- Counted before the aggregate: a row committed in between makes the day
    -- look stale (read from raw rows), never fresh while incomplete.
    SELECT coalesce(sum(d.requests), 0), coalesce(sum(d.changes), 0) INTO source, changed
      FROM usage_analytics.usage_daily_user d WHERE d.day = target;

    DELETE FROM usage_analytics.agent_performance_metrics WHERE date = target;
    -- One scan of the day, grouped by the rollup's key, with popular_actions
    -- counted by the aggregate _top_actions on the way (see
    -- src/top_actions.rs), into a temporary table: CREATE TABLE AS may use
    -- parallel workers (an INSERT … SELECT may not), and this aggregate is
    -- most of the rollup. Later days of the same transaction (rollup_range)
    -- reuse the table, so a range takes no new locks per day.
    groups := format($q$
        SELECT u.user_id, u.agent_id, u.framework, u.provider,
               max(u.agent_name) AS agent_name,
               count(*) AS requests, count(*) FILTER (WHERE u.success) AS successful,
               coalesce(sum(u.input_tokens), 0) AS input_tokens, coalesce(sum(u.output_tokens), 0) AS output_tokens,
               coalesce(sum(u.cost_usd), 0) AS cost, count(*) FILTER (WHERE u.cost_usd IS NULL) AS unpriced,
               coalesce(sum(u.response_time_ms), 0) AS rt_sum, count(u.response_time_ms) AS rt_count,
               coalesce(sum(u.cache_read_tokens), 0) AS cache_read,
               coalesce(sum(u.cache_write_tokens::bigint + u.cache_write_1h_tokens), 0) AS cache_write,
               coalesce(sum(u.reasoning_tokens), 0) AS reasoning,
               coalesce(sum(u.cache_savings_usd), 0) AS cache_savings,
               coalesce(sum(u.input_tokens::bigint + u.output_tokens) FILTER (WHERE u.cost_usd IS NOT NULL), 0)
                   AS priced_tokens,
               usage_analytics._top_actions(coalesce(u.request_metadata->>'action', u.message_type, 'unknown'))
                   AS popular_actions
          FROM usage_analytics.agent_usage_detailed u
         WHERE u."timestamp" >= %L AND u."timestamp" < %L
         GROUP BY 1, 2, 3, 4
    $q$, lo, hi);
    IF to_regclass('pg_temp.rollup_groups') IS NULL THEN
        EXECUTE 'CREATE TEMP TABLE rollup_groups ON COMMIT DROP AS ' || groups;
    ELSE
        TRUNCATE pg_temp.rollup_groups;
        EXECUTE 'INSERT INTO pg_temp.rollup_groups ' || groups;
    END IF;
    INSERT INTO usage_analytics.agent_performance_metrics
        (id, user_id, agent_id, agent_name, framework, provider, date, total_requests, successful_requests,
         failed_requests, total_input_tokens, total_output_tokens, total_tokens, total_cost_usd,
         avg_response_time_ms, popular_actions, unpriced_requests, response_time_sum_ms, response_time_count,
         total_cache_read_tokens, total_cache_write_tokens, total_reasoning_tokens, cache_savings_usd, priced_tokens)
    SELECT encode(int8send(id_high | floor(random() * 4096)::bigint)
                  || int8send((-9223372036854775808)::bigint | (floor(random() * 2147483648)::bigint << 31)
                              | floor(random() * 2147483648)::bigint), 'hex')::uuid,
           f.user_id, f.agent_id, f.agent_name, f.framework, f.provider, target,
           f.requests, f.successful, f.requests - f.successful,
           f.input_tokens, f.output_tokens, f.input_tokens + f.output_tokens, f.cost,
           CASE WHEN f.rt_count > 0 THEN round(f.rt_sum::numeric / f.rt_count) END,
           f.popular_actions, f.unpriced, f.rt_sum, f.rt_count,
           f.cache_read, f.cache_write, f.reasoning, f.cache_savings, f.priced_tokens
      FROM pg_temp.rollup_groups f;
    GET DIAGNOSTICS written = ROW_COUNT;
    -- Read after the aggregate, so no row the rollup covered lies after it.
    SELECT max(u."timestamp") INTO last_seen FROM usage_analytics.agent_usage_detailed u
     WHERE u."timestamp" >= lo AND u."timestamp" < hi;

    -- The system row is derived from the day's groups, the per-agent rows
    -- just written (read from the temporary table: no index scan of them).
    DELETE FROM usage_analytics.system_analytics WHERE date = target;
    WITH RECURSIVE m AS (
        SELECT user_id, agent_id, agent_name, framework, provider, requests AS total_requests,
               successful AS successful_requests, input_tokens AS total_input_tokens,
               output_tokens AS total_output_tokens, input_tokens + output_tokens AS total_tokens,
               cost AS total_cost_usd, unpriced AS unpriced_requests, rt_sum AS response_time_sum_ms,
               rt_count AS response_time_count
          FROM pg_temp.rollup_groups
    ), per_user AS (
        -- Each grouping read once: active users and the top users come from
        -- one, the provider's cost and usage from the other.
        SELECT user_id, sum(total_requests) AS requests, sum(total_tokens) AS tokens, sum(total_cost_usd) AS cost
          FROM m GROUP BY 1
    ), per_provider AS (
        SELECT coalesce(provider, 'unknown') AS k, sum(total_requests) AS r, sum(total_cost_usd) AS c,
               sum(total_tokens) AS tk
          FROM m GROUP BY 1
    ), t AS (
        SELECT coalesce(sum(total_requests), 0) AS requests, coalesce(sum(successful_requests), 0) AS successful,
               coalesce(sum(total_input_tokens), 0) AS input_tokens,
               coalesce(sum(total_output_tokens), 0) AS output_tokens,
               coalesce(sum(total_cost_usd), 0) AS cost, coalesce(sum(unpriced_requests), 0) AS unpriced,
               sum(response_time_sum_ms) AS rt_sum, coalesce(sum(response_time_count), 0) AS rt_count,
               (SELECT count(user_id) FROM per_user) AS active_users
          FROM m
    ), first_days AS (
        -- Each user's first day, by a loose index scan over (user_id, day):
        -- one probe per user gives the next user and that user's first day,
        -- instead of reading all history. Only that index gives user_id
        -- order, so the plan does not hang on statistics: with a condition
        -- on day in the probe, a day older than the last ANALYZE looked
        -- empty and the planner walked the (day, …) key instead, reading
        -- every earlier day per user (46 s at 5,000 users for a day loaded
        -- after the ANALYZE).
        (SELECT d.user_id, d.day FROM usage_analytics.usage_daily_user d ORDER BY d.user_id, d.day LIMIT 1)
        UNION ALL
        SELECT n.user_id, n.day
          FROM first_days f
         CROSS JOIN LATERAL (SELECT d.user_id, d.day FROM usage_analytics.usage_daily_user d
                              WHERE d.user_id > f.user_id ORDER BY d.user_id, d.day LIMIT 1) n
    ), users AS (
        -- Users with usage up to that day, and those whose first day it is.
        SELECT count(*) FILTER (WHERE f.day <= target) AS total_users,
               count(*) FILTER (WHERE f.day = target) AS new_users
          FROM first_days f
    )
    INSERT INTO usage_analytics.system_analytics
        (date, total_users, active_users, new_users, total_requests, successful_requests, failed_requests,
         total_input_tokens, total_output_tokens, total_tokens, total_cost_usd, cost_by_provider,
         avg_response_time_ms, success_rate, popular_agents, framework_usage, provider_usage,
         top_users_by_usage, unpriced_requests)
    SELECT target, users.total_users, t.active_users, users.new_users,
           t.requests, t.successful, t.requests - t.successful,
           t.input_tokens, t.output_tokens, t.input_tokens + t.output_tokens, t.cost,
           (SELECT coalesce(jsonb_object_agg(k, c ORDER BY k), '{}') FROM per_provider),
           CASE WHEN t.rt_count > 0 THEN round(t.rt_sum::numeric / t.rt_count) END,
           CASE WHEN t.requests > 0 THEN round(100.0 * t.successful / t.requests, 2) END,
           (SELECT coalesce(jsonb_agg(jsonb_build_object('agent_id', agent_id, 'agent_name', agent_name,
                                                         'requests', requests, 'cost_usd', cost)
                                      ORDER BY requests DESC, agent_id), '[]')
              FROM (SELECT agent_id, max(agent_name) agent_name, sum(total_requests) requests,
                           sum(total_cost_usd) cost
                      FROM m GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 10) x),
           (SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('requests', r, 'cost_usd', c, 'tokens', tk)
                                             ORDER BY k), '{}')
              FROM (SELECT coalesce(framework, 'unknown') k, sum(total_requests) r, sum(total_cost_usd) c,
                           sum(total_tokens) tk
                      FROM m GROUP BY 1) x),
           (SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('requests', r, 'cost_usd', c, 'tokens', tk)
                                             ORDER BY k), '{}')
              FROM per_provider),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'requests', requests,
                                                         'total_tokens', tokens, 'cost_usd', cost)
                                      ORDER BY cost DESC, user_id), '[]')
              FROM (SELECT * FROM per_user ORDER BY cost DESC, user_id LIMIT 10) x),
           t.unpriced
      FROM t, users;

    UPDATE usage_analytics.rollup_state s
       SET rolled_at = clock_timestamp(), source_requests = source, rows_written = written + 1,
           max_timestamp = last_seen, source_changes = changed
     WHERE s.day = target;
    RETURN written + 1;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.rollup_daily FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.rollup_daily TO usage_analytics_admin;

-- from sql/rollups.sql
CREATE OR REPLACE FUNCTION usage_analytics.rollup_range(from_day date, to_day date)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    total integer := 0;
BEGIN
    IF from_day IS NULL OR to_day IS NULL THEN
        RAISE EXCEPTION 'rollup_range: from_day and to_day must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_day < from_day THEN
        RAISE EXCEPTION 'rollup_range: to_day (%) is before from_day (%)', to_day, from_day
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_day - from_day > 3660 THEN
        RAISE EXCEPTION 'rollup_range: at most 3661 days per call, got %', to_day - from_day + 1
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. to_day - from_day LOOP
        total := total + usage_analytics.rollup_daily(from_day + i);
    END LOOP;
    RETURN total;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.rollup_range FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.rollup_range TO usage_analytics_admin;

-- from sql/rollups.sql
CREATE OR REPLACE PROCEDURE usage_analytics.run_maintenance()
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM usage_analytics.ensure_partitions();
    COMMIT;
    PERFORM usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date - 1);
    COMMIT;
    PERFORM usage_analytics.rollup_daily((now() AT TIME ZONE 'UTC')::date);
    COMMIT;
    PERFORM usage_analytics._compact_bookkeeping();
    COMMIT;
    PERFORM usage_analytics.budget_maintenance();
    COMMIT;
    IF EXISTS (SELECT 1 FROM usage_analytics.apply_retention()) THEN
        COMMIT;
        PERFORM usage_analytics.forget_unused_search_texts();
    END IF;
    COMMIT;
    PERFORM usage_analytics._forget_removed_span_claims();
    COMMIT;
END;
$$;
REVOKE ALL ON PROCEDURE usage_analytics.run_maintenance FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE usage_analytics.run_maintenance TO usage_analytics_admin;

-- from sql/rollups.sql
CREATE OR REPLACE FUNCTION usage_analytics.run_scheduled_maintenance()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    written integer;
BEGIN
    PERFORM usage_analytics.ensure_partitions();
    written := usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date);
    PERFORM usage_analytics._compact_bookkeeping();
    PERFORM usage_analytics.budget_maintenance();
    IF EXISTS (SELECT 1 FROM usage_analytics.apply_retention()) THEN
        PERFORM usage_analytics.forget_unused_search_texts();
    END IF;
    PERFORM usage_analytics._forget_removed_span_claims();
    RETURN written;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.run_scheduled_maintenance FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.run_scheduled_maintenance TO usage_analytics_admin;

-- from sql/rollups.sql
CREATE OR REPLACE FUNCTION usage_analytics.schedule_rollups(schedule text DEFAULT '*/15 * * * *')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM usage_analytics._require_admin('schedule_rollups');
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'schedule_rollups: pg_cron is not installed in database %', current_database()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name = '''
                         || current_database() || ''', restart, then CREATE EXTENSION pg_cron. '
                         || 'Or schedule CALL usage_analytics.run_maintenance() with any scheduler.';
    END IF;
    IF schedule IS NULL OR btrim(schedule) = '' THEN
        RAISE EXCEPTION 'schedule_rollups: schedule must be a cron expression such as ''*/15 * * * *'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
        INTO job
        USING 'usage_analytics_rollups', schedule, 'CALL usage_analytics.run_maintenance()';
    PERFORM usage_analytics._audit('schedule_rollups',
            'usage_analytics_rollups', jsonb_build_object('schedule', schedule, 'job_id', job));
    RETURN job;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.schedule_rollups FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.schedule_rollups TO usage_analytics_admin;

-- from sql/self_test.sql
CREATE OR REPLACE FUNCTION usage_analytics.self_test()
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

-- sql/price_catalog.sql, new in this version, whole
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


-- sql/budgets.sql, new in this version, whole
-- Budgets: their tables, periods and scope, defining them (admins, audited)
-- and their status. How spend is booked and thresholds are alerted:
-- budget_spend.sql; reservations: budget_reservations.sql; forecasts:
-- forecasts.sql; cost recommendations: recommendations.sql.
--
-- Spent is a ledger, not on-demand sums: budget_spend holds the exact spent
-- per (budget, period, shard); budget_spend.sql tells how and why.

CREATE TABLE usage_analytics.budgets (
    id               bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL UNIQUE CHECK (btrim(name) <> ''),
    -- As given (normalised): any of user_id, agent_id, framework, provider, model.
    scope            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    scope_user_id    uuid,
    scope_agent_id   text,
    scope_framework  text,
    scope_provider   text,
    scope_model      text,
    period           text        NOT NULL CHECK (period IN ('day', 'week', 'month', 'total')),
    limit_usd        numeric     NOT NULL CHECK (limit_usd >= 0 AND limit_usd < 'Infinity'),
    enforcement      text        NOT NULL CHECK (enforcement IN ('hard', 'soft')),
    timezone         text        NOT NULL,
    alert_thresholds numeric[]   NOT NULL,
    -- Spend is booked for periods starting at or after this (the period in
    -- force when the budget's scope, period or timezone was last set).
    tracked_from     timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX budgets_scope_user_id_idx ON usage_analytics.budgets (scope_user_id);

-- The ledger: exact spent per budget period, one shard per writing backend
-- (0: folded shards of exited backends, and the set_budget backfill).
CREATE TABLE usage_analytics.budget_spend (
    budget_id    bigint      NOT NULL,
    period_start timestamptz NOT NULL,
    shard        integer     NOT NULL,
    spent_usd    numeric     NOT NULL,
    PRIMARY KEY (budget_id, period_start, shard)
);

CREATE TABLE usage_analytics.budget_reservations (
    reservation_id uuid        NOT NULL,
    budget_id      bigint      NOT NULL,
    period_start   timestamptz NOT NULL,
    amount_usd     numeric     NOT NULL CHECK (amount_usd >= 0),
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reservation_id, budget_id)
);
CREATE INDEX budget_reservations_budget_idx
    ON usage_analytics.budget_reservations (budget_id, period_start, expires_at);

CREATE TABLE usage_analytics.budget_events (
    id           bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    budget_id    bigint      NOT NULL,
    budget_name  text        NOT NULL,
    scope        jsonb       NOT NULL,
    period_start timestamptz NOT NULL,
    threshold    numeric     NOT NULL,
    limit_usd    numeric     NOT NULL,
    spent_usd    numeric     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (budget_id, period_start, threshold)
);

ALTER TABLE usage_analytics.budgets ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON usage_analytics.budgets FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));
ALTER TABLE usage_analytics.budget_spend ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.budget_reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.budget_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON usage_analytics.budget_events FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));
REVOKE ALL ON usage_analytics.budgets, usage_analytics.budget_spend, usage_analytics.budget_reservations,
              usage_analytics.budget_events FROM PUBLIC;
GRANT SELECT ON usage_analytics.budgets, usage_analytics.budget_events TO usage_analytics_admin;

-- ---------------------------------------------------------------------------
-- Periods: calendar day, ISO week (Monday) or month in the budget's
-- timezone; total is one period starting at -infinity.

CREATE FUNCTION usage_analytics._budget_period_start(period text, tz text, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN period = 'total' THEN '-infinity'::timestamptz
                ELSE date_trunc(period, at AT TIME ZONE tz) AT TIME ZONE tz END
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_period_start FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._budget_period_start TO PUBLIC;

CREATE FUNCTION usage_analytics._budget_period_end(period text, tz text, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN period = 'total' THEN 'infinity'::timestamptz
                ELSE (date_trunc(period, at AT TIME ZONE tz) + ('1 ' || period)::interval) AT TIME ZONE tz END
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_period_end FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._budget_period_end TO PUBLIC;

-- Whether a request falls in a budget's scope: every scope key the budget
-- sets matches (an unset key matches anything). Plain SQL, so the planner
-- inlines it into the queries that use it.
CREATE FUNCTION usage_analytics._budget_in_scope(b usage_analytics.budgets, user_id uuid, agent_id text,
                                                framework text, provider text, model text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (b.scope_user_id IS NULL OR b.scope_user_id = user_id)
       AND (b.scope_agent_id IS NULL OR b.scope_agent_id = agent_id)
       AND (b.scope_framework IS NULL OR b.scope_framework = framework)
       AND (b.scope_provider IS NULL OR b.scope_provider = provider)
       AND (b.scope_model IS NULL OR b.scope_model = model)
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_in_scope FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Spent.

-- Spent per budget period: the sum of its shards.
CREATE FUNCTION usage_analytics._budget_spent(budget_id bigint, period_start timestamptz) RETURNS numeric
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(sum(s.spent_usd), 0) FROM usage_analytics.budget_spend s
     WHERE s.budget_id = $1 AND s.period_start = $2
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_spent FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Defining budgets (admins, audited).

CREATE FUNCTION usage_analytics.set_budget(name text, scope jsonb, period text, limit_usd numeric,
                                           enforcement text DEFAULT 'hard', timezone text DEFAULT 'UTC',
                                           alert_thresholds numeric[] DEFAULT '{0.5,0.8,1.0}')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    n          text := btrim(set_budget.name);
    p          text := lower(btrim(set_budget.period));
    e          text := lower(btrim(set_budget.enforcement));
    tz         text := btrim(set_budget.timezone);
    s          jsonb := coalesce(set_budget.scope, '{}'::jsonb);
    k          text;
    v          jsonb;
    norm       jsonb := '{}'::jsonb;
    thresholds numeric[];
    old        usage_analytics.budgets;
    bid        bigint;
    ps         timestamptz;
    redefine   boolean;
BEGIN
    PERFORM usage_analytics._require_admin('set_budget');
    IF n IS NULL OR n = '' THEN
        RAISE EXCEPTION 'set_budget: name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(s) <> 'object' THEN
        RAISE EXCEPTION 'set_budget: scope must be a JSON object, got %', jsonb_typeof(s)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(s) LOOP
        IF k NOT IN ('user_id', 'agent_id', 'framework', 'provider', 'model') THEN
            RAISE EXCEPTION 'set_budget: unknown scope key "%" (allowed: user_id, agent_id, framework, provider, model)', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = '' THEN
            RAISE EXCEPTION 'set_budget: scope key "%" must be a non-empty string', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF k = 'user_id' THEN
            BEGIN
                norm := norm || jsonb_build_object(k, (v #>> '{}')::uuid);
            EXCEPTION WHEN invalid_text_representation THEN
                RAISE EXCEPTION 'set_budget: scope key "user_id" must be a UUID, got %', v
                    USING ERRCODE = 'invalid_parameter_value';
            END;
        ELSIF k IN ('provider', 'model') THEN
            norm := norm || jsonb_build_object(k, lower(btrim(v #>> '{}')));
        ELSE
            norm := norm || jsonb_build_object(k, v #>> '{}');
        END IF;
    END LOOP;
    IF p IS NULL OR p NOT IN ('day', 'week', 'month', 'total') THEN
        RAISE EXCEPTION 'set_budget: unknown period %, expected day, week, month or total',
            coalesce(quote_literal(set_budget.period), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_budget.limit_usd IS NULL OR set_budget.limit_usd < 0 OR set_budget.limit_usd = 'NaN'
       OR set_budget.limit_usd >= 'Infinity' THEN
        RAISE EXCEPTION 'set_budget: limit_usd must be a finite amount >= 0, got %',
            coalesce(set_budget.limit_usd::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF e IS NULL OR e NOT IN ('hard', 'soft') THEN
        RAISE EXCEPTION 'set_budget: unknown enforcement %, expected hard or soft',
            coalesce(quote_literal(set_budget.enforcement), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tz IS NULL OR tz = '' THEN
        RAISE EXCEPTION 'set_budget: unknown timezone NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        PERFORM now() AT TIME ZONE tz;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'set_budget: unknown timezone %', quote_literal(tz) USING ERRCODE = 'invalid_parameter_value';
    END;
    IF set_budget.alert_thresholds IS NULL OR array_position(set_budget.alert_thresholds, NULL) IS NOT NULL
       OR EXISTS (SELECT 1 FROM unnest(set_budget.alert_thresholds) t WHERE t <= 0 OR t = 'NaN' OR t > 1000) THEN
        RAISE EXCEPTION 'set_budget: alert_thresholds must be fractions of the limit > 0 (1.0 = the limit), got %',
            coalesce(set_budget.alert_thresholds::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    thresholds := ARRAY(SELECT DISTINCT trim_scale(t) FROM unnest(set_budget.alert_thresholds) t ORDER BY 1);

    -- Writers in flight finish first and new ones wait until this commits,
    -- so every row is booked exactly once: by the backfill below or by the
    -- trigger of a writer that sees this budget.
    LOCK TABLE usage_analytics.agent_usage_detailed IN SHARE MODE;

    SELECT * INTO old FROM usage_analytics.budgets b WHERE b.name = n FOR UPDATE;
    redefine := old.id IS NULL OR old.scope <> norm OR old.period <> p OR old.timezone <> tz;
    ps := usage_analytics._budget_period_start(p, tz, now());
    IF old.id IS NULL THEN
        INSERT INTO usage_analytics.budgets AS b (name, scope, scope_user_id, scope_agent_id, scope_framework,
                                                  scope_provider, scope_model, period, limit_usd, enforcement,
                                                  timezone, alert_thresholds, tracked_from)
        VALUES (n, norm, (norm ->> 'user_id')::uuid, norm ->> 'agent_id', norm ->> 'framework',
                norm ->> 'provider', norm ->> 'model', p, set_budget.limit_usd, e, tz, thresholds, ps)
        RETURNING b.id INTO bid;
    ELSE
        bid := old.id;
        UPDATE usage_analytics.budgets b
           SET scope = norm, scope_user_id = (norm ->> 'user_id')::uuid, scope_agent_id = norm ->> 'agent_id',
               scope_framework = norm ->> 'framework', scope_provider = norm ->> 'provider',
               scope_model = norm ->> 'model', period = p, limit_usd = set_budget.limit_usd, enforcement = e,
               timezone = tz, alert_thresholds = thresholds,
               tracked_from = CASE WHEN redefine THEN ps ELSE b.tracked_from END, updated_at = now()
         WHERE b.id = bid;
        IF redefine THEN
            DELETE FROM usage_analytics.budget_spend sp WHERE sp.budget_id = bid;
            DELETE FROM usage_analytics.budget_reservations r WHERE r.budget_id = bid;
        END IF;
        IF redefine OR old.limit_usd <> set_budget.limit_usd OR old.alert_thresholds <> thresholds THEN
            -- New thresholds: the current period's crossings are judged afresh.
            DELETE FROM usage_analytics.budget_events ev
             WHERE ev.budget_id = bid AND ev.period_start >= usage_analytics._budget_period_start(p, tz, now());
        END IF;
    END IF;
    IF redefine THEN
        -- Book the current period (total: everything) from the rows.
        INSERT INTO usage_analytics.budget_spend (budget_id, period_start, shard, spent_usd)
        SELECT bid, usage_analytics._budget_period_start(p, tz, u."timestamp"), 0, sum(u.cost_usd)
          FROM usage_analytics.agent_usage_detailed u
         WHERE u."timestamp" >= ps AND u.cost_usd IS NOT NULL AND u.cost_usd <> 0
           AND ((norm ->> 'user_id') IS NULL OR u.user_id = (norm ->> 'user_id')::uuid)
           AND ((norm ->> 'agent_id') IS NULL OR u.agent_id = norm ->> 'agent_id')
           AND ((norm ->> 'framework') IS NULL OR u.framework = norm ->> 'framework')
           AND ((norm ->> 'provider') IS NULL OR u.provider = norm ->> 'provider')
           AND ((norm ->> 'model') IS NULL OR u.model = norm ->> 'model')
         GROUP BY 2;
    END IF;
    PERFORM usage_analytics._budget_record_crossings(ARRAY[bid || '@' || extract(epoch FROM ps)]);
    PERFORM usage_analytics._audit('set_budget', n,
            jsonb_build_object('session_user', session_user, 'budget_id', bid, 'scope', norm, 'period', p,
                               'limit_usd', set_budget.limit_usd, 'enforcement', e, 'timezone', tz,
                               'alert_thresholds', to_jsonb(thresholds),
                               'old', CASE WHEN old.id IS NOT NULL THEN jsonb_build_object(
                                   'scope', old.scope, 'period', old.period, 'limit_usd', old.limit_usd,
                                   'enforcement', old.enforcement, 'timezone', old.timezone,
                                   'alert_thresholds', to_jsonb(old.alert_thresholds)) END));
    RETURN bid;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.set_budget FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.set_budget TO usage_analytics_admin;

-- Deletes a budget with its ledger and reservations (its events stay, as
-- history). Returns whether it existed.
CREATE FUNCTION usage_analytics.delete_budget(name text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    gone usage_analytics.budgets;
BEGIN
    PERFORM usage_analytics._require_admin('delete_budget');
    DELETE FROM usage_analytics.budgets b WHERE b.name = btrim(delete_budget.name) RETURNING * INTO gone;
    IF gone.id IS NULL THEN
        RETURN false;
    END IF;
    DELETE FROM usage_analytics.budget_spend s WHERE s.budget_id = gone.id;
    DELETE FROM usage_analytics.budget_reservations r WHERE r.budget_id = gone.id;
    PERFORM usage_analytics._audit('delete_budget', gone.name,
            jsonb_build_object('session_user', session_user, 'budget_id', gone.id, 'scope', gone.scope,
                               'period', gone.period, 'limit_usd', gone.limit_usd,
                               'enforcement', gone.enforcement));
    RETURN true;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.delete_budget FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.delete_budget TO usage_analytics_admin;

-- ---------------------------------------------------------------------------
-- Status.

-- Every budget's current period, unfiltered (callers filter). projected:
-- the run rate so far extended to the period's end (spent x period length /
-- elapsed, elapsed at least one hour); NULL for period total.
CREATE FUNCTION usage_analytics._budget_state()
RETURNS TABLE (id bigint, name text, scope jsonb, scope_user_id uuid, period text, period_start timestamptz,
               period_end timestamptz, limit_usd numeric, spent_usd numeric, reserved_usd numeric,
               remaining_usd numeric, utilization numeric, enforcement text, projected_spend_usd numeric)
LANGUAGE sql STABLE
AS $$
    SELECT b.id, b.name, b.scope, b.scope_user_id, b.period,
           CASE WHEN b.period <> 'total' THEN c.ps END,
           CASE WHEN b.period <> 'total' THEN usage_analytics._budget_period_end(b.period, b.timezone, now()) END,
           b.limit_usd, c.spent, c.reserved,
           b.limit_usd - c.spent - c.reserved,
           CASE WHEN b.limit_usd > 0 THEN round(c.spent / b.limit_usd, 6) END,
           b.enforcement,
           CASE WHEN b.period <> 'total' THEN round(c.spent * extract(epoch FROM
                    usage_analytics._budget_period_end(b.period, b.timezone, now()) - c.ps)
                / greatest(extract(epoch FROM now() - c.ps), 3600), 6) END
      FROM usage_analytics.budgets b
     CROSS JOIN LATERAL (
            SELECT p.ps, usage_analytics._budget_spent(b.id, p.ps) AS spent,
                   (SELECT coalesce(sum(r.amount_usd), 0) FROM usage_analytics.budget_reservations r
                     WHERE r.budget_id = b.id AND r.period_start = p.ps AND r.expires_at > now()) AS reserved
              FROM (SELECT usage_analytics._budget_period_start(b.period, b.timezone, now()) AS ps) p
            -- Not pulled up into the outer query, which would repeat the
            -- ledger sum in every column that uses it.
            OFFSET 0
           ) c
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_state FROM PUBLIC;

-- Admins see every budget; everyone else the budgets scoped to their own
-- user_id (current_user_id()).
CREATE FUNCTION usage_analytics.budget_status(name text DEFAULT NULL)
RETURNS TABLE (name text, scope jsonb, period text, period_start timestamptz, period_end timestamptz,
               limit_usd numeric, spent_usd numeric, reserved_usd numeric, remaining_usd numeric,
               utilization numeric, enforcement text, projected_spend_usd numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT s.name, s.scope, s.period, s.period_start, s.period_end, s.limit_usd, s.spent_usd, s.reserved_usd,
           s.remaining_usd, s.utilization, s.enforcement, s.projected_spend_usd
      FROM usage_analytics._budget_state() s
     WHERE (budget_status.name IS NULL OR s.name = btrim(budget_status.name))
       AND (usage_analytics.is_admin()
            OR s.scope_user_id = usage_analytics.current_user_id())
     ORDER BY s.name
$$;
REVOKE ALL ON FUNCTION usage_analytics.budget_status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.budget_status TO PUBLIC;

-- The exporter's budget gauges (constant cost per budget: ledger shards and
-- live reservations only). utilization_ratio = spent / limit (NULL for a
-- zero limit).
CREATE FUNCTION usage_analytics.metrics_budgets()
RETURNS TABLE (budget text, period text, enforcement text, limit_usd numeric, spent_usd numeric,
               reserved_usd numeric, utilization_ratio numeric, projected_spend_usd numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
    SELECT s.name, s.period, s.enforcement, s.limit_usd, s.spent_usd, s.reserved_usd, s.utilization,
           s.projected_spend_usd
      FROM usage_analytics._budget_state() s
     ORDER BY s.name
$$;
REVOKE ALL ON FUNCTION usage_analytics.metrics_budgets FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.metrics_budgets TO usage_analytics_monitor, usage_analytics_admin;


-- sql/budget_spend.sql, new in this version, whole
-- Budget spend: booking each statement's priced rows into the ledger, and
-- threshold events. The budget tables are in budgets.sql.
--
-- Spent accounting: a ledger, not on-demand sums. budget_spend holds the
-- exact spent per (budget, period, shard), shard = the writing backend's pid
-- as for usage_counters. Statement triggers on the usage table (inserts,
-- updates, deletes; COPY and every writer included) join the statement's
-- transition table with the budgets whose scope matches and upsert their own
-- shard only, so writers never wait for each other's bookkeeping; spent is
-- the sum of a budget period's shards (a handful of rows). Computing spent on
-- demand would cost a scan of the period's matching rows at every
-- authorize_request and status call, and no index serves every scope (a
-- provider- or model-wide month is a partition scan). Rows in periods before
-- the budget was (re)defined are not booked (tracked_from): set_budget
-- books the current period (or, for period total, everything) from the rows.
--
-- Threshold events (exactly once, never missed): a deferred constraint
-- trigger on the ledger runs at COMMIT of each transaction that booked spend.
-- It locks the budgets it touched (FOR NO KEY UPDATE, in id order, so two
-- committers never deadlock) and only then sums the shards: READ COMMITTED
-- gives the statement after the lock a snapshot with every transaction that
-- committed before, so of two writers that cross a threshold together the
-- later committer sees both and records the crossing. Writers wait for each
-- other only during the commit of a transaction that spent on the same
-- budget, never while a transaction is open. An event is a row of
-- budget_events, unique on (budget, period_start, threshold), inserted with
-- ON CONFLICT DO NOTHING; NOTIFY usage_analytics_budget is sent only for an
-- inserted row, so exactly once per threshold per period.

-- ---------------------------------------------------------------------------
-- Booking spend from the usage table's statement triggers.

-- Remembers (transaction-locally) the budget periods this transaction
-- booked, for the commit-time threshold check.
CREATE FUNCTION usage_analytics._budget_note_touched(keys text) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF keys IS NOT NULL AND keys <> '' THEN
        PERFORM set_config('pg_usage_analytics_budgets.touched',
                           concat_ws(',', nullif(current_setting('pg_usage_analytics_budgets.touched', true), ''), keys),
                           true);
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_note_touched FROM PUBLIC;

-- Books each statement's priced rows against every matching budget and
-- period (from tracked_from on) in this backend's shard, in plain SQL planned
-- once per session. As for _count_usage, each trigger names its transition
-- table usage_rows and passes TG_ARGV[0] = 1 to add the rows (inserts, the
-- new rows of updates) or -1 to subtract them (deletes, the old rows of
-- updates). Inserts first release the reservations their rows were
-- authorized under. The periods that grew are noted for the commit-time
-- threshold check.
CREATE FUNCTION usage_analytics._budget_book_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
-- Planned once per session, as _count_usage (see there).
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    sign    integer := TG_ARGV[0]::integer;
    touched text;
BEGIN
    IF usage_analytics._restoring() THEN
        RETURN NULL;
    END IF;
    -- Row locks in key order; no budget lock needed: releasing only lowers
    -- reserved. Only for statements with a row that names a reservation (most
    -- inserts come without), looked for among the statement's rows first:
    -- budget_reservations is a queue whose released rows leave empty pages
    -- until VACUUM, and finding out that it has no row reads every page (a
    -- tenth of a plain insert's time after a burst of reservations).
    IF TG_OP = 'INSERT'
       AND EXISTS (SELECT 1 FROM usage_rows n WHERE n.request_metadata ? 'reservation_id')
       AND EXISTS (SELECT 1 FROM usage_analytics.budget_reservations) THEN
        DELETE FROM usage_analytics.budget_reservations r
         WHERE (r.reservation_id, r.budget_id) IN (
                SELECT x.reservation_id, x.budget_id FROM usage_analytics.budget_reservations x
                 WHERE x.reservation_id IN (
                        SELECT (n.request_metadata ->> 'reservation_id')::uuid FROM usage_rows n
                         WHERE n.request_metadata ->> 'reservation_id'
                               ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$')
                 ORDER BY x.reservation_id, x.budget_id
                   FOR UPDATE);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM usage_analytics.budgets) THEN
        RETURN NULL;
    END IF;
    WITH hit AS (
        SELECT b.id, usage_analytics._budget_period_start(b.period, b.timezone, r."timestamp") AS period_start,
               b.tracked_from, sum(r.cost_usd) AS amount
          FROM usage_rows r
          JOIN usage_analytics.budgets b
            ON usage_analytics._budget_in_scope(b, r.user_id, r.agent_id, r.framework, r.provider, r.model)
         WHERE r.cost_usd IS NOT NULL AND r.cost_usd <> 0
         GROUP BY 1, 2, 3
    ), booked AS (
        INSERT INTO usage_analytics.budget_spend AS s (budget_id, period_start, shard, spent_usd)
        SELECT id, period_start, pg_backend_pid(), sign * amount
          FROM hit
         WHERE period_start >= tracked_from
         ORDER BY id, period_start
        ON CONFLICT (budget_id, period_start, shard) DO UPDATE SET spent_usd = s.spent_usd + excluded.spent_usd
        RETURNING budget_id, period_start
    )
    SELECT string_agg(budget_id || '@' || extract(epoch FROM period_start), ',') INTO touched FROM booked;
    IF sign > 0 THEN
        PERFORM usage_analytics._budget_note_touched(touched);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_book_usage FROM PUBLIC;

CREATE FUNCTION usage_analytics._budget_truncated_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
BEGIN
    IF NOT usage_analytics._restoring() THEN
        DELETE FROM usage_analytics.budget_spend;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_truncated_usage FROM PUBLIC;

-- _budgets_exist() (src/budget_cache.rs): whether any budget exists, cached
-- per backend and dropped when a statement changes budgets (the trigger
-- below announces it to every backend at commit). The usage table's budget
-- triggers fire only when one does: without budgets an insert pays nothing
-- for them (no budget, no reservation: delete_budget releases its
-- reservations). SECURITY DEFINER to read budgets under row-level security;
-- callable by anyone who inserts usage, since a trigger's WHEN runs as the
-- inserting role (it tells only whether some budget exists).
ALTER FUNCTION usage_analytics._budgets_exist() SECURITY DEFINER;
REVOKE ALL ON FUNCTION usage_analytics._budgets_exist FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._budgets_exist TO PUBLIC;
CREATE TRIGGER announce_budget_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON usage_analytics.budgets
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._announce_change();

-- Named to fire after count_* (triggers fire in name order).
CREATE TRIGGER track_budget_inserted_usage
    AFTER INSERT ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('1');
CREATE TRIGGER track_budget_deleted_usage
    AFTER DELETE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('-1');
CREATE TRIGGER track_budget_updated_usage_new
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('1');
CREATE TRIGGER track_budget_updated_usage_old
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT WHEN (usage_analytics._budgets_exist())
    EXECUTE FUNCTION usage_analytics._budget_book_usage('-1');
CREATE TRIGGER track_budget_truncated_usage
    AFTER TRUNCATE ON usage_analytics.agent_usage_detailed
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._budget_truncated_usage();

-- ---------------------------------------------------------------------------
-- Threshold events.


-- Records (and notifies) the thresholds the given budget periods have
-- crossed. keys: 'budget_id@period_start epoch'. The caller holds the
-- budgets' row locks. Returns the events inserted.
CREATE FUNCTION usage_analytics._budget_record_crossings(keys text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    ev record;
    n  integer := 0;
BEGIN
    FOR ev IN
        WITH k AS (
            SELECT DISTINCT split_part(key, '@', 1)::bigint AS budget_id,
                   to_timestamp(split_part(key, '@', 2)::double precision) AS period_start
              FROM unnest(keys) AS key
        ), spent AS MATERIALIZED (  -- the ledger summed once, not once per use
            SELECT b.id, b.name, b.scope, b.period, b.timezone, b.limit_usd, b.enforcement, b.alert_thresholds,
                   k.period_start, usage_analytics._budget_spent(b.id, k.period_start) AS spent_usd
              FROM k JOIN usage_analytics.budgets b ON b.id = k.budget_id
             WHERE k.period_start >= b.tracked_from
        )
        INSERT INTO usage_analytics.budget_events AS e
            (budget_id, budget_name, scope, period_start, threshold, limit_usd, spent_usd)
        SELECT s.id, s.name, s.scope, s.period_start, t, s.limit_usd, s.spent_usd
          FROM spent s CROSS JOIN LATERAL unnest(s.alert_thresholds) AS t
         WHERE s.spent_usd > 0 AND s.spent_usd >= t * s.limit_usd
         ORDER BY s.id, t
        ON CONFLICT (budget_id, period_start, threshold) DO NOTHING
        RETURNING e.*
    LOOP
        n := n + 1;
        PERFORM pg_notify('usage_analytics_budget', jsonb_build_object(
            'event_id', ev.id, 'budget', ev.budget_name, 'budget_id', ev.budget_id, 'scope', ev.scope,
            'period_start', CASE WHEN isfinite(ev.period_start) THEN ev.period_start END,
            'threshold', ev.threshold, 'limit_usd', ev.limit_usd, 'spent_usd', ev.spent_usd,
            'utilization', CASE WHEN ev.limit_usd > 0 THEN round(ev.spent_usd / ev.limit_usd, 6) END,
            'at', ev.created_at)::text);
    END LOOP;
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_record_crossings FROM PUBLIC;

-- At COMMIT (deferred constraint trigger on the ledger): lock the budgets
-- this transaction booked spend on, in id order, then check their periods
-- with a snapshot that includes every earlier committer. The first firing
-- does the whole transaction's work; the rest find nothing to do.
CREATE FUNCTION usage_analytics._budget_commit_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    keys text[];
BEGIN
    keys := string_to_array(nullif(current_setting('pg_usage_analytics_budgets.touched', true), ''), ',');
    IF keys IS NULL OR usage_analytics._restoring() THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('pg_usage_analytics_budgets.touched', '', true);
    PERFORM 1 FROM usage_analytics.budgets b
     WHERE b.id IN (SELECT split_part(key, '@', 1)::bigint FROM unnest(keys) AS key)
     ORDER BY b.id
       FOR NO KEY UPDATE;
    PERFORM usage_analytics._budget_record_crossings(keys);
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._budget_commit_check FROM PUBLIC;

CREATE CONSTRAINT TRIGGER check_budget_thresholds
    AFTER INSERT OR UPDATE ON usage_analytics.budget_spend
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._budget_commit_check();


-- sql/budget_reservations.sql, new in this version, whole
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


-- sql/forecasts.sql, new in this version, whole
-- Cost forecasts (forecast_cost); the exporter's projected budget spend is
-- budgets.sql's own (_budget_state).
--
-- forecast_cost: daily cost (UTC days) from usage_trend('day', filters) --
-- which for admins filtering only by date reads usage_daily_totals (exact,
-- shards summed), else rollups and raw rows under row-level security. The
-- history is the 56 whole days before the origin (from the first day with
-- usage; days without usage count as 0); the origin is today, or the
-- filter's end_date (backtests). Model (additive, fitted by backfitting):
--   y(t) = a + b t + s(dow(t)) + e,  sum of s over the week = 0
--   1. a, b: least squares of y on t;  2. s: mean residual per ISO weekday,
--   centred;  3. a, b refitted on y - s;  4. s recomputed on y - a - b t.
-- Seasonality needs 14 days (else s = 0); the trend 2 days (else the mean).
-- Interval: expected ± 1.96 σ sqrt(1 + 1/n + (t - t̄)² / Sxx), σ the
-- residual standard error (n - 9 degrees of freedom, or n - 2 without
-- seasonality); expected and low are floored at 0.
CREATE FUNCTION usage_analytics.forecast_cost(horizon_days integer DEFAULT 30, filters jsonb DEFAULT '{}')
RETURNS TABLE (day date, expected_cost_usd numeric, low_usd numeric, high_usd numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    history   constant integer := 56;
    start_ts  timestamptz;
    end_ts    timestamptz;
    origin    date;
    first_day date;
    series    double precision[];
    days      date[];
    n         integer;
BEGIN
    IF horizon_days IS NULL OR horizon_days < 1 OR horizon_days > 366 THEN
        RAISE EXCEPTION 'forecast_cost: horizon_days must be between 1 and 366, got %',
            coalesce(horizon_days::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    start_ts := usage_analytics._filter_timestamp(filters, 'start_date');
    end_ts := usage_analytics._filter_timestamp(filters, 'end_date');
    origin := coalesce((end_ts AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date);
    first_day := greatest(origin - history,
                          (ceil(extract(epoch FROM start_ts) / 86400) * interval '1 day'
                           + '1970-01-01'::timestamp)::date);
    IF first_day < origin THEN
        SELECT array_agg(coalesce(t.cost, 0)::double precision ORDER BY d), array_agg(d::date ORDER BY d)
          INTO series, days
          FROM generate_series(first_day, origin - 1, interval '1 day') d
          LEFT JOIN (SELECT (tr.period_start AT TIME ZONE 'UTC')::date AS day, tr.cost_usd AS cost, tr.requests
                       FROM usage_analytics.usage_trend('day', (filters - 'start_date' - 'end_date')
                                || jsonb_build_object('start_date', first_day::text,
                                                      'end_date', (origin - 1)::text)) tr) t
            ON t.day = d::date;
        -- Start at the first day with usage.
        n := array_position(ARRAY(SELECT x > 0 FROM unnest(series) x), true);
        IF n IS NULL THEN
            series := '{}';
        ELSE
            series := series[n:];
            days := days[n:];
        END IF;
    END IF;
    n := coalesce(cardinality(series), 0);
    RETURN QUERY
    WITH s AS (
        SELECT (o - 1)::double precision AS t, y, extract(isodow FROM d)::integer AS dow
          FROM unnest(series, days) WITH ORDINALITY AS x(y, d, o)
    ), f1 AS (
        SELECT coalesce(regr_slope(y, t), 0) AS b,
               coalesce(regr_intercept(y, t), avg(y), 0) AS a FROM s
    ), s1 AS (
        SELECT w.dow, CASE WHEN n >= 14 THEN w.v - avg(w.v) OVER () ELSE 0 END AS v
          FROM (SELECT s.dow, avg(s.y - f1.a - f1.b * s.t) AS v FROM s, f1 GROUP BY s.dow) w
    ), f2 AS (
        SELECT coalesce(regr_slope(s.y - s1.v, s.t), 0) AS b,
               coalesce(regr_intercept(s.y - s1.v, s.t), avg(s.y), 0) AS a
          FROM s JOIN s1 USING (dow)
    ), s2 AS (
        SELECT w.dow, CASE WHEN n >= 14 THEN w.v - avg(w.v) OVER () ELSE 0 END AS v
          FROM (SELECT s.dow, avg(s.y - f2.a - f2.b * s.t) AS v FROM s, f2 GROUP BY s.dow) w
    ), fit AS (
        SELECT f2.a, f2.b,
               coalesce(sqrt(sum((s.y - f2.a - f2.b * s.t - s2.v) ^ 2)
                             / greatest(count(*) - CASE WHEN n >= 14 THEN 9 ELSE 2 END, 1)), 0) AS sigma,
               avg(s.t) AS tbar,
               sum((s.t - (SELECT avg(t) FROM s)) ^ 2) AS sxx
          FROM f2 LEFT JOIN s ON true LEFT JOIN s2 ON s2.dow = s.dow
         GROUP BY f2.a, f2.b
    ), out AS (
        SELECT (origin + h - 1) AS day,
               fit.a + fit.b * (n + h - 1) + coalesce(s2.v, 0) AS yhat,
               1.959964 * fit.sigma * sqrt(1 + 1.0 / greatest(n, 1)
                   + CASE WHEN fit.sxx > 0 THEN (n + h - 1 - fit.tbar) ^ 2 / fit.sxx ELSE 0 END) AS half
          FROM generate_series(1, horizon_days) h
         CROSS JOIN fit
          LEFT JOIN s2 ON s2.dow = extract(isodow FROM origin + h - 1)::integer
    )
    SELECT o.day, round(greatest(o.yhat, 0)::numeric, 6), round(greatest(o.yhat - o.half, 0)::numeric, 6),
           round(greatest(o.yhat + o.half, 0)::numeric, 6)
      FROM out o
     ORDER BY o.day;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.forecast_cost FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.forecast_cost TO PUBLIC;


-- sql/recommendations.sql, new in this version, whole
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


-- sql/retention.sql, new in this version, whole
-- Retention: whole monthly partitions older than a kept number of months
-- are removed (dropped, or detached into schema usage_analytics_archive),
-- after their days are rolled up. Never row-by-row DELETEs.
--
-- What stays after a month is removed:
--  * the per-day tables the usage table's triggers keep (usage_daily_totals,
--    usage_daily_user) and the exporter's counters (usage_counters,
--    usage_series, active_user_sketches): DROP and DETACH fire no row or
--    statement trigger, so they keep counting the removed rows;
--  * the rollups (agent_performance_metrics, system_analytics) and their
--    bookkeeping (rollup_state): each removed day was rolled up just
--    before, and rollup_state.source_requests still equals the day's count
--    in usage_daily_user, so _rollup_coverage keeps reading the day as
--    fresh, from the rollups.
-- Hence get_usage_summary and usage_trend over removed months return what
-- they returned before: admins' date-only queries from the per-day tables,
-- everything rollup-compatible (user, agent, framework, provider filters;
-- every reader) from the rollups. What reads raw rows returns nothing for
-- removed months: get_usage_records, usage_export, export_usage_csv, and
-- summaries or trends filtered by model, message_type, success or search
-- (which the rollups cannot answer), and a start_date/end_date that is not
-- a whole UTC day at an edge inside a removed month.

-- Detached partitions (action 'detach'): plain tables, readable by admins
-- only (no row-level security: admins see every row anyway). Not members of
-- the extension, so pg_dump dumps them with their rows. The schema itself
-- is, though: DROP EXTENSION refuses while archived tables are in it, and
-- DROP EXTENSION ... CASCADE drops them; move them out first (ALTER TABLE
-- ... SET SCHEMA) to keep them through an uninstall.
CREATE SCHEMA usage_analytics_archive;
REVOKE ALL ON SCHEMA usage_analytics_archive FROM PUBLIC;
GRANT USAGE ON SCHEMA usage_analytics_archive TO usage_analytics_admin;
COMMENT ON SCHEMA usage_analytics_archive IS
    'Monthly partitions of usage_analytics.agent_usage_detailed detached by apply_retention (admins only).';

-- The retention setting: one row, or none (keep everything). Written only
-- by set_retention and apply_retention (SECURITY DEFINER); admins read it.
-- An extension table created by the install script, so pg_dump.sql's loop
-- adds it to the dump configuration and a restore keeps the setting.
CREATE TABLE usage_analytics.retention_policy (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    keep_months    integer     NOT NULL CHECK (keep_months BETWEEN 1 AND 1200),
    action         text        NOT NULL CHECK (action IN ('drop', 'detach')),
    set_at         timestamptz NOT NULL DEFAULT now(),
    set_by         name        NOT NULL,
    -- Start of the oldest month apply_retention has not removed: rows
    -- before it were removed (or never had a monthly partition).
    removed_before timestamptz,
    last_applied   timestamptz
);
ALTER TABLE usage_analytics.retention_policy ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.retention_policy FOR SELECT TO usage_analytics_admin USING ((SELECT usage_analytics.is_admin()));
REVOKE ALL ON usage_analytics.retention_policy FROM PUBLIC;
GRANT SELECT ON usage_analytics.retention_policy TO usage_analytics_admin;

-- apply_retention runs one at a time (see ensure_partitions).
INSERT INTO usage_analytics.maintenance_lock (name) VALUES ('apply_retention');

-- Sets (or, with keep_months NULL, clears) the retention policy. Admin
-- only, audited. keep_months = N keeps the current UTC month and the N
-- months before it: no row younger than N months is ever removed.
CREATE FUNCTION usage_analytics.set_retention(keep_months integer, action text DEFAULT 'drop')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    how      text := lower(btrim(set_retention.action));
    previous jsonb;
BEGIN
    PERFORM usage_analytics._require_admin('set_retention');
    IF keep_months IS NOT NULL AND (keep_months < 1 OR keep_months > 1200) THEN
        RAISE EXCEPTION 'set_retention: keep_months must be between 1 and 1200 (or NULL to keep everything), got %',
            keep_months USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF how IS NULL OR how NOT IN ('drop', 'detach') THEN
        RAISE EXCEPTION 'set_retention: action must be drop or detach, got %',
            coalesce(quote_literal(set_retention.action), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT to_jsonb(p) - 'singleton' INTO previous FROM usage_analytics.retention_policy p FOR UPDATE;
    IF keep_months IS NULL THEN
        DELETE FROM usage_analytics.retention_policy;
    ELSE
        INSERT INTO usage_analytics.retention_policy AS p (keep_months, action, set_by)
        VALUES (set_retention.keep_months, how, usage_analytics.acting_role())
        ON CONFLICT (singleton) DO UPDATE
            SET keep_months = excluded.keep_months, action = excluded.action, set_at = now(),
                set_by = excluded.set_by;
    END IF;
    PERFORM usage_analytics._audit('set_retention', 'retention_policy',
            jsonb_build_object('keep_months', keep_months, 'action', CASE WHEN keep_months IS NOT NULL THEN how END,
                               'previous', previous));
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.set_retention FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.set_retention TO usage_analytics_admin;

-- The monthly partitions of the usage table whose month ends on or before
-- cutoff, oldest first (never the default partition; only partitions named
-- and bounded as ensure_partitions creates them).
CREATE FUNCTION usage_analytics._partitions_before(cutoff timestamptz)
RETURNS TABLE (part name, month_start date)
LANGUAGE sql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
SET TimeZone = 'UTC'
AS $$
    SELECT c.relname, m.month_start
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     CROSS JOIN LATERAL (SELECT to_date(substr(c.relname, length('agent_usage_detailed_p') + 1), 'YYYY_MM')
                                AS month_start) m
     WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass
       AND c.relname ~ '^agent_usage_detailed_p[0-9]{4}_[0-9]{2}$'
       AND pg_get_expr(c.relpartbound, c.oid)
           = format('FOR VALUES FROM (%L) TO (%L)', m.month_start::timestamp AT TIME ZONE 'UTC',
                    (m.month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC')
       AND (m.month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= cutoff
     ORDER BY m.month_start
$$;
REVOKE ALL ON FUNCTION usage_analytics._partitions_before FROM PUBLIC;

-- The start of the oldest month a policy keeps at time `at`.
CREATE FUNCTION usage_analytics._retention_cutoff(keep_months integer, at timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (date_trunc('month', at AT TIME ZONE 'UTC') - make_interval(months => keep_months)) AT TIME ZONE 'UTC'
$$;
REVOKE ALL ON FUNCTION usage_analytics._retention_cutoff FROM PUBLIC;

-- Rows of one partition (by name, in schema usage_analytics).
CREATE FUNCTION usage_analytics._count_rows(part name)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM usage_analytics.%I', part) INTO n;
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._count_rows FROM PUBLIC;

-- Removes the monthly partitions older than the policy's keep_months; one
-- row per partition handled: action drop, detach or skipped, and the rows
-- it held. Admin only; each removal is audited. Runs in the scheduled
-- maintenance (run_maintenance), in a transaction of its own.
--
-- Order and locks:
--  1. every due month is rolled up (rollup_range over the month) and its
--     rows counted, with no lock stronger than the rollup's reads;
--  2. then, month by month, the parent is locked (ACCESS EXCLUSIVE, which
--     DROP and DETACH need) under lock_timeout = 1s, and the month is
--     removed only if every one of its days is still exactly what its
--     rollup saw (no row recorded, changed or deleted since step 1);
--     otherwise, or when the lock is not granted in time (a long
--     transaction on the table), the month is skipped with a WARNING, its
--     lock released at once, and the next run retries.
-- So the strong locks are held for milliseconds, never across a rollup, and
-- nothing is removed that the rollups do not describe. The default
-- partition is never removed: rows there (months that never had a
-- partition) stay until ensure_partitions(months_back => …) gives them one.
CREATE FUNCTION usage_analytics.apply_retention()
RETURNS TABLE (partition text, action text, rows bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    policy  usage_analytics.retention_policy;
    cutoff  timestamptz;
    due     record;
    parts   text[] := '{}';
    months  date[] := '{}';
    counts  bigint[] := '{}';
    removed date[] := '{}';
    stale   date;
    target  text;
BEGIN
    PERFORM usage_analytics._require_admin('apply_retention');
    SELECT * INTO policy FROM usage_analytics.retention_policy;
    IF NOT FOUND THEN
        RETURN;  -- no policy: keep everything
    END IF;
    PERFORM 1 FROM usage_analytics.maintenance_lock l WHERE l.name = 'apply_retention' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RAISE NOTICE 'apply_retention: another run is applying retention; skipped';
        RETURN;
    END IF;
    cutoff := usage_analytics._retention_cutoff(policy.keep_months);

    -- 1. Roll up and count, without strong locks (rollups queue on their
    --    days' rollup_state rows as the scheduled job's do).
    PERFORM set_config('lock_timeout', '0', true);
    FOR due IN SELECT * FROM usage_analytics._partitions_before(cutoff) LOOP
        PERFORM usage_analytics.rollup_range(due.month_start, (due.month_start + interval '1 month')::date - 1);
        parts := parts || due.part::text;
        months := months || due.month_start;
        counts := counts || usage_analytics._count_rows(due.part);
    END LOOP;

    -- 2. Remove, each month under a short lock in a subtransaction of its own.
    PERFORM set_config('lock_timeout', '1s', true);
    FOR i IN 1 .. coalesce(array_length(parts, 1), 0) LOOP
        partition := parts[i];
        rows := counts[i];
        BEGIN
            LOCK TABLE usage_analytics.agent_usage_detailed IN ACCESS EXCLUSIVE MODE;
            -- With writers held off, the month's days must still be as rolled up.
            SELECT d.day INTO stale
              FROM generate_series(months[i], (months[i] + interval '1 month')::date - 1, interval '1 day') AS g(x)
             CROSS JOIN LATERAL (SELECT g.x::date AS day) d
             CROSS JOIN LATERAL (SELECT coalesce(sum(u.requests), 0) AS recorded, coalesce(sum(u.changes), 0) AS changes
                                   FROM usage_analytics.usage_daily_user u WHERE u.day = d.day) c
              LEFT JOIN usage_analytics.rollup_state s ON s.day = d.day
             WHERE s.day IS NULL AND (c.recorded <> 0 OR c.changes <> 0)
                OR s.source_requests <> c.recorded OR s.source_changes <> c.changes
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = format('usage of %s changed since its rollup', stale);
            END IF;
            IF policy.action = 'detach' THEN
                target := parts[i];
                IF to_regclass(format('usage_analytics_archive.%I', target)) IS NOT NULL THEN
                    target := target || '_' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS');
                END IF;
                EXECUTE format('ALTER TABLE usage_analytics.agent_usage_detailed DETACH PARTITION usage_analytics.%I',
                               parts[i]);
                IF target <> parts[i] THEN
                    EXECUTE format('ALTER TABLE usage_analytics.%I RENAME TO %I', parts[i], target);
                END IF;
                EXECUTE format('ALTER TABLE usage_analytics.%I SET SCHEMA usage_analytics_archive', target);
                EXECUTE format('REVOKE ALL ON usage_analytics_archive.%I FROM PUBLIC', target);
                EXECUTE format('GRANT SELECT ON usage_analytics_archive.%I TO usage_analytics_admin', target);
                action := 'detach';
            ELSE
                target := NULL;
                EXECUTE format('DROP TABLE usage_analytics.%I', parts[i]);
                action := 'drop';
            END IF;
            removed := removed || months[i];
            PERFORM usage_analytics._audit('apply_retention', parts[i],
                    jsonb_strip_nulls(jsonb_build_object(
                        'action', action, 'rows', rows, 'month', months[i], 'keep_months', policy.keep_months,
                        'archived_as', CASE WHEN target IS NOT NULL
                                            THEN format('usage_analytics_archive.%I', target) END)));
        EXCEPTION
            WHEN lock_not_available THEN
                RAISE WARNING 'apply_retention: % not removed: its locks were not granted within lock_timeout '
                              '(a long transaction holds the usage table); the next run retries', parts[i];
                action := 'skipped';
            WHEN object_not_in_prerequisite_state THEN
                RAISE WARNING 'apply_retention: % not removed: %; the next run rolls it up again and retries',
                    parts[i], SQLERRM;
                action := 'skipped';
        END;
        RETURN NEXT;
    END LOOP;

    UPDATE usage_analytics.retention_policy p
       SET last_applied = now(),
           removed_before = greatest(p.removed_before,
                                     (SELECT (max(m) + interval '1 month')::timestamp AT TIME ZONE 'UTC'
                                        FROM unnest(removed) m));
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.apply_retention FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.apply_retention TO usage_analytics_admin;

-- Forgets the collector's claims (collector_spans) of spans older than the
-- months retention removed (retention_policy.removed_before), through
-- collector_forget_spans (audited): their rows are gone, so the ledger stays
-- as long as the table it guards. Returns how many. run_maintenance calls
-- it after apply_retention, in a transaction of its own, so the usage
-- table's lock is never held while it deletes; the index on "timestamp"
-- makes a run with nothing to forget one probe (and no audit row). Admin only.
CREATE FUNCTION usage_analytics._forget_removed_span_claims()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    before timestamptz;
BEGIN
    PERFORM usage_analytics._require_admin('apply_retention');
    SELECT p.removed_before INTO before FROM usage_analytics.retention_policy p;
    IF before IS NULL
       OR NOT EXISTS (SELECT 1 FROM usage_analytics.collector_spans c WHERE c."timestamp" < before) THEN
        RETURN 0;
    END IF;
    RETURN usage_analytics.collector_forget_spans(before);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics._forget_removed_span_claims FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._forget_removed_span_claims TO usage_analytics_admin;

-- Drops the searched texts (search_texts, see schema.sql) that no row has
-- any more, so a deleted row's agent name or error message does not outlive
-- it in the search dictionary. Writers are held off meanwhile (a SHARE lock
-- on the usage table, given up after lock_timeout): a writer that still
-- knows a text (_count_usage caches them) could otherwise record a row
-- under a text just dropped. search_texts' trigger (schema.sql) then makes
-- every backend forget the texts it knew. Returns how many it dropped
-- (NULL when the lock was not granted: call it again), audited when any.
-- READ COMMITTED only.
-- run_maintenance calls it after retention removed months; call it after
-- deleting rows by hand. Admin only.
CREATE FUNCTION usage_analytics.forget_unused_search_texts()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    dropped bigint;
BEGIN
    PERFORM usage_analytics._require_admin('forget_unused_search_texts');
    -- Its DELETE must see every row committed before the lock was granted:
    -- only READ COMMITTED gives a statement a snapshot taken after it.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'forget_unused_search_texts: runs only at READ COMMITTED, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    BEGIN
        LOCK TABLE usage_analytics.agent_usage_detailed IN SHARE MODE;
    EXCEPTION WHEN lock_not_available THEN
        RAISE WARNING 'forget_unused_search_texts: the usage table''s lock was not granted within lock_timeout '
                      '(a long transaction writes to it); nothing dropped, call it again';
        RETURN NULL;
    END;
    WITH gone AS (
        DELETE FROM usage_analytics.search_texts s
         WHERE NOT EXISTS (
               SELECT 1 FROM usage_analytics.agent_usage_detailed u
                WHERE u.agent_id = usage_analytics._search_text_agent(s.search_text)
                  AND usage_analytics._search_key(usage_analytics._search_text(u.agent_id, u.agent_name, u.model,
                                                                             u.error_message)) = s.key
                  AND usage_analytics._search_text(u.agent_id, u.agent_name, u.model, u.error_message)
                      = s.search_text)
        RETURNING 1)
    SELECT count(*) INTO dropped FROM gone;
    IF dropped > 0 THEN
        PERFORM usage_analytics._audit('forget_unused_search_texts',
                'search_texts', jsonb_build_object('texts', dropped));
    END IF;
    RETURN dropped;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.forget_unused_search_texts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.forget_unused_search_texts TO usage_analytics_admin;

-- Adds the searched texts of rows that reached the usage table without
-- passing its statement trigger (inserted straight into a partition, an
-- archived partition attached again, a data-only restore, writes under
-- session_replication_role = replica), so that search finds them. Reads the
-- whole table once; writers go on meanwhile (it only adds texts). Returns
-- how many it added, audited when any. Admin only.
CREATE FUNCTION usage_analytics.add_missing_search_texts()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    added bigint;
BEGIN
    PERFORM usage_analytics._require_admin('add_missing_search_texts');
    added := usage_analytics._add_search_texts(
        ARRAY(SELECT DISTINCT usage_analytics._search_text(u.agent_id, u.agent_name, u.model, u.error_message)
                FROM usage_analytics.agent_usage_detailed u),
        false);
    IF added > 0 THEN
        PERFORM usage_analytics._audit('add_missing_search_texts',
                'search_texts', jsonb_build_object('texts', added));
    END IF;
    RETURN added;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.add_missing_search_texts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.add_missing_search_texts TO usage_analytics_admin;

-- The policy, the oldest month the usage table still holds rows of, and
-- the first UTC day apply_retention has a month to remove (today when one
-- is already due; NULL without a policy or monthly partitions). Admin only.
CREATE FUNCTION usage_analytics.retention_status()
RETURNS TABLE (keep_months integer, action text, oldest_month date, next_due date)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    policy usage_analytics.retention_policy;
    oldest_part date;
BEGIN
    PERFORM usage_analytics._require_admin('retention_status');
    SELECT * INTO policy FROM usage_analytics.retention_policy;
    keep_months := policy.keep_months;
    action := policy.action;
    oldest_month := (SELECT date_trunc('month', min(u."timestamp") AT TIME ZONE 'UTC')::date
                       FROM usage_analytics.agent_usage_detailed u);
    SELECT min(b.month_start) INTO oldest_part FROM usage_analytics._partitions_before('infinity') b;
    IF policy.keep_months IS NOT NULL AND oldest_part IS NOT NULL THEN
        next_due := greatest((now() AT TIME ZONE 'UTC')::date,
                             (oldest_part + make_interval(months => policy.keep_months + 1))::date);
    END IF;
    RETURN NEXT;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.retention_status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.retention_status TO usage_analytics_admin;


-- sql/collector.sql, new in this version, whole
-- The OTLP collector's (usage-analytics-collector) span ledger: one row per
-- span it recorded, so that a span sent again (an OTLP exporter retrying a
-- batch whose answer it never got) is recorded once.
--
-- Why a table of its own: the usage table is partitioned by "timestamp" and its
-- primary key (id, "timestamp") lives on each partition, so INSERT … ON CONFLICT
-- cannot dedupe there, and the writer role reads nothing (no SELECT, and RLS),
-- so it cannot test for an existing row either.
--
-- id is the usage row's id: UUIDv5 of trace_id (16 bytes) || span_id (8 bytes)
-- in the collector's span namespace (see the collector's README section), so
-- the usage row of a recorded span is agent_usage_detailed.id = collector_spans.id.
-- "timestamp" is the span's start (the usage row's "timestamp"), kept so old
-- keys can be forgotten (collector_forget_spans) when their months are removed.
-- Requires: roles.sql (the group roles), identity.sql and admin.sql (_require_admin,
-- acting_role, current_user_id), audit.sql (admin_audit_log). Runs before pg_dump.sql,
-- so collector_spans is dumped like the other tables.

CREATE TABLE usage_analytics.collector_spans (
    id          uuid        PRIMARY KEY,
    "timestamp" timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
-- For forgetting old claims (retention) without reading the whole ledger.
CREATE INDEX collector_spans_timestamp_idx ON usage_analytics.collector_spans ("timestamp");
COMMENT ON TABLE usage_analytics.collector_spans IS
    'Spans recorded by usage-analytics-collector (id = the usage row id), so a resent span is recorded once';
-- Nobody but the owner (through collector_claim_spans) touches it directly.
ALTER TABLE usage_analytics.collector_spans ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON usage_analytics.collector_spans FROM PUBLIC;

-- Claims span ids for the calling transaction: inserts each id not recorded
-- yet and returns exactly those (a resent id is left out). Ids are taken in
-- sorted order, so two transactions claiming overlapping batches wait for each
-- other instead of deadlocking; a claim waits for a concurrent uncommitted
-- claim of the same id and is skipped if that one commits (taken if it rolls
-- back). The caller inserts the usage rows of the returned ids in the same
-- transaction, so a claim and its row commit or vanish together.
CREATE FUNCTION usage_analytics.collector_claim_spans(ids uuid[], span_starts timestamptz[])
RETURNS SETOF uuid
LANGUAGE sql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO usage_analytics.collector_spans (id, "timestamp")
    SELECT u.id, u.ts
      FROM unnest(ids, span_starts) AS u(id, ts)
     WHERE u.id IS NOT NULL AND u.ts IS NOT NULL
     ORDER BY u.id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
$$;
REVOKE ALL ON FUNCTION usage_analytics.collector_claim_spans(uuid[], timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.collector_claim_spans(uuid[], timestamptz[])
    TO usage_analytics_writer, usage_analytics_admin;

-- Forgets the claims of spans that started before `before` (e.g. when
-- retention removes their months); returns how many. A span forgotten and
-- then sent again would be recorded again. Admin only.
CREATE FUNCTION usage_analytics.collector_forget_spans(before timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM usage_analytics._require_admin('collector_forget_spans');
    DELETE FROM usage_analytics.collector_spans WHERE "timestamp" < before;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM usage_analytics._audit('collector_forget_spans',
            NULL, jsonb_build_object('before', before, 'forgotten', n));
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.collector_forget_spans(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.collector_forget_spans(timestamptz) TO usage_analytics_admin;


-- sql/explorer.sql, new in this version, whole
-- The records explorer: the thin SQL layer the "Usage records" Grafana
-- dashboard (grafana/dashgen/records.py) calls over Grafana's PostgreSQL
-- data source, connected as a usage_analytics_auditor login. Multi-value
-- selections become one filter document per combination of values, each
-- checked by the one filter parser; summary and trend merge what the API
-- itself returns for them, and records are exactly the API's pages merged
-- (read in one pass; see explorer_records). Like the API's summary and
-- trend, these functions run without JIT (see get_usage_summary).

-- The most filter documents one selection may expand to: enough for a few
-- values of several keys at once (4 users x 4 agents x 4 models = 64);
-- choose All for a key instead of many of its values.
CREATE FUNCTION usage_analytics._explorer_max_combinations()
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 256 $$;
REVOKE ALL ON FUNCTION usage_analytics._explorer_max_combinations FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._explorer_max_combinations TO PUBLIC;

-- The filter documents of a selection. A NULL or empty array, or one that
-- holds a NULL (the dashboard's "All"), filters nothing on that key; so does
-- a value the parser reads as "not filtered" (blank). Values are normalised
-- as the parser does (trimmed; framework, provider, model and message_type
-- lower-cased; user ids as canonical UUIDs) and de-duplicated, so no row is
-- counted twice. start_ts is inclusive, end_ts exclusive. Errors are the
-- parser's (naming the key) or too many combinations.
CREATE FUNCTION usage_analytics.explorer_filters(
    start_ts timestamptz, end_ts timestamptz,
    users text[] DEFAULT NULL, agents text[] DEFAULT NULL, frameworks text[] DEFAULT NULL,
    providers text[] DEFAULT NULL, models text[] DEFAULT NULL, message_types text[] DEFAULT NULL,
    succeeded boolean DEFAULT NULL, search text DEFAULT NULL)
RETURNS jsonb[]
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    keys   text[] := ARRAY['user_id', 'agent_id', 'framework', 'provider', 'model', 'message_type'];
    docs   jsonb[];
    vals   text[];
    norm   text[];
    i      integer;
    base   jsonb;
BEGIN
    base := jsonb_strip_nulls(jsonb_build_object('start_date', start_ts, 'end_date', end_ts,
                                                 'success', succeeded, 'search', search));
    PERFORM usage_analytics.check_filters(base);
    docs := ARRAY[base];
    FOR i IN 1 .. cardinality(keys) LOOP
        vals := CASE i WHEN 1 THEN users WHEN 2 THEN agents WHEN 3 THEN frameworks
                       WHEN 4 THEN providers WHEN 5 THEN models ELSE message_types END;
        IF vals IS NULL OR cardinality(vals) = 0 OR array_position(vals, NULL) IS NOT NULL THEN
            CONTINUE;
        END IF;
        -- The parser's reading of each value (and its error for a bad one).
        SELECT array_agg(n ORDER BY n NULLS FIRST) INTO norm
          FROM (SELECT DISTINCT
                       CASE WHEN usage_analytics.check_filters(jsonb_build_object(keys[i], v))
                            THEN CASE WHEN i = 1 THEN usage_analytics._filter_uuid(jsonb_build_object(keys[i], v), keys[i])::text
                                      ELSE usage_analytics._filter_text(jsonb_build_object(keys[i], v), keys[i]) END
                       END AS n
                  FROM unnest(vals) AS v) x;
        IF norm[1] IS NULL THEN
            CONTINUE;  -- a blank value: the key filters nothing, as in the API
        END IF;
        IF cardinality(docs) * cardinality(norm) > usage_analytics._explorer_max_combinations() THEN
            RAISE EXCEPTION 'explorer: the selection expands to % filter combinations, more than %',
                    cardinality(docs) * cardinality(norm), usage_analytics._explorer_max_combinations()
                USING ERRCODE = 'program_limit_exceeded',
                      HINT = 'Select fewer values, or All, for some of user, agent, framework, provider, model and message type.';
        END IF;
        docs := ARRAY(SELECT d || jsonb_build_object(keys[i], n)
                        FROM unnest(docs) WITH ORDINALITY AS a (d, o), unnest(norm) WITH ORDINALITY AS b (n, p)
                       ORDER BY o, p);
    END LOOP;
    RETURN docs;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.explorer_filters FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.explorer_filters TO PUBLIC;

-- A page cursor ('<timestamp>/<id>', the explorer's page_cursor column, or
-- a bare timestamp) as the API's keyset keys after_timestamp/after_id; '{}'
-- for none. The parser checks the values when the document is used.
CREATE FUNCTION usage_analytics._explorer_position(page_after text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN nullif(btrim(page_after), '') IS NULL THEN '{}'::jsonb
                ELSE jsonb_strip_nulls(jsonb_build_object(
                         'after_timestamp', btrim(split_part(btrim(page_after), '/', 1)),
                         'after_id', nullif(btrim(split_part(btrim(page_after), '/', 2)), '')))
           END
$$;
REVOKE ALL ON FUNCTION usage_analytics._explorer_position FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._explorer_position TO PUBLIC;

-- One page of the selection's rows, newest first ("timestamp" DESC, id
-- DESC), after the page_after cursor: exactly the merge of
-- get_usage_records(doc || position, page_size) over the selection's
-- documents. page_cursor is the row's position; pass the last row's as
-- page_after for the next page (keyset: as fast at page 1000 as at page 1).
-- A user or an agent is read from its own index, a search by the API's
-- search route: the API's page for each document, merged. Otherwise the
-- documents, a cross product, are read in one pass (_records_by_time): a
-- page per document would read the whole range for every combination
-- without rows (openai with a Claude model, say).
CREATE FUNCTION usage_analytics.explorer_records(
    start_ts timestamptz, end_ts timestamptz,
    users text[] DEFAULT NULL, agents text[] DEFAULT NULL, frameworks text[] DEFAULT NULL,
    providers text[] DEFAULT NULL, models text[] DEFAULT NULL, message_types text[] DEFAULT NULL,
    succeeded boolean DEFAULT NULL, search text DEFAULT NULL,
    page_after text DEFAULT NULL, page_size integer DEFAULT 100)
RETURNS TABLE (id uuid, "time" timestamptz, user_id uuid, agent_id text, agent_name text, framework text,
               provider text, model text, message_type text, input_tokens integer, output_tokens integer,
               total_tokens integer, cache_read_tokens integer, cache_write_tokens integer,
               cache_write_1h_tokens integer, reasoning_tokens integer, cost_usd numeric,
               response_time_ms integer, success boolean, error_message text, page_cursor text)
LANGUAGE plpgsql STABLE
SET jit = off  -- as get_usage_summary
AS $$
#variable_conflict use_column
DECLARE
    docs     jsonb[];
    position jsonb := usage_analytics._explorer_position(page_after);
    by_time  boolean;
BEGIN
    IF page_size IS NULL OR page_size < 1 OR page_size > 10000 THEN
        RAISE EXCEPTION 'explorer_records: page_size must be between 1 and 10000, got %',
                coalesce(page_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    docs := usage_analytics.explorer_filters(start_ts, end_ts, users, agents, frameworks, providers, models,
                                             message_types, succeeded, search);
    by_time := NOT (docs[1] ?| ARRAY['search', 'user_id', 'agent_id']);
    RETURN QUERY
        SELECT r.id, r."timestamp", r.user_id, r.agent_id, r.agent_name, r.framework, r.provider, r.model,
               r.message_type, r.input_tokens, r.output_tokens, r.total_tokens, r.cache_read_tokens,
               r.cache_write_tokens, r.cache_write_1h_tokens, r.reasoning_tokens, r.cost_usd,
               r.response_time_ms, r.success, r.error_message,
               to_char(r."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '/' || r.id
          FROM (SELECT t.* FROM usage_analytics._records_by_time(ARRAY(SELECT d || position FROM unnest(docs) AS d),
                                                                 page_size, 0) AS t
                 WHERE by_time
                UNION ALL
                SELECT g.* FROM unnest(docs) AS f (doc)
                 CROSS JOIN LATERAL usage_analytics.get_usage_records(f.doc || position, page_size, 0) AS g
                 WHERE NOT by_time) r
         ORDER BY r."timestamp" DESC, r.id DESC
         LIMIT page_size;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.explorer_records FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.explorer_records TO PUBLIC;

-- The selection's summary: get_usage_summary's document (same keys, same
-- sources), for one document literally get_usage_summary; for several, the
-- inputs of each (_summary_parts) merged, users summed across documents.
CREATE FUNCTION usage_analytics.explorer_summary(
    start_ts timestamptz, end_ts timestamptz,
    users text[] DEFAULT NULL, agents text[] DEFAULT NULL, frameworks text[] DEFAULT NULL,
    providers text[] DEFAULT NULL, models text[] DEFAULT NULL, message_types text[] DEFAULT NULL,
    succeeded boolean DEFAULT NULL, search text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET jit = off  -- as get_usage_summary
AS $$
DECLARE
    docs       jsonb[];
    doc        jsonb;
    parts      record;
    all_dims   jsonb := '[]';
    ids        uuid[] := '{}';
    requests   numeric[] := '{}';
    tokens     numeric[] := '{}';
    costs      numeric[] := '{}';
BEGIN
    docs := usage_analytics.explorer_filters(start_ts, end_ts, users, agents, frameworks, providers, models,
                                             message_types, succeeded, search);
    IF cardinality(docs) = 1 THEN
        RETURN usage_analytics.get_usage_summary(docs[1]);
    END IF;
    FOREACH doc IN ARRAY docs LOOP
        PERFORM usage_analytics.check_filters(doc);
        parts := usage_analytics._summary_parts(doc);
        all_dims := all_dims || parts.dims;
        ids := ids || parts.user_ids;
        requests := requests || parts.user_requests;
        tokens := tokens || parts.user_tokens;
        costs := costs || parts.user_costs;
    END LOOP;
    -- The same user can appear under several documents: add up their figures.
    SELECT coalesce(array_agg(m.user_id), '{}'), coalesce(array_agg(m.requests), '{}'),
           coalesce(array_agg(m.tokens), '{}'), coalesce(array_agg(m.cost), '{}')
      INTO ids, requests, tokens, costs
      FROM (SELECT x.user_id, sum(x.requests) AS requests, sum(x.tokens) AS tokens, sum(x.cost) AS cost
              FROM unnest(ids, requests, tokens, costs) AS x(user_id, requests, tokens, cost)
             GROUP BY x.user_id) m;
    RETURN usage_analytics._summary_json(all_dims, ids, requests, tokens, costs);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.explorer_summary FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.explorer_summary TO PUBLIC;

-- The selection's trend per day, ISO week or month: usage_trend's rows
-- (same columns, same sources) for the union of the selection's documents
-- (_trend_rows; for one document exactly usage_trend).
CREATE FUNCTION usage_analytics.explorer_trend(
    granularity text, start_ts timestamptz, end_ts timestamptz,
    users text[] DEFAULT NULL, agents text[] DEFAULT NULL, frameworks text[] DEFAULT NULL,
    providers text[] DEFAULT NULL, models text[] DEFAULT NULL, message_types text[] DEFAULT NULL,
    succeeded boolean DEFAULT NULL, search text DEFAULT NULL)
RETURNS TABLE (period_start timestamptz, requests bigint, successful_requests bigint, input_tokens bigint,
               output_tokens bigint, cost_usd numeric, avg_response_time_ms numeric,
               cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
               cache_savings_usd numeric, unpriced_requests bigint, cost_per_request_usd numeric,
               tokens_per_usd numeric)
LANGUAGE plpgsql STABLE
SET jit = off  -- as get_usage_summary
AS $$
DECLARE
    docs jsonb[];
    doc  jsonb;
BEGIN
    IF granularity IS NULL OR lower(granularity) NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'explorer_trend: granularity must be day, week or month, got %',
            coalesce(quote_literal(granularity), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    docs := usage_analytics.explorer_filters(start_ts, end_ts, users, agents, frameworks, providers, models,
                                             message_types, succeeded, search);
    FOREACH doc IN ARRAY docs LOOP
        PERFORM usage_analytics.check_filters(doc);
    END LOOP;
    RETURN QUERY SELECT * FROM usage_analytics._trend_rows(lower(granularity), docs);
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.explorer_trend FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.explorer_trend TO PUBLIC;

-- The values a dashboard variable offers for one filter key (kind: user,
-- agent, framework, provider, model, message_type), without scanning the
-- usage table for sessions that see every user's rows:
--  * user: usage_daily_user over the range's UTC days, biggest spenders
--    first (at most max_values);
--  * agent, framework, provider: usage_daily_totals over the range's days;
--  * model: the priced models that have exporter counters (usage_counters,
--    lifetime); every priced model once the counters overflowed their series
--    cap (their 'other' series hides which models it holds);
--  * message_type: the message types of usage_counters (lifetime).
-- Other sessions get the values of their own rows in the range (row-level
-- security; the (user_id, "timestamp") index). NULL values are left out: no
-- filter value matches them (All includes them).
CREATE FUNCTION usage_analytics.explorer_values(kind text, start_ts timestamptz DEFAULT NULL,
                                                           end_ts timestamptz DEFAULT NULL,
                                                           max_values integer DEFAULT 1000)
RETURNS TABLE (value text)
LANGUAGE plpgsql STABLE
SET jit = off  -- as get_usage_summary
AS $$
#variable_conflict use_column
DECLARE
    k         text := lower(btrim(kind));
    first_day date := coalesce((start_ts AT TIME ZONE 'UTC')::date, '-infinity');
    last_day  date := coalesce(((end_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date, 'infinity');
    col       text;
BEGIN
    col := CASE k WHEN 'user' THEN 'user_id::text' WHEN 'agent' THEN 'agent_id' WHEN 'framework' THEN 'framework'
                  WHEN 'provider' THEN 'provider' WHEN 'model' THEN 'model' WHEN 'message_type' THEN 'message_type'
           END;
    IF col IS NULL THEN
        RAISE EXCEPTION 'explorer_values: kind must be user, agent, framework, provider, model or message_type, got %',
                coalesce(quote_literal(kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_values IS NULL OR max_values < 1 THEN
        RAISE EXCEPTION 'explorer_values: max_values must be >= 1, got %', coalesce(max_values::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT usage_analytics._sees_all() THEN
        RETURN QUERY EXECUTE format(
            'SELECT DISTINCT %s FROM usage_analytics.agent_usage_detailed u
              WHERE u."timestamp" >= $1 AND u."timestamp" < $2 AND u.%s IS NOT NULL
              ORDER BY 1 LIMIT $3', col, split_part(col, ':', 1))
            USING coalesce(start_ts, '-infinity'), coalesce(end_ts, 'infinity'), max_values;
        RETURN;
    END IF;
    IF k = 'user' THEN
        RETURN QUERY
            SELECT d.user_id::text
              FROM usage_analytics.usage_daily_user d
             WHERE d.day BETWEEN first_day AND last_day
             GROUP BY d.user_id
            HAVING sum(d.requests) > 0
             ORDER BY sum(d.cost_usd) DESC, d.user_id
             LIMIT max_values;
    ELSIF k IN ('agent', 'framework', 'provider') THEN
        RETURN QUERY EXECUTE format(
            'SELECT t.%1$s FROM usage_analytics.usage_daily_totals t
              WHERE t.date BETWEEN $1 AND $2 AND t.%1$s IS NOT NULL
              GROUP BY 1 HAVING sum(t.total_requests) <> 0
              ORDER BY 1 LIMIT $3', col)
            USING first_day, last_day, max_values;
    ELSIF k = 'model' THEN
        RETURN QUERY
            -- Uncorrelated subqueries: the counters are read once (hashed),
            -- not once per price row.
            SELECT DISTINCT p.model
              FROM usage_analytics.model_pricing p
             WHERE p.model IN (SELECT c.model FROM usage_analytics.usage_counters c WHERE c.requests > 0)
                OR EXISTS (SELECT 1 FROM usage_analytics.usage_counters c
                            WHERE c.requests > 0
                              AND (c.provider, c.framework, c.agent_id, c.model, c.message_type)
                                  = ('other', 'other', 'other', 'other', 'other'))
             ORDER BY 1
             LIMIT max_values;
    ELSE
        RETURN QUERY
            SELECT DISTINCT c.message_type
              FROM usage_analytics.usage_counters c
             WHERE c.requests > 0 AND c.message_type <> ''
               AND (c.provider, c.framework, c.agent_id, c.model, c.message_type)
                   <> ('other', 'other', 'other', 'other', 'other')
             ORDER BY 1
             LIMIT max_values;
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.explorer_values FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.explorer_values TO PUBLIC;


-- END functions generated by scripts/upgrade_functions.py

-- metrics_usage_counters was dropped and created again above.
COMMENT ON FUNCTION usage_analytics.metrics_usage_counters() IS
    'Lifetime counters per label set; response_time_buckets are cumulative counts for the bounds (le, seconds) of metrics_response_time_bucket_bounds().';

-- ---------------------------------------------------------------------------
-- Roles, triggers, statistics, privileges, dump configuration

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['usage_analytics_app', 'usage_analytics_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by an upgrade in another database
            END;
        END IF;
    END LOOP;
END;
$$;
GRANT USAGE ON SCHEMA usage_analytics TO usage_analytics_auditor;
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

-- Daily buckets from the users of each day; hourly and 5-minute buckets from
-- each user's latest request of the day (0.1.0 kept no finer history).
INSERT INTO usage_analytics.active_user_sketches (width_seconds, bucket_start, shard, sketch)
SELECT 86400, d.day::timestamp AT TIME ZONE 'UTC', 0, usage_analytics._hll_of(array_agg(DISTINCT d.user_id))
  FROM usage_analytics.usage_daily_user d
 WHERE d.day >= (now() AT TIME ZONE 'UTC')::date - 32
 GROUP BY d.day;
INSERT INTO usage_analytics.active_user_sketches (width_seconds, bucket_start, shard, sketch)
SELECT w.width, to_timestamp(floor(extract(epoch FROM d.last_seen) / w.width) * w.width), 0,
       usage_analytics._hll_of(array_agg(DISTINCT d.user_id))
  FROM usage_analytics.usage_daily_user d
 CROSS JOIN (VALUES (300, interval '2 hours'), (3600, interval '26 hours')) AS w(width, keep)
 WHERE d.last_seen > now() - w.keep
 GROUP BY 1, 2;

-- search (see schema.sql): the dictionary of searched texts, filled from
-- the rows, under its trigram index (pg_trgm must be installed first:
-- CREATE EXTENSION pg_trgm; the control file requires it), and the search
-- index (agent, text key, time) on every partition. Reads the table twice
-- more.
CREATE TABLE usage_analytics.search_texts (
    key         bigint NOT NULL GENERATED ALWAYS AS (usage_analytics._search_key(search_text)) STORED,
    search_text text NOT NULL
);
SELECT usage_analytics._add_search_texts(
    ARRAY(SELECT DISTINCT usage_analytics._search_text(agent_id, agent_name, model, error_message)
            FROM usage_analytics.agent_usage_detailed),
    true);
CREATE INDEX search_texts_key_idx ON usage_analytics.search_texts (key);
SELECT usage_analytics._create_search_index('usage_analytics.search_texts');
CREATE TRIGGER announce_search_texts_change
    AFTER UPDATE OR DELETE OR TRUNCATE ON usage_analytics.search_texts
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._announce_change();
SELECT usage_analytics._create_search_index(i.inhrelid::regclass)
  FROM pg_inherits i WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass;

CREATE TRIGGER count_inserted_usage
    AFTER INSERT ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('1', '0');
CREATE TRIGGER count_deleted_usage
    AFTER DELETE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('-1', '1');
CREATE TRIGGER count_updated_usage_new
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING NEW TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('1', '0');
CREATE TRIGGER count_updated_usage_old
    AFTER UPDATE ON usage_analytics.agent_usage_detailed
    REFERENCING OLD TABLE AS usage_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_usage('-1', '1');
CREATE TRIGGER count_truncated_usage
    AFTER TRUNCATE ON usage_analytics.agent_usage_detailed
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._count_truncated_usage();
CREATE TRIGGER keep_installed_rows_restorable BEFORE INSERT OR UPDATE ON usage_analytics.model_pricing
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._keep_installed_rows_restorable();
CREATE TRIGGER keep_installed_rows_restorable BEFORE INSERT OR UPDATE ON usage_analytics.provider_default_model
    FOR EACH ROW EXECUTE FUNCTION usage_analytics._keep_installed_rows_restorable();

SELECT usage_analytics._hide_statistics('usage_analytics.agent_usage_detailed');

ALTER TABLE usage_analytics.maintenance_lock ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.admin_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON usage_analytics.admin_roles FOR SELECT TO usage_analytics_admin
    USING ((SELECT usage_analytics.is_admin()));
GRANT SELECT ON usage_analytics.admin_roles TO usage_analytics_admin;
-- Admin policies count only for this database's admins.
ALTER POLICY admin_all ON usage_analytics.agent_usage_detailed USING ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_all ON usage_analytics.agent_performance_metrics USING ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_only ON usage_analytics.system_analytics USING ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_only ON usage_analytics.admin_audit_log USING ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_all ON usage_analytics.user_role_map
    USING ((SELECT usage_analytics.is_admin())) WITH CHECK ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_write ON usage_analytics.model_pricing
    USING ((SELECT usage_analytics.is_admin())) WITH CHECK ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_write ON usage_analytics.provider_default_model
    USING ((SELECT usage_analytics.is_admin())) WITH CHECK ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_only ON usage_analytics.usage_daily_totals USING ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_read ON usage_analytics.usage_daily_user USING ((SELECT usage_analytics.is_admin()));
ALTER POLICY admin_read ON usage_analytics.rollup_state USING ((SELECT usage_analytics.is_admin()));
ALTER TABLE usage_analytics.usage_series ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.active_user_sketches ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_analytics.search_texts ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON ALL TABLES IN SCHEMA usage_analytics FROM PUBLIC;
GRANT SELECT ON usage_analytics.model_pricing, usage_analytics.provider_default_model,
    usage_analytics.model_tiers TO PUBLIC;
GRANT SELECT ON usage_analytics.user_role_map TO PUBLIC;

-- Partitions created by 0.1.0's install are extension members, which
-- pg_dump dumps as data only into tables a restore in another month does
-- not have: release them, as 0.2.0 creates every monthly partition.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i
                 WHERE i.inhparent = 'usage_analytics.agent_usage_detailed'::regclass
                   AND i.inhrelid <> 'usage_analytics.agent_usage_detailed_default'::regclass
                   AND EXISTS (SELECT 1 FROM pg_depend d
                                WHERE d.classid = 'pg_class'::regclass AND d.objid = i.inhrelid
                                  AND d.deptype = 'e') LOOP
        EXECUTE format('ALTER EXTENSION pg_usage_analytics DROP TABLE %s', part);
    END LOOP;
END;
$$;

-- Dump every extension table's rows (the pricing tables now whole), and
-- the sequences behind their identity columns.
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

-- A scheduled job keeps running; it now calls the procedure, which commits
-- between its steps.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE $q$UPDATE cron.job SET command = 'CALL usage_analytics.run_maintenance()'
                    WHERE jobname = 'usage_analytics_rollups'
                      AND command = 'SELECT usage_analytics.run_scheduled_maintenance()'$q$;
    END IF;
END;
$$;

-- Rollups carry the new sums (priced tokens, token classes): every day
-- 0.1.0 rolled up is rolled up again, with the same request counts.
SELECT usage_analytics.rollup_daily(day) FROM usage_analytics.rollup_state ORDER BY day;
-- rollup_daily's scratch table (ON COMMIT DROP) was created inside this
-- script, which makes it a member of the extension that the end of the
-- transaction may not drop; dropped here, while the script may.
DROP TABLE IF EXISTS pg_temp.rollup_groups;
