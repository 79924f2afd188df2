-- pg_usage_analytics: tables, indexes and seed data.
-- Runs inside CREATE EXTENSION, in schema usage_analytics.

-- One row per AI request. Range-partitioned by month on "timestamp"; the
-- default partition catches anything outside the monthly partitions so no row
-- is ever rejected for lack of one (ensure_partitions moves such rows out when
-- it creates the month they belong to).
CREATE TABLE usage_analytics.agent_usage_detailed (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id          uuid        NOT NULL,
    agent_id         text        NOT NULL,
    agent_name       text,
    framework        text,
    provider         text,
    message_type     text,
    input_tokens     integer     NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens    integer     NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    total_tokens     integer     GENERATED ALWAYS AS (input_tokens + output_tokens) STORED,
    -- Exact: no typmod, so nothing is rounded. NULL means "no price known".
    -- Finite and non-negative: NaN and Infinity would poison every sum.
    cost_usd         numeric     CHECK (cost_usd >= 0 AND cost_usd < 'Infinity'),
    response_time_ms integer     CHECK (response_time_ms >= 0),
    success          boolean     NOT NULL DEFAULT true,
    error_message    text,
    request_metadata jsonb       NOT NULL DEFAULT '{}'::jsonb
                                 CHECK (jsonb_typeof(request_metadata) = 'object'),
    "timestamp"      timestamptz NOT NULL DEFAULT now(),
    -- The canonical model that was priced; NULL when none resolved.
    model            text,
    -- The model name as the caller sent it (kept for unknown models).
    requested_model  text,
    -- Token classes, with OpenTelemetry GenAI semantics: input_tokens counts
    -- every input token, cached ones included; output_tokens includes
    -- reasoning. Cache writes are 5-minute (default) or 1-hour writes.
    cache_read_tokens     integer NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens    integer NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cache_write_1h_tokens integer NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),
    reasoning_tokens      integer NOT NULL DEFAULT 0 CHECK (reasoning_tokens >= 0),
    service_tier     text    NOT NULL DEFAULT 'standard'
                             CHECK (service_tier IN ('standard', 'batch', 'flex', 'priority')),
    -- Who set cost_usd: 'catalog' (the extension priced the row), 'caller'
    -- (supplied with the row, e.g. a provider's own figure), NULL: unpriced.
    cost_source      text    CHECK (cost_source IN ('catalog', 'caller')),
    -- What the cache reads would have cost at the input price, minus what
    -- they did cost (set with the cost by the catalog; NULL when unpriced).
    cache_savings_usd numeric CHECK (cache_savings_usd > '-Infinity' AND cache_savings_usd < 'Infinity'),
    CONSTRAINT agent_usage_detailed_token_classes CHECK (
        cache_read_tokens::bigint + cache_write_tokens + cache_write_1h_tokens <= input_tokens
        AND reasoning_tokens <= output_tokens)
) PARTITION BY RANGE ("timestamp");

COMMENT ON TABLE usage_analytics.agent_usage_detailed IS
    'One row per AI request: who, which agent and model, tokens, exact cost, latency, outcome.';

CREATE TABLE usage_analytics.agent_usage_detailed_default
    PARTITION OF usage_analytics.agent_usage_detailed DEFAULT;

-- Keys and indexes live on each partition, not on the parent: the default
-- partition has them here, and ensure_partitions gives every monthly
-- partition the same (LIKE … INCLUDING INDEXES). The planner uses partition
-- indexes either way, and the parent, an extension member, then has nothing
-- that attaching a partition would create: pg_dump recreates the monthly
-- partitions (not members) with their own indexes, exactly as they were. The
-- primary key (id, "timestamp") is unique table-wide, since a timestamp
-- belongs to one partition.
-- Access paths (each checked with EXPLAIN in tests/tests/records.rs):
--  * newest-first pages and date ranges: ("timestamp", id), scanned backwards
--    for ORDER BY "timestamp" DESC, id DESC;
--  * one user's rows (every non-admin query under RLS): (user_id, "timestamp");
--  * one agent's rows, and the rows of one searched text: (agent_id, text
--    key, "timestamp"), the search index below.
ALTER TABLE usage_analytics.agent_usage_detailed_default
    ADD CONSTRAINT agent_usage_detailed_default_pkey PRIMARY KEY (id, "timestamp");
