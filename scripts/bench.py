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

The sections live in scripts/benchmarks/, one module per concern: harness
(knobs, psql, timing, results, child processes), reads, writes, exporters,
collector and report. This file runs them in order.

Python 3.11 standard library only.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

from benchmarks.harness import (
    AGENTS, Broken, COLLECTOR_SPANS, COPY_ROWS, COST_ROWS, DAYS, DAY_ROWS, LIVE_RATE, OUT, PGBENCH_ROUNDS,
    PGBENCH_SECONDS, RESULTS, SEARCH_TABLE_ROWS, SYNTHETIC_MODELS, USERS, psql, rows, scalar, stop_children,
    utc_today
)
from benchmarks.reads import (
    bench_calculate_cost, bench_explorer, bench_export, bench_price_cache, bench_records, bench_search,
    bench_summary, bench_summary_live
)
from benchmarks.exporters import bench_exporters, check_exporter_counts, start_exporter
from benchmarks.writes import bench_budgets, bench_copy, bench_pgbench, bench_rollup_day, bench_search_insert
from benchmarks.collector import bench_collector
from benchmarks.report import machine, write_report


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
        bench_search("bench", first_day)
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
