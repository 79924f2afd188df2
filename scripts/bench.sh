#!/usr/bin/env bash
# make bench: benchmarks of pg_usage_analytics, each against a baseline
# measured in the same run on the same data. Starts a dedicated cluster in
# target/bench/pg (port 28816, 127.0.0.1 only), loads it with
# scripts/generate.sh, runs scripts/bench.py, stops everything it started.
# Results: target/bench/results.md and target/bench/results.json.
#
# Scale knobs (environment):
#   BENCH_ROWS             rows in database bench             (default 10000000)
#   BENCH_DAYS             days they span, ending today        (60)
#   BENCH_USERS            distinct users                      (5000)
#   BENCH_AGENTS           distinct agents                     (40)
#   BENCH_SMALL_ROWS       rows in database bench_small        (10000)
#   BENCH_COPY_ROWS        rows per COPY                       (1000000, at most BENCH_ROWS/10)
#   BENCH_DAY_ROWS         rows loaded into one day for rollup (1000000, at most BENCH_ROWS/10)
#   BENCH_COST_ROWS        rows priced by calculate_cost       (1000000, at most BENCH_ROWS/10)
#   BENCH_PGBENCH_SECONDS  seconds per pgbench run             (15; 2 when BENCH_ROWS < 1000000)
#   BENCH_PGBENCH_ROUNDS   interleaved rounds of pgbench runs  (3)
#   BENCH_REUSE=1          keep the cluster between runs and skip loading when
#                          it was loaded with the same BENCH_ROWS/DAYS/USERS/AGENTS
#                          (the rows earlier runs wrote are deleted first)
#   BENCH_EXPORTER         exporter binary (default target/release/…, else target/debug/…)
#   BENCH_OUT, BENCH_PORT  where results and the cluster go (target/bench), its port (28816)
#
# A tiny run (seconds): BENCH_ROWS=20000 bash scripts/bench.sh
# Exits non-zero only when something is broken (a query fails, the summary
# disagrees with the raw rows, …), never because a goal is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/lib.sh
pg_bin=$PG_BIN
out=${BENCH_OUT:-$root/target/bench}
pgdir=$out/pg
port=${BENCH_PORT:-28816}

export BENCH_ROWS=${BENCH_ROWS:-10000000}
export BENCH_DAYS=${BENCH_DAYS:-60}
export BENCH_USERS=${BENCH_USERS:-5000}
export BENCH_AGENTS=${BENCH_AGENTS:-40}
export BENCH_SMALL_ROWS=${BENCH_SMALL_ROWS:-10000}
export BENCH_PORT=$port BENCH_OUT=$out BENCH_PGDIR=$pgdir PG_BIN=$pg_bin

started=$(date +%s)
mkdir -p "$out"
children=$out/children.pids
: >"$children"