CREATE INDEX agent_usage_detailed_default_timestamp_id_idx
    ON usage_analytics.agent_usage_detailed_default ("timestamp", id);
CREATE INDEX agent_usage_detailed_default_user_id_timestamp_idx
    ON usage_analytics.agent_usage_detailed_default (user_id, "timestamp");

-- How `search` finds rows (see _usage_matches and get_usage_records in
-- records.sql). The searched text of a row is _search_text(), its four
-- columns joined by the unit separator (U+001F), which the insert trigger
-- refuses in every one of them (it refuses control characters but tab and
-- line breaks), so a text's first field is its agent. A row whose agent_id
-- got one another way (written with the triggers off, or by the owner's
-- UPDATE) is missed by the key route of search, not by other routes. search_texts holds every
-- distinct text once, under a trigram index; every partition indexes its
-- rows by agent, then the 64-bit hash of their text (_search_key), then
-- time. A search looks up the matching texts in the small dictionary, then
-- each text's rows, newest first, at (agent, key); the text itself is still
-- matched, so a hash collision only costs a row read. The same index is
-- the agent's: an agent's rows are its texts' rows.
-- Why not a trigram index on the usage table itself: it was about half of a
-- bulk load (each row adds some 40 trigram entries), for texts that repeat
-- (a few agents, models and error messages). Why not a key index of its
-- own beside (agent_id, "timestamp"): one more b-tree insert per row, a
-- tenth of a bulk load. The counting trigger (_count_usage) adds each
-- statement's new texts.
-- IMMUTABLE and inlined: the index expression and the query's expression
-- are then the same expression.
CREATE FUNCTION usage_analytics._search_text(agent_id text, agent_name text, model text, error_message text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(agent_id, '') || E'\x1f' || coalesce(agent_name, '') || E'\x1f' || coalesce(model, '')
           || E'\x1f' || coalesce(error_message, '')
$$;
REVOKE ALL ON FUNCTION usage_analytics._search_text FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_text TO PUBLIC;

-- The agent of a searched text (its first field).
CREATE FUNCTION usage_analytics._search_text_agent(search_text text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT split_part(search_text, E'\x1f', 1) $$;
REVOKE ALL ON FUNCTION usage_analytics._search_text_agent FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_text_agent TO PUBLIC;

-- The hash under which a text is indexed, in the partitions and in
-- search_texts alike.
CREATE FUNCTION usage_analytics._search_key(search_text text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.hashtextextended(search_text, 0) $$;
REVOKE ALL ON FUNCTION usage_analytics._search_key FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_key TO PUBLIC;

-- No planner statistics on the index's expression either: ANALYZE would
-- otherwise sample the joined text of every user into the index's
-- statistics, which EXPLAIN estimates reveal (see _hide_statistics).
-- ensure_partitions calls this for every new partition (LIKE … INCLUDING
-- INDEXES does not copy an index column's statistics target).
CREATE FUNCTION usage_analytics._hide_index_statistics(rel regclass) RETURNS void
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

-- The search index of one table: on a partition of the usage table,
-- (agent_id, text key, "timestamp") (the default partition gets it at
-- install; monthly partitions copy it from there with LIKE … INCLUDING
-- INDEXES; unnamed, so it is named as those copies are:
-- <partition>_agent_id__search_key_timestamp_idx, cut to 63 bytes for the
-- monthly partitions); on search_texts, the trigram index (pg_trgm).
CREATE FUNCTION usage_analytics._create_search_index(rel regclass) RETURNS void
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

SELECT usage_analytics._create_search_index('usage_analytics.agent_usage_detailed_default');

-- Every distinct searched text, once (or, after two sessions added the same
-- new text at once, twice: no unique key, so no writer ever waits on
-- another's; searches take DISTINCT texts). Only the SECURITY DEFINER
-- _matching_search_texts and _count_usage read and write it: its texts are
-- every user's.
CREATE TABLE usage_analytics.search_texts (
    key         bigint NOT NULL GENERATED ALWAYS AS (usage_analytics._search_key(search_text)) STORED,
    search_text text NOT NULL
);
CREATE INDEX search_texts_key_idx ON usage_analytics.search_texts (key);
SELECT usage_analytics._create_search_index('usage_analytics.search_texts');
-- Backends remember the texts they know are there (_count_usage); texts
-- going away (forget_unused_search_texts) must reach them.
CREATE TRIGGER announce_search_texts_change
    AFTER UPDATE OR DELETE OR TRUNCATE ON usage_analytics.search_texts
    FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._announce_change();

-- Adds those of texts search_texts lacks, or all of them when unchecked (a
-- REPEATABLE READ writer: its snapshot may still show a text
-- forget_unused_search_texts has dropped since). No unique key, so a writer
-- never waits for another: two adding the same new text at once both add
-- it. Returns how many it added. The counting trigger, the upgrade and
-- add_missing_search_texts add texts through it (PL/pgSQL: each backend
-- plans the insert once).
CREATE FUNCTION usage_analytics._add_search_texts(texts text[], unchecked boolean)
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

-- No planner statistics on columns that carry users' values: row-level
-- security does not stop EXPLAIN's estimates (built from histograms and
-- most-common values) from revealing other users' values. Every column but
-- id and "timestamp" gets STATISTICS 0, columns added later included;
-- ensure_partitions applies the same to every new partition.
CREATE FUNCTION usage_analytics._hide_statistics(rel regclass) RETURNS void
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

SELECT usage_analytics._hide_statistics('usage_analytics.agent_usage_detailed');

-- A price as stored: at least 0, at most 1,000,000 USD per 1k tokens, at
-- most 12 decimal places (so every cost is an exact 28-digit decimal); NULL
-- where a price is optional.
CREATE FUNCTION usage_analytics._valid_price(price numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT price IS NULL OR (price >= 0 AND price <= 1000000 AND scale(price) <= 12) $$;
REVOKE ALL ON FUNCTION usage_analytics._valid_price FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._valid_price TO PUBLIC;

-- Prices per 1,000 tokens, per token class and service tier. A price change
-- is a new row with a later effective_from; old rows keep pricing the
-- requests of their time. A missing cache price means the input price, a
-- missing reasoning price the output price. Context tier: when
-- above_input_tokens is set and a request's input_tokens exceed it, every
-- class with an above_* price uses it.
CREATE TABLE usage_analytics.model_pricing (
    -- The interface's columns first, so positional INSERTs work too.
    provider          text        NOT NULL CHECK (btrim(provider) <> ''),
    model             text        NOT NULL CHECK (btrim(model) <> ''),
    input_usd_per_1k  numeric     NOT NULL CHECK (input_usd_per_1k >= 0),
    output_usd_per_1k numeric     NOT NULL CHECK (output_usd_per_1k >= 0),
    effective_from    timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00',
    effective_to      timestamptz CHECK (effective_to > effective_from),
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Rows installed by CREATE EXTENSION (the seed and the shipped catalog).
    seeded            boolean     NOT NULL DEFAULT false,
    service_tier              text    NOT NULL DEFAULT 'standard'
                                      CHECK (service_tier IN ('standard', 'batch', 'flex', 'priority')),
    cache_read_usd_per_1k     numeric,
    cache_write_usd_per_1k    numeric,
    cache_write_1h_usd_per_1k numeric,
    reasoning_usd_per_1k      numeric,
    above_input_tokens        integer CHECK (above_input_tokens > 0),
    above_input_usd_per_1k          numeric,
    above_output_usd_per_1k         numeric,
    above_cache_read_usd_per_1k     numeric,
    above_cache_write_usd_per_1k    numeric,
    above_cache_write_1h_usd_per_1k numeric,
    above_reasoning_usd_per_1k      numeric,
    CONSTRAINT model_pricing_key UNIQUE (provider, model, service_tier, effective_from),
    -- Prices are validated where they are stored, so one bad row can never
    -- take down pricing for every other model (costs stay exact decimals).
    CONSTRAINT model_pricing_price_bounds CHECK (
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
        AND usage_analytics._valid_price(above_reasoning_usd_per_1k))
);

-- The twelve models of the original product, in force since 1970 (a finite
-- date: clients such as psycopg cannot read '-infinity'). The shipped
-- catalog (price_catalog.sql) adds every current model.
INSERT INTO usage_analytics.model_pricing (provider, model, input_usd_per_1k, output_usd_per_1k, seeded)
SELECT provider, model, input_usd_per_1k, output_usd_per_1k, true FROM (VALUES
    ('openai',     'gpt-4o',                            0.0025,   0.01),
    ('openai',     'gpt-4o-mini',                       0.00015,  0.0006),
    ('openai',     'gpt-4-turbo',                       0.01,     0.03),
    ('openai',     'gpt-3.5-turbo',                     0.0005,   0.0015),
    ('anthropic',  'claude-3-5-sonnet',                 0.003,    0.015),
    ('anthropic',  'claude-3-opus',                     0.015,    0.075),
    ('anthropic',  'claude-3-haiku',                    0.00025,  0.00125),
    ('perplexity', 'llama-3.1-sonar-small-128k-online', 0.0002,   0.0002),
    ('perplexity', 'llama-3.1-sonar-large-128k-online', 0.001,    0.001),
    ('perplexity', 'llama-3.1-sonar-huge-128k-online',  0.005,    0.005),
    ('google',     'gemini-1.5-pro',                    0.00125,  0.005),
    ('google',     'gemini-1.5-flash',                  0.000075, 0.0003)
) AS seed (provider, model, input_usd_per_1k, output_usd_per_1k);

-- The model priced when a request names none.
CREATE TABLE usage_analytics.provider_default_model (
    provider text PRIMARY KEY CHECK (btrim(provider) <> ''),
    model    text NOT NULL CHECK (btrim(model) <> ''),
    -- Installed by CREATE EXTENSION and unchanged since (not dumped by
    -- pg_dump: recreated). Changing an installed row clears it.
    seeded   boolean NOT NULL DEFAULT false
);

INSERT INTO usage_analytics.provider_default_model (provider, model, seeded) VALUES
    ('openai',     'gpt-4o-mini', true),
    ('anthropic',  'claude-3-haiku', true),
    ('perplexity', 'llama-3.1-sonar-small-128k-online', true),
    ('google',     'gemini-1.5-flash', true);

-- Daily rollup per (user_id, agent_id, framework, provider, date); UTC days.
CREATE TABLE usage_analytics.agent_performance_metrics (
    id                    uuid    PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id               uuid    NOT NULL,
    agent_id              text    NOT NULL,
    agent_name            text,
    framework             text,
    provider              text,
    date                  date    NOT NULL,
    total_requests        integer NOT NULL,
    successful_requests   integer NOT NULL,
    failed_requests       integer NOT NULL,
    total_input_tokens    bigint  NOT NULL,
    total_output_tokens   bigint  NOT NULL,
    total_tokens          bigint  NOT NULL,
    -- Sum of priced requests; 0 (not NULL) when none is priced.
    total_cost_usd        numeric NOT NULL,
    avg_response_time_ms  integer,
    popular_actions       jsonb   NOT NULL DEFAULT '{}'::jsonb,
    unpriced_requests     integer NOT NULL,
    -- Exact inputs of avg_response_time_ms, so averages over many days stay exact.
    response_time_sum_ms  bigint  NOT NULL,
    response_time_count   integer NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    total_cache_read_tokens  bigint  NOT NULL DEFAULT 0,
    -- 5-minute and 1-hour cache writes together.
    total_cache_write_tokens bigint  NOT NULL DEFAULT 0,
    total_reasoning_tokens   bigint  NOT NULL DEFAULT 0,
    cache_savings_usd        numeric NOT NULL DEFAULT 0,
    -- Input + output tokens of the priced requests (for tokens per dollar).
    priced_tokens            bigint  NOT NULL DEFAULT 0
);
CREATE INDEX agent_performance_metrics_date_idx
    ON usage_analytics.agent_performance_metrics (date);
CREATE INDEX agent_performance_metrics_user_date_idx
    ON usage_analytics.agent_performance_metrics (user_id, date);

-- Daily totals per (agent_id, framework, provider): a few dozen rows a day,
-- kept exact at every moment by the usage table's triggers (see
-- counters.sql), so system-wide summaries and trends over months read
-- almost nothing (admins only). One shard per writing backend, as for
-- usage_counters; NULL labels are one group (NULLS NOT DISTINCT). Pages keep
-- room for updates in place, as usage_counters' do (see counters.sql).
CREATE TABLE usage_analytics.usage_daily_totals (
    date                 date    NOT NULL,
    agent_id             text    NOT NULL,
    framework            text,
    provider             text,
    total_requests       bigint  NOT NULL,
    successful_requests  bigint  NOT NULL,
    total_input_tokens   bigint  NOT NULL,
    total_output_tokens  bigint  NOT NULL,
    total_cost_usd       numeric NOT NULL,
    unpriced_requests    bigint  NOT NULL,
    response_time_sum_ms bigint  NOT NULL,
    response_time_count  bigint  NOT NULL,
    shard                integer NOT NULL DEFAULT 0,
    total_cache_read_tokens  bigint  NOT NULL DEFAULT 0,
    total_cache_write_tokens bigint  NOT NULL DEFAULT 0,
    total_reasoning_tokens   bigint  NOT NULL DEFAULT 0,
    cache_savings_usd        numeric NOT NULL DEFAULT 0,
    priced_tokens            bigint  NOT NULL DEFAULT 0,
    CONSTRAINT usage_daily_totals_key UNIQUE NULLS NOT DISTINCT (date, agent_id, framework, provider, shard)
) WITH (fillfactor = 50);

-- Daily system-wide rollup (admins only).
CREATE TABLE usage_analytics.system_analytics (
    id                   uuid    PRIMARY KEY DEFAULT gen_random_uuid(),
    date                 date    NOT NULL UNIQUE,
    total_users          integer NOT NULL,
    active_users         integer NOT NULL,
    new_users            integer NOT NULL,
    total_requests       integer NOT NULL,
    successful_requests  integer NOT NULL,
    failed_requests      integer NOT NULL,
    total_input_tokens   bigint  NOT NULL,
    total_output_tokens  bigint  NOT NULL,
    total_tokens         bigint  NOT NULL,
    total_cost_usd       numeric NOT NULL,
    cost_by_provider     jsonb   NOT NULL,
    avg_response_time_ms integer,
    success_rate         numeric(5,2),
    popular_agents       jsonb   NOT NULL,
    framework_usage      jsonb   NOT NULL,
    provider_usage       jsonb   NOT NULL,
    top_users_by_usage   jsonb   NOT NULL,
    unpriced_requests    integer NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);

-- Maps login roles used by people to the user they are (see Security).
CREATE TABLE usage_analytics.user_role_map (
    role_name name PRIMARY KEY,
    user_id   uuid NOT NULL
);

-- Who is an admin in this database. Roles are cluster-wide, so membership of
-- usage_analytics_admin alone would make an admin of one database an admin
-- of every database with the extension: is_admin() also asks for the role
-- (or one it belongs to) to be listed here. grant_admin/revoke_admin keep it.
CREATE TABLE usage_analytics.admin_roles (
    role_name  name        PRIMARY KEY,
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by name        NOT NULL DEFAULT session_user
);

-- Append-only record of every admin action.
CREATE TABLE usage_analytics.admin_audit_log (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The role in effect (after SET ROLE), outside SECURITY DEFINER functions.
    actor_role    name        NOT NULL DEFAULT session_user,
    actor_user_id uuid,
    action        text        NOT NULL,
    target        text,
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The login behind actor_role: SET ROLE cannot hide who acted.
    session_role  name        NOT NULL DEFAULT session_user
);

-- Bookkeeping of rollup runs: which days are rolled up, and from how many
-- recorded requests, so queries know which days they may read from rollups.
CREATE TABLE usage_analytics.rollup_state (
    day             date        PRIMARY KEY,
    rolled_at       timestamptz NOT NULL,
    source_requests bigint      NOT NULL,
    rows_written    integer     NOT NULL,
    -- The latest row timestamp the run covered: rows after it are the day's
    -- tail, readable raw on top of the rollup (see _rollup_coverage).
    max_timestamp   timestamptz,
    -- Rows of the day updated or deleted before the run: any later change
    -- makes the day stale (read raw) until it is rolled up again.
    source_changes  bigint      NOT NULL DEFAULT 0
);

-- Row locks that serialise maintenance steps. Only the extension's own
-- functions can read or lock these rows, unlike advisory lock keys, which any
-- role that can connect can take and hold against the scheduled job.
CREATE TABLE usage_analytics.maintenance_lock (
    name text PRIMARY KEY
);
INSERT INTO usage_analytics.maintenance_lock (name) VALUES ('ensure_partitions'), ('compact_bookkeeping');
