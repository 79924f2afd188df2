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


def bench_summary(db: str, today: dt.date, first_day: dt.date) -> None:
    start = today - dt.timedelta(days=29)
    section(f"get_usage_summary, 30 days ({start} .. {today})")
    roll = timed(db, [f"SELECT usage_analytics.rollup_range('{first_day}', '{today}')"])[0]
    add_context(f"rollup_range over the {(today - first_day).days + 1} days of data", fmt_ms(roll))
    filters = {"start_date": start.isoformat()}
    ext = f"SELECT usage_analytics.get_usage_summary({lit(filters)})"
    raw = SUMMARY_RAW.replace("{where}", f'"timestamp" >= {ts(start)}')
    window_rows = int(scalar(db, f'SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE "timestamp" >= {ts(start)}'))
    add_context("rows in the 30-day window", f"{window_rows:,}")

    def one(label: str, expect_fresh: int) -> None:
        fresh = int(scalar(db, f"SELECT cardinality(usage_analytics._fresh_rollup_days('{start}', '{today}'))"))
        add_check(f"summary ({label}): fresh rollup days", fresh == expect_fresh,
                  f"{fresh} of 30 days read from rollups (expected {expect_fresh})")
        t = alternate(db, {"ext": ext, "raw": raw}, reps=3, warmup=1)
        got = jload(scalar(db, ext))
        want = jload(scalar(db, raw))
        for key in ("total_requests", "total_cost_usd", "unique_users"):
            add_check(f"summary ({label}) {key} equals the raw GROUP BY", got[key] == want[key],
                      f"summary {got[key]}, raw {want[key]}")
        differing = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        add_check(f"summary ({label}): whole document equals the raw GROUP BY", not differing,
                  "all 15 keys equal" if not differing else f"differing keys: {', '.join(differing)}")
        e, r = median(t["ext"]), median(t["raw"])
        add_result(f"30-day `get_usage_summary` ({label})", fmt_ms(e), f"raw GROUP BY: {fmt_ms(r)}",
                   r / e, ">=", 10, "baseline time / measured time",
                   note=f"{got['total_requests']} requests, same numbers as raw")

    one("all days rolled up", 30)
    # The normal state: rows keep arriving today after the last rollup run.
    psql(db, """SELECT usage_analytics.track_detailed_usage('a0000000-0000-4000-8000-000000000000', 'agent-00',
                'Bench Agent', 'langchain', 'openai', 'chat', 100, 10, 500, true, NULL, '{}', 'gpt-4o')""")
    one("today un-rolled", 29)


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
    add_result(f"exporter scrape at {big_n:,} rows", fmt_ms(b), f"same at {small_n:,} rows: {fmt_ms(s)}",
               b / s, "<=", 2, "measured time / baseline time",
               note=f"median of {len(big)} scrapes")
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
                      sum(response_time_ms), count(response_time_ms)
                 FROM usage_analytics.agent_usage_detailed WHERE {where} GROUP BY 1, 2, 3, 4"""
    t = alternate(db, {"rollup": rollup, "scan": scan}, reps=3, warmup=1)
    groups = int(scalar(db, f"SELECT count(*) FROM usage_analytics.agent_performance_metrics WHERE date = '{day}'"))
    r, s = median(t["rollup"]), median(t["scan"])
    add_result(f"`rollup_daily` of a {have:,}-row day", fmt_ms(r), f"one aggregate scan of the day: {fmt_ms(s)}",
               r / s, "<=", 2, "measured time / baseline time", note=f"{groups:,} rollup rows")


# -- writes -------------------------------------------------------------------

TPS_RE = re.compile(r"^tps = ([0-9.]+)", re.M)


def pgbench(db: str, script: str) -> float:
    cmd = [str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-c", "2", "-j", "2", "-T", str(PGBENCH_SECONDS),
           "-D", f"users={USERS}", "-D", f"agents={AGENTS}", "-f", str(SCRIPTS / script), db]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    m = TPS_RE.search(p.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", p.stdout)
    if p.returncode != 0 or not m or (failed and int(failed.group(1)) > 0):
        raise Broken(f"pgbench {script} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return float(m.group(1))


def bench_pgbench(db: str) -> None:
    section(f"pgbench -M prepared -c 2 -j 2, {PGBENCH_ROUNDS} rounds of {PGBENCH_SECONDS}s per script")
    scripts = {"track": "track.sql", "insert": "insert.sql", "clone": "insert_clone.sql"}
    tps: dict[str, list[float]] = {k: [] for k in scripts}
    for r in range(PGBENCH_ROUNDS):
        for name, script in scripts.items():
            psql(db, "CHECKPOINT")
            tps[name].append(pgbench(db, script))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} tps" for k, v in tps.items()), flush=True)
    t, i, c = median(tps["track"]), median(tps["insert"]), median(tps["clone"])
    add_result("`track_detailed_usage` (pgbench -M prepared, 2 clients)", f"{t:,.0f} tps",
               f"plain INSERT of the same row into the same table: {i:,.0f} tps", t / i, ">=", 0.8,
               "measured tps / baseline tps")
    add_result("INSERT into the extension's table (pgbench -M prepared, 2 clients)", f"{i:,.0f} tps",
               f"INSERT into the trigger-free clone: {c:,.0f} tps", i / c, ">=", 0.7, "measured tps / baseline tps")


# The token classes and service tier travel with the rows: they are part of
# what the extension prices.
TOKEN_CLASS_COLS = "cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, service_tier"
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
               f"`COPY` with cost into the trigger-free clone: {fmt_ms(c)}", c / e, ">=", 0.5,
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
        bench_records("bench", today)
        bench_export("bench", today)
        urls = {db: start_exporter(db) for db in ("bench", "bench_small")}
        bench_exporters(urls)
        bench_rollup_day("bench", today)
        bench_pgbench("bench")
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
