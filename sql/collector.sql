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
