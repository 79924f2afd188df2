"""Write benchmarks: rollup of a big day, INSERT and track_detailed_usage,
the search index's insert cost, budgets and COPY."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from decimal import Decimal

from .harness import (
    AGENTS, Broken, COPY_ROWS, DAYS, DAY_ROWS, ENV, NO_FLUSH_WAIT, OUT, PGBENCH_ROUNDS, PGBENCH_SECONDS, PGDIR, ROOT, SCRIPTS,
    SEARCH_TABLE_ROWS, TOKEN_CLASS_COLS, USERS, add_check, add_context, add_result, alternate, fmt_ms, lit,
    median, pgbench_rounds, psql, rows, scalar, section, settle_bookkeeping, ts
)


def bench_search_insert(db: str) -> None:
    """The insert cost of the search index: INSERT tps into a trigger-free
    copy of one partition with the search index (agent, text key, time), as
    every partition of the extension's table has it, vs the same copy with
    the agent index it replaces (agent, time), as 0.1.0 had it."""
    section(f"search index: INSERT tps with it vs the agent index ({SEARCH_TABLE_ROWS:,} rows preloaded)")
    cols = ('id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens, '
            'cost_usd, response_time_ms, success, error_message, request_metadata, "timestamp", model, requested_model')

    psql(db, "DROP TABLE IF EXISTS bench.search_plain, bench.search_keyed")
    for table in ("bench.search_plain", "bench.search_keyed"):
        # LIKE … INCLUDING ALL copies the default partition's search index.
        psql(db, f"CREATE TABLE {table} (LIKE usage_analytics.agent_usage_detailed_default INCLUDING ALL)")
    psql(db, "SELECT bench.agent_index_instead_of_search_index('bench.search_plain')")
    for table in ("bench.search_plain", "bench.search_keyed"):
        psql(db, f"""INSERT INTO {table} ({cols})
                     SELECT {cols} FROM bench.usage_clone ORDER BY "timestamp" DESC, id LIMIT {SEARCH_TABLE_ROWS}""")
    psql(db, "VACUUM (ANALYZE) bench.search_plain; VACUUM (ANALYZE) bench.search_keyed;")
    n_idx = [int(scalar(db, f"SELECT count(*) FROM pg_index i WHERE i.indrelid = '{t}'::regclass "
                            "AND pg_get_indexdef(i.indexrelid) LIKE '%_search_key(%'"))
             for t in ("bench.search_plain", "bench.search_keyed")]
    add_check("search-index insert tables: only one has the search index", n_idx == [0, 1],
              f"search indexes: plain {n_idx[0]}, indexed {n_idx[1]}")
    # insert_clone.sql's row, aimed at each table.
    clone_insert = (SCRIPTS / "insert_clone.sql").read_text()
    assert "INSERT INTO bench.usage_clone" in clone_insert
    scripts = {}
    for name in ("keyed", "plain"):
        scripts[name] = OUT / f"insert_search_{name}.sql"
        scripts[name].write_text(clone_insert.replace("INSERT INTO bench.usage_clone",
                                                      f"INSERT INTO bench.search_{name}"))
    tps = pgbench_rounds(db, scripts)
    add_result("INSERT with the search index (pgbench -M prepared, 2 clients)", f"{tps['keyed']:,.0f} tps",
               f"same table with (agent_id, timestamp) instead: {tps['plain']:,.0f} tps", tps["keyed"] / tps["plain"], None, None,
               "measured tps / baseline tps", note="trigger-free copies of one partition; no goal of its own "
                                                   "(the INSERT and COPY ratios include it)")
    psql(db, "DROP TABLE bench.search_plain, bench.search_keyed")


def bench_rollup_day(db: str, today: dt.date) -> None:
    day = today - dt.timedelta(days=90)
    section(f"rollup_daily of one {DAY_ROWS:,}-row day ({day})")
    lo, hi = ts(day), ts(day + dt.timedelta(days=1))
    where = f'"timestamp" >= {lo} AND "timestamp" < {hi}'
    have = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {where}"))
    if have == 0:
        t0 = time.monotonic()
        load = subprocess.run(
            ["bash", str(ROOT / "scripts/generate.sh"), str(DAY_ROWS), "1", str(USERS), str(AGENTS)],
            env=dict(ENV, PGDATABASE=db, GENERATE_LAST_DAY=str(day)), capture_output=True, text=True)
        if load.returncode != 0:
            raise Broken(f"generate.sh for {day} failed: {load.stderr.strip()}")
        add_context(f"loading {DAY_ROWS:,} rows into {day} (scripts/generate.sh, priced and counted)",
                    f"{time.monotonic() - t0:.1f} s")
        psql(db, f"""INSERT INTO bench.usage_clone
                         (id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens,
                          output_tokens, cost_usd, response_time_ms, success, error_message, request_metadata,
                          "timestamp", model, requested_model)
                     SELECT id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens,
                            output_tokens, cost_usd, response_time_ms, success, error_message, request_metadata,
                            "timestamp", model, requested_model
                       FROM usage_analytics.agent_usage_detailed WHERE {where}""")
        for table in ("usage_analytics.agent_usage_detailed", "bench.usage_clone"):
            part = scalar(db, f"SELECT tableoid::regclass FROM {table} WHERE {where} LIMIT 1")
            psql(db, f"VACUUM (ANALYZE) {part}")
        have = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {where}"))
    rollup = f"SELECT usage_analytics.rollup_daily('{day}')"
    scan = f"""SELECT user_id, agent_id, framework, provider, count(*), count(*) FILTER (WHERE success),
                      sum(input_tokens), sum(output_tokens), sum(cost_usd), count(*) FILTER (WHERE cost_usd IS NULL),
                      sum(response_time_ms), count(response_time_ms),
                      sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
                 FROM usage_analytics.agent_usage_detailed WHERE {where} GROUP BY 1, 2, 3, 4"""
    t = alternate(db, {"rollup": rollup, "scan": scan}, reps=5, warmup=1)
    groups = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_performance_metrics WHERE date = '{day}'"))
    r, s = median(t["rollup"]), median(t["scan"])
    add_result(f"`rollup_daily` of a {have:,}-row day", fmt_ms(r), f"one aggregate scan of the day: {fmt_ms(s)}",
               r / s, "<=", 1.5, "measured time / baseline time", note=f"{groups:,} rollup rows")


def bench_pgbench(db: str) -> None:
    section(f"pgbench -M prepared -c 2 -j 2, {PGBENCH_ROUNDS} rounds of {PGBENCH_SECONDS}s per script")
    settle_bookkeeping(db)
    tps = pgbench_rounds(db, {"track": "track.sql", "insert": "insert.sql", "clone": "insert_clone.sql"})
    t, i, c = tps["track"], tps["insert"], tps["clone"]
    add_result("`track_detailed_usage` (pgbench -M prepared, 2 clients)", f"{t:,.0f} tps",
               f"plain INSERT of the same row into the same table: {i:,.0f} tps", t / i, ">=", 0.9,
               "measured tps / baseline tps")
    add_result("INSERT into the extension's table (pgbench -M prepared, 2 clients)", f"{i:,.0f} tps",
               f"INSERT into the trigger-free clone: {c:,.0f} tps", i / c, ">=", 0.75, "measured tps / baseline tps")
    print("  the same without waiting for the WAL flush at commit (CPU only):", flush=True)
    tps = pgbench_rounds(db, {"track": "track.sql", "insert": "insert.sql", "clone": "insert_clone.sql"},
                         env=NO_FLUSH_WAIT)
    t, i, c = tps["track"], tps["insert"], tps["clone"]
    add_context("CPU only (synchronous_commit off, same rounds): `track_detailed_usage` vs INSERT",
                f"{t / i:.2f} ({t:,.0f} vs {i:,.0f} tps)")
    add_context("CPU only (synchronous_commit off, same rounds): INSERT vs the trigger-free clone",
                f"{i / c:.2f} ({i:,.0f} vs {c:,.0f} tps)")


BUDGET_USERS = [f"a0000000-0000-4000-8000-{n:012d}" for n in range(2)]  # pgbench's client_id 0 and 1


def bench_budgets(db: str) -> None:
    """authorize_request + track_detailed_usage in one transaction vs track
    alone (each pgbench client records as its own user), 2 clients: all on one
    shared hard budget (contention), then each on its own per-user hard budget.
    The limits are far above what the run spends: every request is reserved."""
    section("budgets: authorize + track vs track alone (pgbench -M prepared, 2 clients)")
    limit = "1000000000"

    def clear() -> None:
        psql(db, "SELECT usage_analytics.delete_budget(name) FROM usage_analytics.budgets WHERE name LIKE 'bench-%'")

    clear()
    configs = {
        "one shared hard budget": [("bench-shared", {})],
        "per-user hard budgets": [(f"bench-user-{i}", {"user_id": u}) for i, u in enumerate(BUDGET_USERS)],
    }
    try:
        for label, budgets in configs.items():
            settle_bookkeeping(db)  # each configuration from the same state
            for name, scope in budgets:
                psql(db, f"SELECT usage_analytics.set_budget({lit(name)}, {lit(scope)}, 'month', {limit}, 'hard')")
            reserved0 = int(scalar(db, "SELECT count(*) FROM usage_analytics.budget_reservations"))
            tps = pgbench_rounds(db, {"authorize+track": "budget_authorize_track.sql", "track": "budget_track.sql"})
            left = int(scalar(db, "SELECT count(*) FROM usage_analytics.budget_reservations"))
            add_check(f"budgets ({label}): every reservation released by its recorded row", left == reserved0,
                      f"{left} reservations left (before: {reserved0})")
            a, t = tps["authorize+track"], tps["track"]
            add_result(f"`authorize_request`, then `track_detailed_usage` ({label})",
                       f"{a:,.0f} tps", f"`track_detailed_usage` alone: {t:,.0f} tps", a / t, ">=", 0.5,
                       "measured tps / baseline tps")
            clear()
    finally:
        clear()


COPY_COLS_EXT = ("user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens, "
                 f"{TOKEN_CLASS_COLS}, response_time_ms, success, error_message, request_metadata, model, "
                 "\"timestamp\"")


COPY_COLS_CLONE = ("user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens, "
                   f"{TOKEN_CLASS_COLS}, response_time_ms, success, error_message, request_metadata, cost_usd, "
                   "model, requested_model, \"timestamp\"")


# COPY rows land 200 days before their source rows, away from the data the
# read benchmarks use (in the default partition of both tables).
COPY_SHIFT = "interval '200 days'"


def bench_copy(db: str, first_day: dt.date) -> None:
    section(f"COPY of {COPY_ROWS:,} rows")
    settle_bookkeeping(db)
    copy_dir = PGDIR / "copy"
    copy_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(copy_dir, user="postgres")
    nocost, withcost = copy_dir / "nocost.csv", copy_dir / "withcost.csv"
    source = (f'SELECT * FROM usage_analytics.agent_usage_detailed WHERE "timestamp" >= {ts(first_day)} '
              f'ORDER BY "timestamp", id LIMIT {COPY_ROWS}')
    psql(db, f"""
        COPY (SELECT user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
                     {TOKEN_CLASS_COLS}, response_time_ms, success, error_message, request_metadata, requested_model,
                     "timestamp" - {COPY_SHIFT}
                FROM ({source}) s ORDER BY "timestamp", id) TO '{nocost}' WITH (FORMAT csv);
        COPY (SELECT user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens,
                     {TOKEN_CLASS_COLS}, response_time_ms, success, error_message, request_metadata, cost_usd, model,
                     requested_model, "timestamp" - {COPY_SHIFT}
                FROM ({source}) s ORDER BY "timestamp", id) TO '{withcost}' WITH (FORMAT csv);
    """)
    zone = (f'"timestamp" >= {ts(first_day)} - {COPY_SHIFT} '
            f'AND "timestamp" < {ts(first_day)} - {COPY_SHIFT} + interval \'{DAYS + 1} days\'')

    def zone_totals() -> tuple[int, Decimal, int, Decimal]:
        a = rows(db, f"SELECT count(*), coalesce(sum(cost_usd), 0) FROM usage_analytics.agent_usage_detailed WHERE {zone}")[0]
        b = rows(db, f"SELECT count(*), coalesce(sum(cost_usd), 0) FROM bench.usage_clone WHERE {zone}")[0]
        return int(a[0]), Decimal(a[1]), int(b[0]), Decimal(b[1])

    before = zone_totals()
    ext = f"COPY usage_analytics.agent_usage_detailed ({COPY_COLS_EXT}) FROM '{nocost}' WITH (FORMAT csv)"
    clone = f"COPY bench.usage_clone ({COPY_COLS_CLONE}) FROM '{withcost}' WITH (FORMAT csv)"
    # Five alternated rounds: single runs of either side vary by up to 20%
    # (0.62 to 0.73 between whole runs of the same code with three).
    t = alternate(db, {"ext": ext, "clone": clone}, reps=5, warmup=0, before_each="CHECKPOINT")
    after = zone_totals()
    d = [after[i] - before[i] for i in range(4)]
    add_check("COPY without cost is priced like the stored rows", d[0] == d[2] and d[1] == d[3],
              f"extension table +{d[0]:,} rows costing {d[1]}, clone +{d[2]:,} rows costing {d[3]}")
    e, c = median(t["ext"]), median(t["clone"])
    add_result(f"`COPY` of {COPY_ROWS:,} rows without cost into the extension's table", fmt_ms(e),
               f"`COPY` with cost into the trigger-free clone: {fmt_ms(c)}", c / e, ">=", 0.75,
               "baseline time / measured time",
               note=f"{COPY_ROWS / e * 1000:,.0f} rows/s vs {COPY_ROWS / c * 1000:,.0f} rows/s")
    nocost.unlink(missing_ok=True)
    withcost.unlink(missing_ok=True)
