#!/usr/bin/env python3
"""Benchmarks of pg_usage_analytics against baselines measured in the same run.

Run by scripts/bench.sh, which starts the cluster (127.0.0.1:BENCH_PORT) with
databases `bench` (BENCH_ROWS rows) and `bench_small` (BENCH_SMALL_ROWS rows)
loaded by scripts/generate.sh, plus the trigger-free clone bench.usage_clone.

Every figure is a ratio against a baseline run on the same data in the same
run, with the absolute numbers beside it. Query times are psql's \\timing
(client round trip, output to /dev/null), medians of several runs after a
warm-up; measured and baseline statements alternate so that noise from this
shared machine hits both. A missed goal is marked in the table; the exit code
is non-zero only when something is broken (a query fails, the summary or the
exporter disagrees with the raw rows, …).

Python 3.11 standard library only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "target" / "bench"))
PGDIR = Path(os.environ.get("BENCH_PGDIR", OUT / "pg"))
PORT = int(os.environ.get("BENCH_PORT", "28816"))
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SCRIPTS = ROOT / "scripts" / "bench"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


ROWS = env_int("BENCH_ROWS", 10_000_000)
DAYS = env_int("BENCH_DAYS", 60)
USERS = env_int("BENCH_USERS", 5000)
AGENTS = env_int("BENCH_AGENTS", 40)
SMALL_ROWS = env_int("BENCH_SMALL_ROWS", 10_000)
_CAP = max(1000, ROWS // 10)
COPY_ROWS = env_int("BENCH_COPY_ROWS", min(1_000_000, _CAP))
DAY_ROWS = env_int("BENCH_DAY_ROWS", min(1_000_000, _CAP))
COST_ROWS = env_int("BENCH_COST_ROWS", min(1_000_000, _CAP))
PGBENCH_SECONDS = env_int("BENCH_PGBENCH_SECONDS", 15 if ROWS >= 1_000_000 else 2)
PGBENCH_ROUNDS = env_int("BENCH_PGBENCH_ROUNDS", 3)
SCRAPES = env_int("BENCH_SCRAPES", 20)
PEER_SCRAPES = env_int("BENCH_PEER_SCRAPES", 5)
DEEP_OFFSET = env_int("BENCH_DEEP_OFFSET", 100_000)
# Live writers during the summary benchmark: total rows/s into today (pgbench --rate, 2 clients).
LIVE_RATE = env_int("BENCH_LIVE_RATE", 100)
# Spans sent to the collector (bodies of 1,000 spans), and the sender threads.
COLLECTOR_SPANS = env_int("BENCH_COLLECTOR_SPANS", max(1000, min(200_000, _CAP) // 1000 * 1000))
COLLECTOR_THREADS = env_int("BENCH_COLLECTOR_THREADS", 4)
# Rows preloaded into the two tables of the search-index insert benchmark.
SEARCH_TABLE_ROWS = env_int("BENCH_SEARCH_TABLE_ROWS", min(200_000, _CAP))
# Synthetic models added to the price catalog for the resolution-scaling benchmark.
SYNTHETIC_MODELS = env_int("BENCH_SYNTHETIC_MODELS", 5000)

ENV = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(PORT), PGUSER="postgres")
ENV.pop("PGDATABASE", None)
ENV.pop("PGOPTIONS", None)


class Broken(Exception):
    """Something that must not happen: the run fails."""


# --------------------------------------------------------------------------
# psql helpers

SEP = "\x1f"


def psql(db: str, sql: str) -> str:
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", SEP, "-d", db]
    p = subprocess.run(cmd, input=sql, text=True, capture_output=True, env=ENV)
    if p.returncode != 0:
        raise Broken(f"psql on {db} failed: {p.stderr.strip()}\n--- SQL:\n{sql[:3000]}")
    return p.stdout


def rows(db: str, sql: str) -> list[list[str]]:
    return [line.split(SEP) for line in psql(db, sql).splitlines() if line != ""]


def scalar(db: str, sql: str) -> str:
    result = rows(db, sql)
    if len(result) != 1 or len(result[0]) != 1:
        raise Broken(f"expected one value from {sql!r}, got {result!r}")
    return result[0][0]


def lit(value) -> str:
    """A SQL literal (text, jsonb passed as text)."""
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return "'" + str(value).replace("'", "''") + "'"


TIME_RE = re.compile(r"^Time: ([0-9.]+) ms", re.M)


def timed(db: str, statements: list[str], setup: str = "") -> list[float]:
    """Runs the statements in one session, output discarded; their times in ms."""
    body = "\n".join(s.strip().rstrip(";") + ";" for s in statements)
    script = f"{setup}\n\\o /dev/null\n\\timing on\n{body}\n"
    out = psql(db, script)
    times = [float(t) for t in TIME_RE.findall(out)]
    if len(times) != len(statements):
        raise Broken(f"expected {len(statements)} timings, got {len(times)}:\n{out[-2000:]}")
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def alternate(db: str, named: dict[str, str], reps: int = 3, warmup: int = 1,
              setup: str = "", before_each: str | None = None) -> dict[str, list[float]]:
    """Times several statements in turn (a, b, c, a, b, c, …) after warm-ups;
    returns each one's times in ms (warm-ups dropped)."""
    names = list(named)
    order = [n for _ in range(warmup + reps) for n in names]
    statements: list[str] = []
    for n in order:
        if before_each:
            statements.append(before_each)
        statements.append(named[n])
    times = timed(db, statements, setup)
    if before_each:
        times = times[1::2]
    result: dict[str, list[float]] = {n: [] for n in names}
    for i, (n, t) in enumerate(zip(order, times)):
        if i >= warmup * len(names):
            result[n].append(t)
    return result


# --------------------------------------------------------------------------
# results

RESULTS: list[dict] = []
CHECKS: list[dict] = []
CONTEXT: list[dict] = []


def fmt_ms(ms: float) -> str:
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def add_result(benchmark: str, measured: str, baseline: str, ratio: float | None, op: str | None,
               goal: float | None, ratio_means: str, note: str = "") -> None:
    met = None
    if ratio is not None and op is not None and goal is not None:
        met = ratio >= goal if op == ">=" else ratio <= goal
    RESULTS.append(dict(benchmark=benchmark, measured=measured, baseline=baseline,
                        ratio=None if ratio is None else round(ratio, 3), ratio_means=ratio_means,
                        goal=None if goal is None else f"{'≥' if op == '>=' else '≤'} {goal:g}",
                        met=met, note=note))
    mark = "" if met is None else ("✓" if met else "✗")
    ratio_s = "—" if ratio is None else f"{ratio:.2f}"
    print(f"  {benchmark}: {measured} | {baseline} | ratio {ratio_s} {mark}", flush=True)


def add_check(name: str, ok: bool, detail: str, fatal: bool = True) -> None:
    CHECKS.append(dict(check=name, ok=ok, detail=detail))
    print(f"  check {'ok' if ok else 'FAILED'}: {name}: {detail}", flush=True)
    if not ok and fatal:
        raise Broken(f"check failed: {name}: {detail}")


def add_context(name: str, value: str) -> None:
    CONTEXT.append(dict(name=name, value=value))
    print(f"  {name}: {value}", flush=True)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# --------------------------------------------------------------------------
# the benchmarks

