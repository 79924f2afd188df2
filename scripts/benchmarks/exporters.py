"""The exporter: scrape time at scale and against postgres_exporter, and its
counts against the table."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .harness import (
    Broken, ENV, OUT, PEER_SCRAPES, PORT, ROOT, SCRAPES, SCRIPTS, add_check, add_context, add_result, fetch,
    fmt_ms, free_port, median, rows, scalar, section, settle_bookkeeping, spawn, wait_ready
)


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
    for db in urls:
        settle_bookkeeping(db)
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
        # Lifetime counters: rows a reused cluster's clean-up deleted (bench.sh)
        # still count.
        n, gone = (int(v) for v in rows(db, """
            SELECT (SELECT count(*) FROM usage_analytics.agent_usage_detailed), deleted_rows FROM bench.load_meta""")[0])
        add_check(f"exporter ai_usage_requests_total ({db}) equals count(*) plus rows deleted",
                  int(round(exported)) == n + gone,
                  f"sum of ai_usage_requests_total {int(round(exported)):,}, count(*) {n:,}, deleted {gone:,}")
