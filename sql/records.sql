-- Records and export: pages of usage rows (get_usage_records) and the
-- export's rows (usage_export), with the row filter they share
-- (_usage_matches) and fast search. Every function that takes filters goes
-- through the one Rust parser (the _filter_* accessors), and every function
-- runs as its caller, so row-level security applies as to a plain SELECT.

-- Fast `search` (case-insensitive substring of agent_id, agent_name, model
-- or error_message) for rare terms as well as common ones.
--
-- The searched text is the four columns joined by a separator no column
-- holds, _search_text() (see schema.sql): search_texts holds each distinct
-- text under a trigram index, and every partition indexes its rows by
-- agent, text key (_search_key) and time. _usage_matches adds
-- `_search_text(u) ILIKE '%term%'` to the four ILIKEs it always had.
-- Whatever a column matches, the joined text matches too (the pattern is
-- always '%…%'), so the extra condition removes no row; the four ILIKEs
-- still decide.
--
-- Pages (get_usage_records) need both access paths: a common term finds
-- its newest matches at once by walking the ("timestamp", id) index
-- backwards, while a rare one would walk the whole table that way and is
-- found through its keys instead. The planner cannot tell them apart (no
-- column of the usage table keeps statistics: see _hide_statistics). So a
-- reader of every row asks the dictionary first (_matching_search_texts): a
-- term no text contains is answered at once, and one that few texts and few
-- rows hold goes straight to its keys. Otherwise get_usage_records looks at the
-- newest rows matching the other filters (a bounded probe,
-- _search_probe_rows): when they hold the page, it is read along the
-- timestamp index; otherwise through the keys of the matching texts.

-- Whether the caller may read the table and reads every row of it (the
-- table's owner, a superuser or BYPASSRLS role, an auditor, an admin): only
-- such a caller may consult search_texts, which holds every user's texts. A
-- caller limited to its own rows must not learn which texts exist; its own
-- rows are found through the user_id index anyway, which row-level security
-- makes it read.
CREATE FUNCTION usage_analytics._reads_every_usage_row()
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

-- The searched texts matching pattern, each once, for a caller who reads
-- every row (_reads_every_usage_row); NULL for anyone else. With most, it
-- stops after most + 1 texts (more than most: "many"), so a common term
-- costs little more than the trigram lookup; '{}' means no text, hence no
-- row, holds the term.
CREATE FUNCTION usage_analytics._matching_search_texts(pattern text, most integer DEFAULT NULL)
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

-- The search condition itself, as the API always had it: the pattern
-- ('%term%', from _filter_text(filters, 'search')) in any of the four columns.
CREATE FUNCTION usage_analytics._search_matches(agent_id text, agent_name text, model text, error_message text,
                                                pattern text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT agent_id ILIKE pattern OR agent_name ILIKE pattern OR model ILIKE pattern OR error_message ILIKE pattern
$$;
REVOKE ALL ON FUNCTION usage_analytics._search_matches FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_matches TO PUBLIC;

-- Whether row u matches a (checked) filter document; the search clause
-- carries the indexable condition (see above).
CREATE FUNCTION usage_analytics._usage_matches(u usage_analytics.agent_usage_detailed, filters jsonb)
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

-- Newest rows probed before a search page is read: 20 pages' worth (at
-- least 1000), so a term in about 1 row of 20 or more is read along the
-- timestamp index, and a rarer one costs the probe plus its few matches.
CREATE FUNCTION usage_analytics._search_probe_rows("limit" integer, "offset" integer)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT least(greatest(("limit"::bigint + "offset") * 20, 1000), 100000) $$;
REVOKE ALL ON FUNCTION usage_analytics._search_probe_rows FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics._search_probe_rows TO PUBLIC;

-- Rows matching any of docs, newest first: checked filter documents
-- without search, user or agent, either one or a cross product of values
-- (explorer_filters). Their union is one filter: the range and cursor they
-- share, plus "column = ANY(values)" for framework, provider, model, message
-- type and success. Blind to those columns (see _hide_statistics), the
-- planner takes two of them to match almost nothing and sorts the whole
-- range; so the range's newest rows, 1,000 for each row asked for (at most
-- 100,000), are walked newest first until the page is full (the filter
-- cannot move below their LIMIT: the walk stops early). When they hold the
-- page, it is read from them, exactly; otherwise (values rarer than 1 in
-- 1,000 of the newest rows) the planner reads the range.
CREATE FUNCTION usage_analytics._records_by_time(docs jsonb[], "limit" integer, "offset" integer)
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

-- The page of rows matching filters among the rows of (agents[i], keys[i])
-- (an agent and the key of one of its texts), newest first: each pair's
-- newest rows along the search index, merged across partitions, then the
-- page of those. Exact: a row of the page is among the first limit +
-- offset rows of its pair, ties on the last one's timestamp included.
-- get_usage_records' key route (a search's texts) and agent route (an
-- agent's keys) both read this way. The planner has no statistics to tell
-- how many rows a pair has, and it guesses few; so:
--  * no sorts (enable_sort off): a sort of the partitions' rows would read
--    every row of the pair; merging the partitions' index scans reads just
--    the newest ones (the page itself is still sorted, there is no other
--    way);
--  * neither parallel workers nor JIT: starting workers or compiling the
--    plan costs far more than reading the rows (about 80 ms and 30 ms
--    against 1 ms at 10 million rows).
CREATE FUNCTION usage_analytics._records_by_keys(filters jsonb, agents text[], keys bigint[], "limit" integer,
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

-- The same for searched texts: each text's agent and key.
CREATE FUNCTION usage_analytics._records_by_texts(filters jsonb, texts text[], "limit" integer, "offset" integer)
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

-- The keys of agent's texts, read from the search index (a skip scan: one
-- index descent per key), at most most + 1 of them.
CREATE FUNCTION usage_analytics._agent_keys(agent text, most integer)
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

-- Pages of rows, newest first. A search takes the search route. A caller
-- who reads every row asks the dictionary first (_matching_search_texts): a
-- term no searched text contains ends it at once, and a term few texts and
-- few rows hold (a rare term) is read through their keys at once.
-- Otherwise, when the newest _search_probe_rows rows matching the other
-- filters hold the page (a common term), it is read from them along the
-- ("timestamp", id) index; when they do not, through the keys of all the
-- matching texts, or, for a caller limited to its own rows, through the
-- user_id index. An agent's rows, for a caller who reads every row, are
-- read through the keys of its texts when it has few (the agent route);
-- otherwise the planner reads the agent's rows along the search index and
-- sorts them. Without a search, user or agent, filters on the other
-- columns take _records_by_time. Every route returns exactly
-- the rows _usage_matches selects, in the same order.
CREATE FUNCTION usage_analytics.get_usage_records(filters jsonb DEFAULT '{}', "limit" integer DEFAULT 100,
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

-- The export's typed columns, oldest first, for
--   COPY (SELECT * FROM usage_analytics.usage_export('{...}')) TO STDOUT WITH (FORMAT csv, HEADER)
-- A single-SELECT SQL function: the planner inlines it into the COPY query,
-- so rows stream without being materialised.
CREATE FUNCTION usage_analytics.usage_export(filters jsonb DEFAULT '{}')
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