def utc_today(db: str) -> dt.date:
    return dt.date.fromisoformat(scalar(db, "SELECT (now() AT TIME ZONE 'UTC')::date"))


def ts(day: dt.date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'::timestamptz"


def bench_calculate_cost(db: str, first_day: dt.date) -> None:
    section(f"calculate_cost over {COST_ROWS} rows")
    psql(db, f"""
        DROP TABLE IF EXISTS bench.cost_input;
        CREATE UNLOGGED TABLE bench.cost_input AS
        SELECT provider, model, input_tokens::bigint AS input_tokens, output_tokens::bigint AS output_tokens,
               "timestamp" AS at
          FROM usage_analytics.agent_usage_detailed
         WHERE model IS NOT NULL AND "timestamp" >= {ts(first_day)}
         LIMIT {COST_ROWS};
        VACUUM (ANALYZE) bench.cost_input;
        -- The baseline: the same pricing as a SQL function joining model_pricing
        -- (exact-match model, the standard tier's price in force at the row's
        -- time, as calculate_cost's bigint form).
        CREATE OR REPLACE FUNCTION bench.sql_cost(p_provider text, p_model text, p_input bigint,
                                                  p_output bigint, p_at timestamptz)
        RETURNS numeric LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT (p_input * mp.input_usd_per_1k + p_output * mp.output_usd_per_1k) * 0.001
              FROM usage_analytics.model_pricing mp
             WHERE mp.provider = p_provider AND mp.model = p_model AND mp.service_tier = 'standard'
               AND mp.effective_from <= p_at AND (mp.effective_to IS NULL OR p_at < mp.effective_to)
             ORDER BY mp.effective_from DESC
             LIMIT 1
        $$;
    """)
    n = int(scalar(db, "SELECT count(*) FROM bench.cost_input"))
    ext = ("SELECT sum(usage_analytics.calculate_cost(provider, model, input_tokens, output_tokens, at)) "
           "FROM bench.cost_input")
    fn = "SELECT sum(bench.sql_cost(provider, model, input_tokens, output_tokens, at)) FROM bench.cost_input"
    join = """SELECT sum((i.input_tokens * p.input_usd_per_1k + i.output_tokens * p.output_usd_per_1k) * 0.001)
                FROM bench.cost_input i
                LEFT JOIN LATERAL (
                     SELECT mp.input_usd_per_1k, mp.output_usd_per_1k
                       FROM usage_analytics.model_pricing mp
                      WHERE mp.provider = i.provider AND mp.model = i.model AND mp.service_tier = 'standard'
                        AND mp.effective_from <= i.at AND (mp.effective_to IS NULL OR i.at < mp.effective_to)
                      ORDER BY mp.effective_from DESC LIMIT 1) p ON true"""
    # Serial plans for all three: this compares the cost per row, not how
    # many workers the planner happens to use.
    setup = "SET max_parallel_workers_per_gather = 0;"
    t = alternate(db, {"ext": ext, "fn": fn, "join": join}, reps=3, warmup=1, setup=setup)
    sums = rows(db, f"{setup} SELECT ({ext}), ({fn}), ({join})")[0]
    equal = Decimal(sums[0]) == Decimal(sums[1]) == Decimal(sums[2])
    add_check("calculate_cost equals the SQL pricing", equal,
              f"sum over {n} rows: calculate_cost {sums[0]}, SQL function {sums[1]}, join {sums[2]}")
    e, f, j = median(t["ext"]), median(t["fn"]), median(t["join"])
    add_result(f"`calculate_cost` over {n:,} rows", fmt_ms(e),
               f"SQL function joining model_pricing: {fmt_ms(f)}", f / e, ">=", 3,
               "baseline time / measured time")
    add_context("calculate_cost baseline as an inline LATERAL join (not a function)",
                f"{fmt_ms(j)} ({j / e:.2f}× calculate_cost's time)")


# The raw-summary oracle, shared with the tests: {where} is the row predicate.
SUMMARY_RAW = (ROOT / "tests" / "fixtures" / "raw_summary.sql").read_text()


def jload(text: str):
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


SUMMARY_GOAL, SUMMARY_TARGET = 20, 50


def summary_queries(start: dt.date) -> dict[str, str]:
    """The 30-day summary and daily trend as the owner, and their baseline:
    the raw GROUP BY of tests/fixtures/raw_summary.sql over the same rows."""
    filters = {"start_date": start.isoformat()}
    return {
        "summary": f"SELECT usage_analytics.get_usage_summary({lit(filters)})",
        "trend": f"SELECT * FROM usage_analytics.usage_trend('day', {lit(filters)})",
        "raw": SUMMARY_RAW.replace("{where}", f'"timestamp" >= {ts(start)}'),
    }


def check_summary_exact(db: str, start: dt.date, label: str) -> dict:
    """The summary equals the raw GROUP BY (every key the oracle has), and the
    daily trend the raw rows per UTC day; returns the summary."""
    q = summary_queries(start)
    got = jload(scalar(db, q["summary"]))
    want = jload(scalar(db, q["raw"]))
    for key in ("total_requests", "total_cost_usd", "unique_users"):
        add_check(f"summary ({label}) {key} equals the raw GROUP BY", got.get(key) == want[key],
                  f"summary {got.get(key)}, raw {want[key]}")
    differing = sorted(k for k in want if got.get(k) != want[k])
    extra = sorted(set(got) - set(want))
    add_check(f"summary ({label}): whole document equals the raw GROUP BY", not differing,
              (f"all {len(want)} keys of the oracle equal" if not differing else f"differing keys: {', '.join(differing)}")
              + (f" (the summary has {len(extra)} more: {', '.join(extra)})" if extra else ""))
    trend = rows(db, f"""SELECT (period_start AT TIME ZONE 'UTC')::date, requests, cost_usd
                           FROM ({q['trend']}) t WHERE requests <> 0 ORDER BY 1""")
    raw = rows(db, f"""SELECT ("timestamp" AT TIME ZONE 'UTC')::date, count(*), coalesce(sum(cost_usd), 0)
                         FROM usage_analytics.agent_usage_detailed WHERE "timestamp" >= {ts(start)}
                        GROUP BY 1 ORDER BY 1""")
    norm = lambda rs: [(r[0], int(r[1]), Decimal(r[2] or "0")) for r in rs]
    same = norm(trend) == norm(raw)
    add_check(f"usage_trend('day') ({label}) equals the raw rows per day", same,
              f"{len(trend)} days, requests and cost equal" if same
              else f"trend {norm(trend)[-3:]} vs raw {norm(raw)[-3:]} (last 3 days)")
    return got


def summary_results(db: str, start: dt.date, label: str, reps: int, note: str = "") -> None:
    q = summary_queries(start)
    t = alternate(db, q, reps=reps, warmup=1)
    s, tr, r = median(t["summary"]), median(t["trend"]), median(t["raw"])
    add_result(f"30-day `get_usage_summary` ({label})", fmt_ms(s), f"raw GROUP BY: {fmt_ms(r)}",
               r / s, ">=", SUMMARY_GOAL, "baseline time / measured time",
               note=note + f"target {SUMMARY_TARGET}×")
    add_result(f"30-day `usage_trend('day')` ({label})", fmt_ms(tr), f"raw GROUP BY: {fmt_ms(r)}",
               r / tr, ">=", SUMMARY_GOAL, "baseline time / measured time",
               note=note + f"target {SUMMARY_TARGET}×")


def bench_summary(db: str, today: dt.date, first_day: dt.date) -> None:
    start = today - dt.timedelta(days=29)
    section(f"get_usage_summary and usage_trend, 30 days ({start} .. {today}), at rest")
    roll = timed(db, [f"SELECT usage_analytics.rollup_range('{first_day}', '{today}')"])[0]
    add_context(f"rollup_range over the {(today - first_day).days + 1} days of data", fmt_ms(roll))
    window_rows = int(scalar(db, f'SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE "timestamp" >= {ts(start)}'))
    add_context("rows in the 30-day window", f"{window_rows:,}")

    def one(label: str) -> None:
        fresh = int(scalar(db, f"SELECT cardinality(usage_analytics._fresh_rollup_days('{start}', '{today}'))"))
        add_context(f"summary ({label}): days with a fresh rollup", f"{fresh} of 30")
        got = check_summary_exact(db, start, label)
        summary_results(db, start, label, reps=3, note=f"{got['total_requests']} requests, same numbers as raw; ")

    one("all days rolled up")
    # The normal state: rows keep arriving today after the last rollup run.
    psql(db, """SELECT usage_analytics.track_detailed_usage('a0000000-0000-4000-8000-000000000000', 'agent-00',
                'Bench Agent', 'langchain', 'openai', 'chat', 100, 10, 500, true, NULL, '{}', 'gpt-4o')""")
    one("today un-rolled")


def bench_summary_live(db: str, today: dt.date) -> None:
    """Issue 15: the same figures while 2 writers record into today at a
    steady rate (pgbench --rate, plain INSERTs of insert.sql); exact once they stop."""
    start = today - dt.timedelta(days=29)
    section(f"get_usage_summary and usage_trend under live writers (2 clients, {LIVE_RATE} rows/s into today)")
    today_where = f'"timestamp" >= {ts(today)}'
    before = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {today_where}"))
    cmd = pgbench_cmd(db, "insert.sql", seconds=3600, rate=LIVE_RATE)
    log = OUT / "live-writers.log"
    proc = spawn(cmd, dict(ENV), log)
    t0 = time.monotonic()
    try:
        time.sleep(3)
        if proc.poll() is not None:
            raise Broken(f"the live writers (pgbench) exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        summary_results(db, start, "under live writers", reps=5)
        if proc.poll() is not None:
            raise Broken(f"the live writers (pgbench) stopped early ({proc.returncode}):\n{log.read_text()[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(2)  # SIGINT: pgbench stops its clients
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    elapsed = time.monotonic() - t0
    after = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {today_where}"))
    add_context("live writers", f"{after - before:,} rows into today in {elapsed:.0f} s "
                                f"({(after - before) / elapsed:.0f} rows/s, target {LIVE_RATE})")
    add_check("the live writers wrote", after - before > LIVE_RATE, f"{after - before:,} rows in {elapsed:.0f} s")
    check_summary_exact(db, start, "after the live writers stopped")


def bench_records(db: str, today: dt.date) -> None:
    start = today - dt.timedelta(days=29)
    section("get_usage_records")
    sets = {
        "provider + 30-day range": (
            {"provider": "openai", "start_date": start.isoformat(), "end_date": today.isoformat()},
            f"provider = 'openai'"),
        "search + 30-day range": (
            {"search": "coder", "start_date": start.isoformat(), "end_date": today.isoformat()},
            "(agent_id ILIKE '%coder%' OR agent_name ILIKE '%coder%' OR model ILIKE '%coder%' "
            "OR error_message ILIKE '%coder%')"),
    }
    for label, (filters, raw_pred) in sets.items():
        matching = int(scalar(db, f"""SELECT count(*) FROM usage_analytics.agent_usage_detailed
                                       WHERE "timestamp" >= {ts(start)} AND "timestamp" < {ts(today + dt.timedelta(days=1))}
                                         AND {raw_pred}"""))
        offset = DEEP_OFFSET if matching >= DEEP_OFFSET + 100 else matching // 2
        if offset < 1:
            raise Broken(f"only {matching} rows match {filters}: the data is too small or degenerate")
        pos = rows(db, f"""SELECT to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), id
                             FROM usage_analytics.get_usage_records({lit(filters)}, 1, {offset - 1})""")
        if len(pos) != 1:
            raise Broken(f"no row at position {offset} for {filters}")
        keyset = dict(filters, after_timestamp=pos[0][0], after_id=pos[0][1])
        page1 = f"SELECT * FROM usage_analytics.get_usage_records({lit(filters)}, 50, 0)"
        deep = f"SELECT * FROM usage_analytics.get_usage_records({lit(filters)}, 50, {offset})"
        key = f"SELECT * FROM usage_analytics.get_usage_records({lit(keyset)}, 50)"

        def ids(q: str) -> str:
            return scalar(db, f"SELECT string_agg(r.id::text, ',' ORDER BY r.ordinality) "
                              f"FROM {q[len('SELECT * FROM '):]} WITH ORDINALITY r")

        same = ids(deep) == ids(key)
        add_check(f"records ({label}): keyset page equals offset page", same,
                  f"offset {offset:,} and after_timestamp/after_id return the same 50 ids" if same
                  else "the pages differ")
        t = alternate(db, {"p1": page1, "deep": deep, "key": key}, reps=5, warmup=1)
        p1, d, k = median(t["p1"]), median(t["deep"]), median(t["key"])
        add_result(f"`get_usage_records` page 1 ({label}; {matching:,} rows match)", fmt_ms(p1), "—",
                   None, None, None, "milliseconds")
        add_result(f"`get_usage_records` offset {offset:,} ({label})", fmt_ms(d), f"page 1: {fmt_ms(p1)}",
                   d / p1, "<=", 2, "measured time / page 1 time")
        add_result(f"`get_usage_records` keyset at row {offset:,} ({label})", fmt_ms(k), f"page 1: {fmt_ms(p1)}",
                   k / p1, "<=", 2, "measured time / page 1 time")


# -- search (issue 19) and the records explorer (issue 22) ----------------------

SEARCH_COMMON = "gpt"
SEARCH_ABSENT = "zq-no-such-term-xj"


def bench_search(db: str) -> None:
    """Page 1 of a search for an absent term vs one for a common term (no
    date range: the whole table), 100 rows a page."""
    section(f"search: page 1 for an absent term vs a common one ({SEARCH_COMMON!r})")
    pred = lambda term: (f"(agent_id ILIKE '%{term}%' OR agent_name ILIKE '%{term}%' OR model ILIKE '%{term}%' "
                         f"OR error_message ILIKE '%{term}%')")
    q = {name: f"SELECT * FROM usage_analytics.get_usage_records({lit({'search': term})}, 100)"
         for name, term in (("absent", SEARCH_ABSENT), ("common", SEARCH_COMMON))}
    got_absent = int(scalar(db, f"SELECT count(*) FROM ({q['absent']}) r"))
    got_common = int(scalar(db, f"SELECT count(*) FROM ({q['common']}) r"))
    add_check("search for an absent term finds nothing", got_absent == 0, f"{got_absent} rows")
    add_check("search for a common term fills page 1", got_common == 100, f"{got_common} rows")
    matching = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {pred(SEARCH_COMMON)}"))
    t = alternate(db, q, reps=5, warmup=1)
    a, c = median(t["absent"]), median(t["common"])
    add_result(f"`get_usage_records` page 1, search for an absent term (0 rows match)", fmt_ms(a),
               f"page 1 for {SEARCH_COMMON!r} ({matching:,} rows match): {fmt_ms(c)}", a / c, "<=", 2,
               "measured time / baseline time", note="100 rows a page, no date range")


def bench_search_insert(db: str) -> None:
    """The insert cost of the trigram index: INSERT tps into a trigger-free
    copy of one partition with the search index (as every partition of the
    extension's table has it) vs the same copy without it."""
    section(f"search index: INSERT tps with vs without it ({SEARCH_TABLE_ROWS:,} rows preloaded)")
    cols = ('id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens, '
            'cost_usd, response_time_ms, success, error_message, request_metadata, "timestamp", model, requested_model')

    def drop_trgm(table: str) -> None:
        # LIKE … INCLUDING ALL copies the default partition's search index.
        for idx in rows(db, f"""SELECT i.indexrelid::regclass FROM pg_index i
                                  WHERE i.indrelid = '{table}'::regclass
                                    AND pg_get_indexdef(i.indexrelid) LIKE '%gin_trgm_ops%'"""):
            psql(db, f"DROP INDEX {idx[0]}")

    psql(db, "DROP TABLE IF EXISTS bench.search_plain, bench.search_trgm")
    for table in ("bench.search_plain", "bench.search_trgm"):
        psql(db, f"CREATE TABLE {table} (LIKE usage_analytics.agent_usage_detailed_default INCLUDING ALL)")
        drop_trgm(table)
        psql(db, f"""INSERT INTO {table} ({cols})
                     SELECT {cols} FROM bench.usage_clone ORDER BY "timestamp" DESC, id LIMIT {SEARCH_TABLE_ROWS}""")
    # The search index as the extension makes it on every partition.
    psql(db, "SELECT usage_analytics._create_search_index('bench.search_trgm'); "
             "VACUUM (ANALYZE) bench.search_plain; VACUUM (ANALYZE) bench.search_trgm;")
    n_idx = [int(scalar(db, f"SELECT count(*) FROM pg_index i WHERE i.indrelid = '{t}'::regclass "
                            "AND pg_get_indexdef(i.indexrelid) LIKE '%gin_trgm_ops%'"))
             for t in ("bench.search_plain", "bench.search_trgm")]
    add_check("search-index insert tables: only one has the trigram index", n_idx == [0, 1],
              f"trigram indexes: plain {n_idx[0]}, trgm {n_idx[1]}")
    tps = pgbench_rounds(db, {"trgm": "insert_search_trgm.sql", "plain": "insert_search_plain.sql"})
    add_result("INSERT with the trigram search index (pgbench -M prepared, 2 clients)", f"{tps['trgm']:,.0f} tps",
               f"same table without it: {tps['plain']:,.0f} tps", tps["trgm"] / tps["plain"], None, None,
               "measured tps / baseline tps", note="trigger-free copies of one partition; no goal of its own "
                                                   "(the INSERT and COPY ratios include it)")
    psql(db, "DROP TABLE bench.search_plain, bench.search_trgm")


def bench_explorer(db: str, today: dt.date) -> None:
    """The records dashboard's page-1 queries, as its data-source login (an
    usage_analytics_auditor), vs a raw scan of the same 30 days."""
    start, end = today - dt.timedelta(days=29), today + dt.timedelta(days=1)
    section(f"records explorer page-1 queries ({start} .. {today}) as a usage_analytics_auditor login")
    psql(db, """DO $$ BEGIN
                  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_grafana') THEN
                      CREATE ROLE bench_grafana LOGIN;
                  END IF;
                END $$;
                GRANT usage_analytics_auditor TO bench_grafana;""")
    rng = f"{ts(start)}, {ts(end)}"
    raw = (f'SELECT count(*), sum(cost_usd), sum(input_tokens) FROM usage_analytics.agent_usage_detailed '
           f'WHERE "timestamp" >= {ts(start)} AND "timestamp" < {ts(end)}')
    queries = {
        "records": f"SELECT * FROM usage_analytics.explorer_records({rng})",
        "records, provider + model": (f"SELECT * FROM usage_analytics.explorer_records({rng}, "
                                      "providers => ARRAY['openai', 'anthropic'], models => ARRAY['gpt-4o', 'claude-sonnet-4-5'])"),
        f"records, search {SEARCH_COMMON!r}": f"SELECT * FROM usage_analytics.explorer_records({rng}, search => {lit(SEARCH_COMMON)})",
        "summary": f"SELECT usage_analytics.explorer_summary({rng})",
        "trend (day)": f"SELECT * FROM usage_analytics.explorer_trend('day', {rng})",
        "values: user": f"SELECT * FROM usage_analytics.explorer_values('user', {rng})",
        "values: agent": f"SELECT * FROM usage_analytics.explorer_values('agent', {rng})",
        "values: framework": f"SELECT * FROM usage_analytics.explorer_values('framework', {rng})",
        "values: provider": f"SELECT * FROM usage_analytics.explorer_values('provider', {rng})",
        "values: model": f"SELECT * FROM usage_analytics.explorer_values('model', {rng})",
        "values: message_type": f"SELECT * FROM usage_analytics.explorer_values('message_type', {rng})",
        "raw": raw,
    }
    setup = "SET ROLE bench_grafana;"
    n = int(rows(db, f"{setup} SELECT count(*) FROM usage_analytics.explorer_records({rng})")[0][0])
    add_check("explorer_records as the auditor fills page 1", n == 100, f"{n} rows")
    t = alternate(db, queries, reps=3, warmup=1, setup=setup)
    r = median(t.pop("raw"))
    for name, times in t.items():
        m = median(times)
        add_result(f"explorer page 1: {name}", fmt_ms(m), f"raw scan of the 30 days: {fmt_ms(r)}", m / r, "<=", 0.1,
                   "measured time / baseline time")


EXPORT_COLUMNS = ('id, user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, '
                  'output_tokens, total_tokens, cost_usd, response_time_ms, success, error_message, '
                  'request_metadata, "timestamp", model, requested_model')


def bench_export(db: str, today: dt.date) -> None:
    day = today - dt.timedelta(days=7)
    section(f"export of one day ({day})")
    filters = {"start_date": day.isoformat(), "end_date": day.isoformat()}
    where = f'"timestamp" >= {ts(day)} AND "timestamp" < {ts(day + dt.timedelta(days=1))}'
    native = (f"COPY (SELECT {EXPORT_COLUMNS} FROM usage_analytics.agent_usage_detailed WHERE {where} "
              'ORDER BY "timestamp", id) TO STDOUT WITH (FORMAT csv, HEADER)')
    copy_fn = f"COPY (SELECT * FROM usage_analytics.usage_export({lit(filters)})) TO STDOUT WITH (FORMAT csv, HEADER)"
    csv_fn = f"SELECT usage_analytics.export_usage_csv({lit(filters)})"
    n_native = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {where}"))
    n_fn = int(scalar(db, f"SELECT count(*) FROM usage_analytics.usage_export({lit(filters)})"))
    n_csv = int(scalar(db, f"SELECT (length(x) - length(replace(x, E'\\r\\n', ''))) / 2 - 1 FROM ({csv_fn}) s(x)"))
    add_check("export: same rows", n_native == n_fn == n_csv,
              f"native {n_native:,}, usage_export {n_fn:,}, export_usage_csv {n_csv:,} records")
    t = alternate(db, {"native": native, "copy": copy_fn, "csv": csv_fn}, reps=3, warmup=1)
    nat, cp, cs = median(t["native"]), median(t["copy"]), median(t["csv"])
    add_result(f"`export_usage_csv` ({n_native:,} rows)", fmt_ms(cs), f"native COPY: {fmt_ms(nat)}",
               nat / cs, ">=", 0.5, "baseline time / measured time")
    add_result(f"`COPY (SELECT * FROM usage_export(...))` ({n_native:,} rows)", fmt_ms(cp),
               f"native COPY: {fmt_ms(nat)}", nat / cp, ">=", 0.8, "baseline time / measured time")


# -- exporters ---------------------------------------------------------------

PROCS: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    fh = open(log, "w")
    p = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    PROCS.append(p)
    with open(OUT / "children.pids", "a") as f:
        f.write(f"{p.pid}\n")
    return p


def stop_children() -> None:
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    PROCS.clear()
    # All reaped: bench.sh must not signal these (possibly reused) pids.
    (OUT / "children.pids").write_text("")


def fetch(url: str, timeout: float = 120) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Broken(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            status, _ = fetch(url, timeout=5)
            if status == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise Broken(f"{url} not ready after {timeout}s:\n{log.read_text()[-2000:]}")


def scrape_times(url: str, n: int, warmup: int) -> list[float]:
    """Scrape durations in ms, measured by curl (time_total)."""
    times = []
    for i in range(warmup + n):
        p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise Broken(f"curl {url} failed: {p.stderr}")
        code, total = p.stdout.split()
        if code != "200":
            raise Broken(f"{url} answered {code}")
        if i >= warmup:
            times.append(float(total) * 1000)
    return times


def exporter_binary() -> Path:
    if os.environ.get("BENCH_EXPORTER"):
        return Path(os.environ["BENCH_EXPORTER"])
    for profile in ("release", "debug"):
        candidate = ROOT / "target" / profile / "usage-analytics-exporter"
        if candidate.exists():
            return candidate
    raise Broken("usage-analytics-exporter not built: cargo build --release -p usage-analytics-exporter")


def start_exporter(db: str) -> str:
    binary = exporter_binary()
    port = free_port()
    log = OUT / f"exporter-{db}.log"
    proc = spawn([str(binary), "--database-url", f"host=127.0.0.1 port={PORT} dbname={db} user=postgres",
                  "--listen", f"127.0.0.1:{port}"], dict(ENV), log)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/health", proc, log)
    return f"{base}/metrics"


def requests_total(metrics: str) -> float:
    total = 0.0
    seen = False
    for line in metrics.splitlines():
        if line.startswith("ai_usage_requests_total{") or line.startswith("ai_usage_requests_total "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    if not seen:
        raise Broken("the exporter's /metrics has no ai_usage_requests_total")
    return total


def bench_exporters(urls: dict[str, str]) -> None:
    section("exporter scrapes")
    # Earlier sections' writer sessions left bookkeeping shards behind; fold
    # them as the scheduled maintenance would have by now.
    for db in urls:
        psql(db, "SELECT usage_analytics._compact_bookkeeping()")
    add_context("usage-analytics-exporter binary", str(exporter_binary().relative_to(ROOT))
                if exporter_binary().is_relative_to(ROOT) else str(exporter_binary()))
    big_n = int(scalar("bench", "SELECT count(*) FROM usage_analytics.agent_usage_detailed"))
    small_n = int(scalar("bench_small", "SELECT count(*) FROM usage_analytics.agent_usage_detailed"))
    big = scrape_times(urls["bench"], SCRAPES, warmup=3)
    small = scrape_times(urls["bench_small"], SCRAPES, warmup=3)
    # Again, interleaved with the first, so noise hits both.
    big += scrape_times(urls["bench"], SCRAPES, warmup=0)
    small += scrape_times(urls["bench_small"], SCRAPES, warmup=0)

    peer_bin = shutil.which("prometheus-postgres-exporter") or shutil.which("postgres_exporter")
    if not peer_bin:
        raise Broken("prometheus-postgres-exporter is not installed (apt-get install prometheus-postgres-exporter)")
    port = free_port()
    log = OUT / "postgres_exporter.log"
    env = dict(ENV, DATA_SOURCE_NAME=f"host=127.0.0.1 port={PORT} dbname=bench user=postgres sslmode=disable")
    proc = spawn([peer_bin, f"--web.listen-address=127.0.0.1:{port}",
                  f"--extend.query-path={SCRIPTS / 'postgres_exporter_queries.yaml'}",
                  "--disable-default-metrics", "--disable-settings-metrics",
                  "--no-collector.database", "--no-collector.bgwriter", "--log.level=warn"], env, log)
    peer_url = f"http://127.0.0.1:{port}/metrics"
    wait_ready(f"http://127.0.0.1:{port}/", proc, log)
    status, body = fetch(peer_url, timeout=600)
    peer_series = [l for l in body.splitlines() if l.startswith("pg_ai_usage_requests{") or l.startswith("ai_usage_requests{")]
    if status != 200 or not peer_series:
        raise Broken(f"postgres_exporter did not serve the custom query (status {status}):\n"
                     f"{log.read_text()[-2000:]}")
    peer_total = sum(float(l.rsplit(" ", 1)[1]) for l in peer_series)
    peer = scrape_times(peer_url, PEER_SCRAPES, warmup=0)
    proc.terminate()
    proc.wait(timeout=10)

    b, s, p = median(big), median(small), median(peer)
    # A scrape's work follows its series (label sets), which more rows can
    # only add to up to the series cap; said beside the ratio.
    label_sets = {db: int(scalar(db, "SELECT count(*) FROM usage_analytics.metrics_usage_counters()"))
                  for db in ("bench", "bench_small")}
    add_result(f"exporter scrape at {big_n:,} rows", fmt_ms(b), f"same at {small_n:,} rows: {fmt_ms(s)}",
               b / s, "<=", 2, "measured time / baseline time",
               note=f"median of {len(big)} scrapes; {label_sets['bench']:,} vs {label_sets['bench_small']:,} "
                    "counter label sets")
    add_result(f"exporter scrape vs postgres_exporter at {big_n:,} rows", fmt_ms(b),
               f"postgres_exporter custom GROUP BY: {fmt_ms(p)}", p / b, ">=", 50,
               "baseline time / measured time",
               note=f"postgres_exporter: median of {len(peer)} scrapes")
    add_check("postgres_exporter's GROUP BY counts every row", int(round(peer_total)) == big_n,
              f"{int(round(peer_total)):,} requests in {len(peer_series)} series, table has {big_n:,}")


def check_exporter_counts(urls: dict[str, str]) -> None:
    section("exporter counters vs the table")
    for db, url in urls.items():
        status, body = fetch(url)
        if status != 200:
            raise Broken(f"{url} answered {status}")
        exported = requests_total(body)
        n = int(scalar(db, "SELECT count(*) FROM usage_analytics.agent_usage_detailed"))
        add_check(f"exporter ai_usage_requests_total ({db}) equals count(*)", int(round(exported)) == n,
                  f"sum of ai_usage_requests_total {int(round(exported)):,}, count(*) {n:,}")


# -- rollup of a big day ------------------------------------------------------

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
    t = alternate(db, {"rollup": rollup, "scan": scan}, reps=3, warmup=1)
    groups = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_performance_metrics WHERE date = '{day}'"))
    r, s = median(t["rollup"]), median(t["scan"])
    add_result(f"`rollup_daily` of a {have:,}-row day", fmt_ms(r), f"one aggregate scan of the day: {fmt_ms(s)}",
               r / s, "<=", 1.5, "measured time / baseline time", note=f"{groups:,} rollup rows")


# -- writes -------------------------------------------------------------------

TPS_RE = re.compile(r"^tps = ([0-9.]+)", re.M)


def pgbench_cmd(db: str, script: str | Path, clients: int = 2, seconds: int | None = None,
                rate: int | None = None) -> list[str]:
    path = script if isinstance(script, Path) else SCRIPTS / script
    cmd = [str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
           "-T", str(seconds or PGBENCH_SECONDS), "-D", f"users={USERS}", "-D", f"agents={AGENTS}"]
    if rate:
        cmd += ["-R", str(rate)]
    return cmd + ["-f", str(path), db]


def pgbench(db: str, script: str | Path, clients: int = 2) -> float:
    p = subprocess.run(pgbench_cmd(db, script, clients), capture_output=True, text=True, env=ENV)
    m = TPS_RE.search(p.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", p.stdout)
    if p.returncode != 0 or not m or (failed and int(failed.group(1)) > 0):
        raise Broken(f"pgbench {script} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return float(m.group(1))


def pgbench_rounds(db: str, scripts: dict[str, str | Path]) -> dict[str, float]:
    """Interleaved rounds of pgbench runs (a CHECKPOINT before each); median tps per script."""
    tps: dict[str, list[float]] = {k: [] for k in scripts}
    for r in range(PGBENCH_ROUNDS):
        for name, script in scripts.items():
            psql(db, "CHECKPOINT")
            tps[name].append(pgbench(db, script))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} tps" for k, v in tps.items()), flush=True)
    return {k: median(v) for k, v in tps.items()}


def bench_pgbench(db: str) -> None:
    section(f"pgbench -M prepared -c 2 -j 2, {PGBENCH_ROUNDS} rounds of {PGBENCH_SECONDS}s per script")
    tps = pgbench_rounds(db, {"track": "track.sql", "insert": "insert.sql", "clone": "insert_clone.sql"})
    t, i, c = tps["track"], tps["insert"], tps["clone"]
    add_result("`track_detailed_usage` (pgbench -M prepared, 2 clients)", f"{t:,.0f} tps",
               f"plain INSERT of the same row into the same table: {i:,.0f} tps", t / i, ">=", 0.9,
               "measured tps / baseline tps")
    add_result("INSERT into the extension's table (pgbench -M prepared, 2 clients)", f"{i:,.0f} tps",
               f"INSERT into the trigger-free clone: {c:,.0f} tps", i / c, ">=", 0.75, "measured tps / baseline tps")


# The token classes and service tier travel with the rows: they are part of
# what the extension prices.
TOKEN_CLASS_COLS = "cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, service_tier"
# -- budgets (issue 16) ---------------------------------------------------------

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


# -- the price cache (issue 14) -------------------------------------------------

RESOLVE_NAMES = ["gpt-4o", "gpt-4o-2024-08-06", "claude-sonnet-4-5", "gemini-2.5-pro", "o4-mini",
                 "gpt-4.1-mini", "deepseek-chat", "acme-unknown-model", "ft:gpt-4o-mini-2024-07-18:acme::x1",
                 "openai/gpt-5"]
RESOLVE_CALLS = 100_000


def bench_price_cache(db: str) -> None:
    """Loading the whole catalog into a backend's price cache (the call after an
    invalidation vs the same call warm), and the cost of resolving a name with
    the shipped catalog vs with SYNTHETIC_MODELS more priced models."""
    section("price cache: catalog load and resolution vs catalog size")
    catalog = int(scalar(db, "SELECT count(*) FROM usage_analytics.model_pricing"))
    call = "SELECT usage_analytics.resolve_model('openai', 'gpt-4o')"
    invalidate = "UPDATE usage_analytics.provider_default_model SET model = model"
    reps = 15
    # One session: warm call, then invalidate + call (the reload), alternating.
    statements = [call]
    for _ in range(reps):
        statements += [call, invalidate, call]
    times = timed(db, statements)[1:]
    warm = [times[i] for i in range(0, len(times), 3)]
    cold = [times[i] for i in range(2, len(times), 3)]
    w, c = median(warm), median(cold)
    add_result(f"price cache: load of the whole catalog ({catalog:,} rows) by the first call after an invalidation",
               fmt_ms(c), f"the same call warm: {fmt_ms(w)}", c - w, "<=", 10,
               "measured ms − baseline ms (the load's own time, in ms)",
               note=f"`{call[7:]}` after `{invalidate}`")
    # A fresh connection: the first call of a new backend (library load included).
    fresh = [timed(db, [call, call]) for _ in range(5)]
    add_context("price cache: first call in a fresh connection vs its second call",
                f"{fmt_ms(median([f[0] for f in fresh]))} vs {fmt_ms(median([f[1] for f in fresh]))}")

    names = "ARRAY[" + ", ".join(lit(n) for n in RESOLVE_NAMES) + "]"
    resolve = (f"SELECT count(usage_analytics.resolve_model('openai', ({names})[1 + i % {len(RESOLVE_NAMES)}])) "
               f"FROM generate_series(1, {RESOLVE_CALLS}) i")
    before = rows(db, f"SELECT n, usage_analytics.resolve_model('openai', n) FROM unnest({names}) n")
    small = alternate(db, {"resolve": resolve}, reps=5, warmup=1)["resolve"]
    psql(db, f"""INSERT INTO usage_analytics.model_pricing (provider, model, input_usd_per_1k, output_usd_per_1k)
                 SELECT (ARRAY['openai', 'anthropic', 'google', 'mistral', 'deepseek'])[1 + i % 5],
                        format('bench-synthetic-%s-%s', i, md5(i::text)), 0.001 * (1 + i % 7), 0.002 * (1 + i % 11)
                   FROM generate_series(1, {SYNTHETIC_MODELS}) i""")
    try:
        big_catalog = int(scalar(db, "SELECT count(*) FROM usage_analytics.model_pricing"))
        after = rows(db, f"SELECT n, usage_analytics.resolve_model('openai', n) FROM unnest({names}) n")
        add_check("resolution is unchanged by the synthetic models", after == before,
                  "; ".join(f"{n} → {m or 'NULL'}" for n, m in after))
        big = alternate(db, {"resolve": resolve}, reps=5, warmup=1)["resolve"]
        times = timed(db, statements)[1:]
        big_load = median([times[i] for i in range(2, len(times), 3)]) - median([times[i] for i in range(0, len(times), 3)])
    finally:
        psql(db, "DELETE FROM usage_analytics.model_pricing WHERE model LIKE 'bench-synthetic-%'")
    s_, b_ = median(small), median(big)
    add_result(f"`resolve_model` per call with {big_catalog:,} price rows", f"{b_ * 1000 / RESOLVE_CALLS:.2f} µs",
               f"with the shipped {catalog:,}: {s_ * 1000 / RESOLVE_CALLS:.2f} µs", b_ / s_, "<=", 1.5,
               "measured time / baseline time",
               note=f"{RESOLVE_CALLS:,} calls over {len(RESOLVE_NAMES)} names (exact, dated, alias, unknown, fine-tune, "
                    f"prefixed); catalog {big_catalog / catalog:.1f}× larger")
    add_context(f"price cache: load of the {big_catalog:,}-row catalog", fmt_ms(big_load))


# -- the OTLP collector (issue 17) ---------------------------------------------

COLLECTOR_COLS = ("user_id, agent_id, agent_name, framework, provider, message_type, input_tokens, output_tokens, "
                  "cache_read_tokens, cache_write_tokens, reasoning_tokens, response_time_ms, success, error_message, "
                  "request_metadata, model, service_tier, \"timestamp\"")


def collector_binary() -> Path:
    for profile in ("release", "debug"):
        candidate = ROOT / "target" / profile / "usage-analytics-collector"
        if candidate.exists():
            return candidate
    raise Broken("usage-analytics-collector not built: cargo build --release -p usage-analytics-collector")


def otlp_bodies(n_spans: int, t0_ns: int) -> list[bytes]:
    """OTLP/JSON ExportTraceServiceRequest bodies of 1,000 GenAI spans each,
    new random trace ids (a rerun records them again), start times 1 ms apart from t0_ns."""
    def attr(k: str, v) -> dict:
        return {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}

    bodies = []
    for b in range(n_spans // 1000):
        trace = os.urandom(16).hex()
        spans = []
        for i in range(1000):
            k = b * 1000 + i
            start = t0_ns + k * 1_000_000
            spans.append({
                "traceId": trace, "spanId": (k + 1).to_bytes(8, "big").hex(), "name": "chat gpt-4o",
                "kind": 3, "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 850_000_000),
                "attributes": [
                    attr("gen_ai.provider.name", "openai"), attr("gen_ai.operation.name", "chat"),
                    attr("gen_ai.request.model", "gpt-4o"), attr("gen_ai.response.model", "gpt-4o-2024-08-06"),
                    attr("gen_ai.agent.id", f"agent-{k % AGENTS:02d}"), attr("gen_ai.agent.name", "Bench Agent"),
                    attr("gen_ai.framework", "langchain"),
                    attr("user.id", f"a0000000-0000-4000-8000-{k % USERS:012d}"),
                    attr("gen_ai.usage.input_tokens", 50 + k % 5000), attr("gen_ai.usage.output_tokens", 20 + k % 1400),
                    attr("gen_ai.usage.cache_read.input_tokens", (k % 5000) // 4),
                ],
                "status": {"code": 1}})
        bodies.append(json.dumps({"resourceSpans": [{
            "resource": {"attributes": [attr("service.name", "bench-app")]},
            "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans}]}]}).encode())
    return bodies


def bench_collector(db: str, first_day: dt.date) -> None:
    """Spans/s the collector records (JSON bodies of 1,000 spans over HTTP,
    a few sender threads, until every body is acknowledged, i.e. committed) vs a
    plain COPY of the same rows into the same table."""
    import concurrent.futures
    section(f"collector: {COLLECTOR_SPANS:,} spans in bodies of 1,000, {COLLECTOR_THREADS} sender threads")
    binary = collector_binary()
    add_context("usage-analytics-collector binary", str(binary.relative_to(ROOT)) if binary.is_relative_to(ROOT) else str(binary))
    psql(db, """DO $$ BEGIN
                  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_collector') THEN
                      CREATE ROLE bench_collector LOGIN;
                  END IF;
                END $$;
                GRANT usage_analytics_writer TO bench_collector;""")
    # Rows land 250 days before the data (the default partition), away from the read benchmarks.
    zone_day = first_day - dt.timedelta(days=250)
    t0 = dt.datetime.combine(zone_day, dt.time(), dt.timezone.utc)
    t0_ns = int(t0.timestamp()) * 1_000_000_000 + int.from_bytes(os.urandom(2), "big") * 1_000_000_000
    bodies = otlp_bodies(COLLECTOR_SPANS, t0_ns)
    lo = dt.datetime.fromtimestamp(t0_ns / 1e9, dt.timezone.utc)
    hi = lo + dt.timedelta(milliseconds=COLLECTOR_SPANS + 1)
    zone = f"\"timestamp\" >= '{lo.isoformat()}' AND \"timestamp\" < '{hi.isoformat()}' AND agent_name = 'Bench Agent'"
    before = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {zone}"))

    port = free_port()
    log = OUT / "collector.log"
    proc = spawn([str(binary), "--database-url", f"host=127.0.0.1 port={PORT} dbname={db} user=bench_collector",
                  "--listen", f"127.0.0.1:{port}"], dict(ENV), log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/health", proc, log)

        def send(body: bytes) -> int:
            for attempt in range(60):
                req = urllib.request.Request(f"{base}/v1/traces", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        answer = json.loads(r.read() or b"{}")
                        if answer.get("partialSuccess", {}).get("rejectedSpans"):
                            raise Broken(f"the collector rejected spans: {answer}")
                        return r.status
                except urllib.error.HTTPError as e:
                    if e.code in (429, 503):
                        time.sleep(float(e.headers.get("Retry-After") or 1))
                        continue
                    raise Broken(f"the collector answered {e.code}: {e.read()[:500]!r}")
            raise Broken("the collector stayed unavailable")

        # A warm-up body (its spans are counted too).
        send(bodies[0])
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(COLLECTOR_THREADS) as pool:
            list(pool.map(send, bodies[1:]))
        elapsed = time.monotonic() - started
        status, metrics = fetch(f"{base}/metrics")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    recorded = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE {zone}")) - before
    add_check("collector: every span recorded once", recorded == COLLECTOR_SPANS,
              f"{recorded:,} rows for {COLLECTOR_SPANS:,} spans")
    timed_spans = COLLECTOR_SPANS - 1000
    spans_per_s = timed_spans / elapsed

    # The baseline: a plain COPY of the same rows (as the collector stored them,
    # cost left to the table's trigger) into the same table, 10 days earlier.
    copy_dir = PGDIR / "copy"
    copy_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(copy_dir, user="postgres")
    csv = copy_dir / "collector.csv"
    shifted = COLLECTOR_COLS.replace('"timestamp"', '"timestamp" - interval \'10 days\'')
    psql(db, f"""COPY (SELECT {shifted}
                         FROM usage_analytics.agent_usage_detailed WHERE {zone}) TO '{csv}' WITH (FORMAT csv)""")
    copy_ms = timed(db, ["CHECKPOINT", f"COPY usage_analytics.agent_usage_detailed ({COLLECTOR_COLS}) FROM '{csv}' WITH (FORMAT csv)"])[1]
    csv.unlink(missing_ok=True)
    copy_per_s = recorded / copy_ms * 1000
    add_result(f"collector: spans recorded per second ({timed_spans:,} spans, OTLP/JSON over HTTP)",
               f"{spans_per_s:,.0f} spans/s", f"plain `COPY` of the same rows: {copy_per_s:,.0f} rows/s",
               spans_per_s / copy_per_s, ">=", 0.5, "measured rows/s / baseline rows/s",
               note=f"{elapsed:.1f} s for {len(bodies) - 1} bodies")
    add_result("collector: spans recorded per second (absolute goal)", f"{spans_per_s:,.0f} spans/s",
               "20,000 spans/s", spans_per_s / 20_000, ">=", 1, "measured / 20,000 spans/s")
    if status == 200:
        got = {m.group(1): m.group(2) for m in re.finditer(r"^(usage_collector_spans_\w+_total) ([0-9.e+]+)$", metrics, re.M)}
        add_context("collector self-metrics", ", ".join(f"{k} {v}" for k, v in sorted(got.items())))


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
    t = alternate(db, {"ext": ext, "clone": clone}, reps=3, warmup=0, before_each="CHECKPOINT")
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


# --------------------------------------------------------------------------
# machine, report

def machine() -> dict:
    info = {"nproc": os.cpu_count()}
    try:
        info["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        pass
    try:
        mem = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        info["memory_gib"] = round(int(mem.split()[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration):
        info["memory_gib"] = None
    try:
        cpu = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
        info["cpu"] = cpu.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "unknown"
    info["kernel"] = platform.release()
    info["postgres"] = scalar("bench", "SELECT version()")
    info["settings"] = {k: v for k, v in rows("bench", """
        SELECT name, current_setting(name) FROM unnest(ARRAY['shared_buffers', 'work_mem', 'max_wal_size',
               'checkpoint_timeout', 'synchronous_commit', 'fsync', 'max_parallel_workers_per_gather', 'jit',
               'autovacuum']) name""")}
    info["load_average_at_start"] = os.getloadavg()
    return info


def write_report(info: dict, scale: dict, elapsed: float, error: str | None) -> str:
    lines = ["# pg_usage_analytics benchmarks", ""]
    lines.append(f"Run {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
                 f"{elapsed:.0f} s (bench.py; loading not included, see scale).")
    lines.append("")
    lines.append(f"**Machine:** {info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB, "
                 f"load average at start {', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}, "
                 f"at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
                 f"{info['postgres'].split(' on ')[0]}; "
                 + ", ".join(f"{k}={v}" for k, v in info["settings"].items()) + ".")
    lines.append("")
    lines.append("**Scale:** " + ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}"
                                           for k, v in scale.items()) + ".")
    lines.append("")
    lines.append("| benchmark | measured | baseline | ratio | goal | met |")
    lines.append("|---|---|---|---|---|---|")
    for r in RESULTS:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        goal = r["goal"] or "—"
        met = "" if r["met"] is None else ("✓" if r["met"] else "✗")
        bench = r["benchmark"] + (f" — {r['note']}" if r["note"] else "")
        if r["ratio"] is not None:
            ratio = f"{ratio} ({r['ratio_means']})"
        lines.append(f"| {bench} | {r['measured']} | {r['baseline']} | {ratio} | {goal} | {met} |")
    lines.append("")
    lines.append("**Correctness:**")
    lines.append("")
    for c in CHECKS:
        lines.append(f"- {'✓' if c['ok'] else '✗'} {c['check']}: {c['detail']}")
    lines.append("")
    if CONTEXT:
        lines.append("**Context:**")
        lines.append("")
        for c in CONTEXT:
            lines.append(f"- {c['name']}: {c['value']}")
        lines.append("")
    lines.append("Times are medians (psql `\\timing`, output discarded; curl `time_total` for scrapes; "
                 "pgbench tps), measured and baseline alternating after a warm-up. "
                 "Ratios are oriented so that higher is better for ≥ goals and lower is better for ≤ goals.")
    if error:
        lines.append("")
        lines.append(f"**The run failed:** {error}")
    md = "\n".join(lines) + "\n"
    (OUT / "results.md").write_text(md)
    (OUT / "results.json").write_text(json.dumps(
        {"machine": info, "scale": scale, "elapsed_seconds": round(elapsed, 1), "results": RESULTS,
         "correctness": CHECKS, "context": CONTEXT, "error": error}, indent=2, default=str) + "\n")
    return md


def main() -> int:
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    info = machine()
    today = utc_today("bench")
    first_day = today - dt.timedelta(days=DAYS - 1)
    load = rows("bench", "SELECT rows, load_seconds, loaded_at FROM bench.load_meta")[0]
    scale = {
        "rows": int(scalar("bench", "SELECT count(*) FROM usage_analytics.agent_usage_detailed")),
        "loaded_rows": int(load[0]), "small_rows": int(scalar("bench_small",
                                                              "SELECT count(*) FROM usage_analytics.agent_usage_detailed")),
        "days": DAYS, "users": USERS, "agents": AGENTS, "copy_rows": COPY_ROWS, "day_rows": DAY_ROWS,
        "cost_rows": COST_ROWS, "pgbench_seconds": PGBENCH_SECONDS, "pgbench_rounds": PGBENCH_ROUNDS,
        "live_rate": LIVE_RATE, "collector_spans": COLLECTOR_SPANS, "search_table_rows": SEARCH_TABLE_ROWS,
        "synthetic_models": SYNTHETIC_MODELS,
        "load_seconds": int(load[1]), "loaded_at": load[2],
    }
    shape = rows("bench", """SELECT count(DISTINCT user_id), count(DISTINCT agent_id), count(DISTINCT requested_model),
                                   count(DISTINCT input_tokens)
                              FROM usage_analytics.agent_usage_detailed""")[0]
    scale["distinct"] = (f"{int(shape[0]):,} users, {int(shape[1])} agents, {int(shape[2])} requested models, "
                         f"{int(shape[3]):,} input token counts")
    print(f"bench: {scale['rows']:,} rows in bench, {scale['small_rows']:,} in bench_small; "
          f"{info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}", flush=True)
    error = None
    urls: dict[str, str] = {}
    try:
        psql("bench", "CHECKPOINT")
        bench_calculate_cost("bench", first_day)
        bench_summary("bench", today, first_day)
        bench_summary_live("bench", today)
        bench_records("bench", today)
        bench_search("bench")
        bench_explorer("bench", today)
        bench_export("bench", today)
        urls = {db: start_exporter(db) for db in ("bench", "bench_small")}
        bench_exporters(urls)
        bench_rollup_day("bench", today)
        bench_price_cache("bench")
        bench_pgbench("bench")
        bench_search_insert("bench")
        bench_budgets("bench")
        bench_collector("bench", first_day)
        bench_copy("bench", first_day)
        check_exporter_counts(urls)
    except Broken as e:
        error = str(e)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        stop_children()
    md = write_report(info, scale, time.monotonic() - started, error and error.splitlines()[0])
    print("\n" + md)
    if error:
        print(f"bench: BROKEN: {error}", file=sys.stderr)
        return 1
    missed = sum(1 for r in RESULTS if r["met"] is False)
    print(f"bench: {len(RESULTS)} figures, {missed} goals missed; results in {OUT}/results.md and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
