"""The machine's description and the results report (markdown and JSON)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

from .harness import CHECKS, CONTEXT, OUT, RESULTS, rows, scalar


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
