"""The OTLP collector: spans recorded per second against a plain COPY."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from .harness import (
    AGENTS, Broken, COLLECTOR_SPANS, COLLECTOR_THREADS, ENV, OUT, PGDIR, PORT, ROOT, USERS, add_check,
    add_context, add_result, fetch, free_port, login_role, psql, scalar, section, settle_bookkeeping, spawn, timed,
    wait_ready
)


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
    login_role(db, "bench_collector", "usage_analytics_writer")
    settle_bookkeeping(db)
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
