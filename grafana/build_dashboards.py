#!/usr/bin/env python3
"""Generate grafana/dashboards/*.json from grafana/dashgen/ (grafana-foundation-sdk).

The JSON files are the deliverable and are committed; grafana/dashgen/ is their
source, written with Grafana's typed builders (grafana-foundation-sdk, pinned in
grafana/requirements.txt).

    make dashboards                               # rewrite the JSON files
    python3 grafana/build_dashboards.py           # the same
    python3 grafana/build_dashboards.py --check   # exit 1 if they are out of date

Edit grafana/dashgen/, not the JSON; grafana/test.sh fails when the two disagree.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "dashboards")
sys.dont_write_bytecode = True  # keep grafana/ free of __pycache__
sys.path.insert(0, HERE)

try:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
except ImportError:
    sys.exit("grafana-foundation-sdk is missing: pip install -r grafana/requirements.txt")

from dashgen import agents, overview, records  # noqa: E402

DASHBOARDS = {
    "usage-overview.json": overview.overview,
    "agent-performance.json": agents.agents,
    # PostgreSQL-backed, in a subdirectory: lint_dashboards.py and e2e_queries.py
    # (Prometheus checks) read dashboards/*.json only.
    "postgresql/usage-records.json": records.records,
}


def render(build):
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True,
                      ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 when a committed JSON file differs")
    ap.add_argument("--dir", default=OUT_DIR,
                    help="directory of the JSON files (default: grafana/dashboards)")
    args = ap.parse_args()
    stale = []
    for name, build in DASHBOARDS.items():
        path = os.path.join(args.dir, name)
        text = render(build)
        if args.check:
            try:
                with open(path, encoding="utf-8") as fh:
                    if fh.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            print("wrote %s" % os.path.relpath(path))
    if stale:
        for path in stale:
            print("out-of-date: %s (run make dashboards)" % os.path.basename(path),
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