stop_all() {
    local rc=$?
    trap - INT TERM EXIT
    # Processes bench.py started (exporters), in case it could not stop them.
    if [[ -s $children ]]; then
        while read -r pid; do
            [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
        done <"$children"
    fi
    stop_cluster "$pgdir"
    echo "bench: stopped (took $(( $(date +%s) - started ))s, exit $rc)"
    exit "$rc"
}
trap stop_all INT TERM EXIT

export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGOPTIONS='-c client_min_messages=warning'
unset PGDATABASE
psql_q=(psql -X -q -v ON_ERROR_STOP=1)

# A cluster left running by an interrupted run is stopped first.
stop_cluster "$pgdir"

meta_matches() { # db rows source
    local got
    got=$(psql -X -At -d "$1" -c "SELECT format('%s/%s/%s/%s/%s', rows, days, users, agents, source)
                                    FROM bench.load_meta" 2>/dev/null || true)
    [[ $got == "$2/$BENCH_DAYS/$BENCH_USERS/$BENCH_AGENTS/$3" ]]
}

# Before anything is measured (autovacuum is off): the bookkeeping shards of
# exited sessions folded, as the scheduled maintenance does every 15 minutes,
# and the whole database vacuumed and analyzed (hint bits, statistics, and the
# bookkeeping tables' dead versions).
settle_databases() {
    for db in bench bench_small; do
        "${psql_q[@]}" -d "$db" -c "SELECT usage_analytics._compact_bookkeeping()" >/dev/null
        "${psql_q[@]}" -d "$db" -c "VACUUM (ANALYZE)"
    done
}

reused=0
if [[ ${BENCH_REUSE:-0} == 1 && -f $pgdir/data/PG_VERSION ]]; then
    start_cluster "$pgdir" "$port"
    if meta_matches bench "$BENCH_ROWS" generated && meta_matches bench_small "$BENCH_SMALL_ROWS" "sampled from bench"; then
        reused=1
        echo "bench: reusing the cluster in $pgdir (already loaded with $BENCH_ROWS rows; VACUUM ANALYZE)"
        # Rows earlier runs' write benchmarks added go first, so a reused
        # cluster holds what a fresh one does: the COPY and collector zones
        # (the default partition, before the loaded days) and the rows of the
        # pgbench and live writers ('Bench Agent'). Through the parent, so the
        # bookkeeping follows; the generated rollup day stays. The exporter's
        # counters never go down, so load_meta keeps how many rows went.
        for db in bench bench_small; do  # clusters loaded before the column existed
            "${psql_q[@]}" -d "$db" -c "ALTER TABLE bench.load_meta ADD COLUMN IF NOT EXISTS deleted_rows bigint NOT NULL DEFAULT 0"
        done
        for table in usage_analytics.agent_usage_detailed bench.usage_clone; do
            "${psql_q[@]}" -d bench -c "WITH gone AS (DELETE FROM $table
                                                       WHERE tableoid = '${table}_default'::regclass
                                                          OR agent_name = 'Bench Agent' RETURNING 1)
                                        UPDATE bench.load_meta
                                           SET deleted_rows = deleted_rows + (SELECT count(*) FROM gone)
                                         WHERE '$table' = 'usage_analytics.agent_usage_detailed'"
        done
        # The deletes left bookkeeping shards and dead rows.
        settle_databases
    else
        echo "bench: the cluster in $pgdir was loaded differently; starting afresh"
        stop_cluster "$pgdir"
    fi
fi

if (( ! reused )); then
    rm -rf "$pgdir"
    # No background vacuum/analyze in the middle of a measurement: the harness
    # runs VACUUM (ANALYZE) itself after every load.
    start_cluster "$pgdir" "$port" "shared_buffers = 2GB" "work_mem = 64MB" \
        "maintenance_work_mem = 512MB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" \
        "log_timezone = 'UTC'" "autovacuum = off"
    for db in bench bench_small; do
        psql -X -q -d postgres -c "CREATE DATABASE $db"
        "${psql_q[@]}" -d "$db" -c "CREATE EXTENSION pg_usage_analytics CASCADE"
    done

    generate=scripts/generate.sh
    t0=$(date +%s)
    echo "bench: loading $BENCH_ROWS rows into bench ($BENCH_DAYS days, $BENCH_USERS users, $BENCH_AGENTS agents)"
    PGDATABASE=bench bash "$generate" "$BENCH_ROWS" "$BENCH_DAYS" "$BENCH_USERS" "$BENCH_AGENTS"
    # bench_small is the baseline of the exporter's scrape at scale: the
    # same series with fewer rows. So it takes one of bench's rows for each
    # exporter label set, then random ones up to its size: a scrape's work
    # follows its series, and a smaller generated load would have fewer.
    echo "bench: bench_small: $BENCH_SMALL_ROWS of bench's rows, one for each exporter label set among them"
    mkdir -p "$pgdir/copy" && chown postgres "$pgdir/copy"
    small_csv=$pgdir/copy/bench_small.csv
    small_cols="user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, service_tier,
                response_time_ms, success, error_message, request_metadata"
    "${psql_q[@]}" -d bench -c "COPY (
        SELECT $small_cols, requested_model, \"timestamp\" FROM (
            (SELECT DISTINCT ON (provider, framework, agent_id, coalesce(model, lower(requested_model)),
                                 message_type, success) u.*, 0 AS pick
               FROM usage_analytics.agent_usage_detailed u
              ORDER BY provider, framework, agent_id, coalesce(model, lower(requested_model)), message_type,
                       success, id)
            UNION ALL
            (SELECT u.*, 1 FROM usage_analytics.agent_usage_detailed u
                 TABLESAMPLE BERNOULLI (least(100, 200.0 * $BENCH_SMALL_ROWS / $BENCH_ROWS)) REPEATABLE (1))
        ) s ORDER BY pick LIMIT $BENCH_SMALL_ROWS) TO '$small_csv' WITH (FORMAT csv)"
    "${psql_q[@]}" -d bench_small \
        -c "SELECT usage_analytics.ensure_partitions(3, $(( BENCH_DAYS / 28 + 2 )))" \
        -c "COPY usage_analytics.agent_usage_detailed ($small_cols, model, \"timestamp\") FROM '$small_csv' WITH (FORMAT csv)"
    rm -f "$small_csv"
    echo "bench: trigger-free clone of the usage table (same partitions, indexes and rows)"
    "${psql_q[@]}" -d bench -f scripts/bench/clone.sql
    # The loader's sessions each left bookkeeping shards.
    echo "bench: bookkeeping compaction (as the scheduled maintenance does), VACUUM ANALYZE"
    settle_databases
    for db in bench bench_small; do
        rows=$BENCH_ROWS source=generated
        [[ $db == bench_small ]] && rows=$BENCH_SMALL_ROWS source="sampled from bench"
        "${psql_q[@]}" -d "$db" <<SQL
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE bench.load_meta AS
SELECT $rows::bigint AS rows, $BENCH_DAYS AS days, $BENCH_USERS AS users, $BENCH_AGENTS AS agents,
       now() AS loaded_at, $(( $(date +%s) - t0 )) AS load_seconds, 0::bigint AS deleted_rows,
       '$source'::text AS source;
SQL
    done
    echo "bench: loaded in $(( $(date +%s) - t0 ))s"
fi

python3 scripts/bench.py
