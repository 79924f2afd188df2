"""The benchmark harness: scale knobs, psql helpers, timing, results,
child processes and pgbench. Every section module builds on it."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


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


PGBENCH_SECONDS = env_int("BENCH_PGBENCH_SECONDS", 10 if ROWS >= 1_000_000 else 2)


# Six rounds: each script leads as often as the others whether two or three
# are compared, and one disturbed round (checkpoint, autovacuum) cannot
# become the median, as it did with three rounds of 15 s.
PGBENCH_ROUNDS = env_int("BENCH_PGBENCH_ROUNDS", 6 if ROWS >= 1_000_000 else 3)


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


# The extension's tables that every write updates in place.
BOOKKEEPING = ("usage_counters", "usage_daily_totals", "usage_daily_user", "usage_series",
               "active_user_sketches", "budget_spend", "budget_reservations", "collector_spans")


def settle_bookkeeping(db: str) -> None:
    """What a live system's scheduled maintenance (pg_cron, every 15 minutes:
    fold the shards of exited sessions) and autovacuum do between bursts of
    writes, done before each section that writes or reads the bookkeeping.
    Autovacuum is off here so that no vacuum lands inside a measurement; left
    alone, the dead versions that earlier sections' updates leave would slow
    the next section's writers as no live system's would be."""
    psql(db, "SELECT usage_analytics._compact_bookkeeping()")
    psql(db, "VACUUM " + ", ".join(f"usage_analytics.{t}" for t in BOOKKEEPING))


def login_role(db: str, name: str, group: str) -> None:
    """A login role (created once) that is a member of the extension's group role."""
    psql(db, f"""DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                       CREATE ROLE {name} LOGIN;
                   END IF;
                 END $$;
                 GRANT {group} TO {name};""")


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


def utc_today(db: str) -> dt.date:
    return dt.date.fromisoformat(scalar(db, "SELECT (now() AT TIME ZONE 'UTC')::date"))


def ts(day: dt.date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'::timestamptz"


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


TPS_RE = re.compile(r"^tps = ([0-9.]+)", re.M)


def pgbench_cmd(db: str, script: str | Path, clients: int = 2, seconds: int | None = None,
                rate: int | None = None) -> list[str]:
    path = script if isinstance(script, Path) else SCRIPTS / script
    cmd = [str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
           "-T", str(seconds or PGBENCH_SECONDS), "-D", f"users={USERS}", "-D", f"agents={AGENTS}"]
    if rate:
        cmd += ["-R", str(rate)]
    return cmd + ["-f", str(path), db]


# The same comparisons without waiting for the WAL flush at commit, in the
# measured and the baseline script alike: what the scripts cost in CPU alone.
# The flush (this machine's disk, whose latency swung one script's tps by 2x
# between rounds) is part of every real commit, so the goals are checked with
# it; this view shows the extension's share of a commit's CPU.
NO_FLUSH_WAIT = dict(ENV, PGOPTIONS="-c synchronous_commit=off")


def pgbench(db: str, script: str | Path, clients: int = 2, env: dict[str, str] = ENV) -> float:
    p = subprocess.run(pgbench_cmd(db, script, clients), capture_output=True, text=True, env=env)
    m = TPS_RE.search(p.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", p.stdout)
    if p.returncode != 0 or not m or (failed and int(failed.group(1)) > 0):
        raise Broken(f"pgbench {script} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return float(m.group(1))


def pgbench_rounds(db: str, scripts: dict[str, str | Path], env: dict[str, str] = ENV) -> dict[str, float]:
    """Interleaved rounds of pgbench runs (a CHECKPOINT before each); median tps per script.
    The order rotates from round to round: a script that always ran right after
    another inherited the autovacuum and checkpoint work of that one's writes."""
    tps: dict[str, list[float]] = {k: [] for k in scripts}
    names = list(scripts)
    for r in range(PGBENCH_ROUNDS):
        for name in names[r % len(names):] + names[:r % len(names)]:
            script = scripts[name]
            psql(db, "CHECKPOINT")
            tps[name].append(pgbench(db, script, env=env))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} tps" for k, v in tps.items()), flush=True)
    return {k: median(v) for k, v in tps.items()}


# The token classes and service tier travel with the rows: they are part of
# what the extension prices.
TOKEN_CLASS_COLS = "cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, service_tier"
