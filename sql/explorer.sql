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

