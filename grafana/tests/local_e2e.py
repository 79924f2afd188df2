#!/usr/bin/env python3
"""Exercise grafana/e2e_queries.py against a real, throw-away Prometheus.

No PostgreSQL and no exporter are needed: grafana/tests/fixtures/sample.prom is
served as /metrics by `python3 -m http.server` and Prometheus scrapes it with
the bundled grafana/prometheus/prometheus.yml (target and intervals rewritten,
1 s scrapes, rules loaded). Then:

  1. flat counters (what a freshly loaded database looks like): every dashboard
     query must return data, every rule must evaluate;
  2. negative: a dashboard with invalid PromQL / a query without data and a rule
     that fails only at evaluation must be reported, and nothing else;
  3. growing counters (the file is rewritten every second): additionally no panel
     query may be all NaN/Inf.

Everything started here is stopped at the end. Exit status 0 when all passed.

    python3 grafana/tests/local_e2e.py [--prometheus BIN] [--keep]
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
GRAFANA = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")
E2E = os.path.join(GRAFANA, "e2e_queries.py")
PROM_DIR = os.path.join(GRAFANA, "prometheus")


def free_port(preferred=None):
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def http_get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("timed out waiting for %s" % what)


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)\s*$")


def render_metrics(sample, factor, rollup_ts):
    """Scale counters and histograms by factor; set the rollup timestamp."""
    types, out = {}, []
    for line in sample.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
            out.append(line)
            continue
        m = _SAMPLE.match(line)
        if not m:
            out.append(line)
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if name == "ai_usage_rollup_last_success_timestamp_seconds":
            value = "%d" % rollup_ts
        elif types.get(name) == "counter" or types.get(family) == "histogram":
            value = repr(round(float(value) * factor, 6))
        out.append("%s%s %s" % (name, labels, value))
    return "\n".join(out) + "\n"


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def run_e2e(url, *extra):
    proc = subprocess.run([sys.executable, E2E, url] + list(extra), capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


class Results:
    def __init__(self, verbose=False):
        self.passed = self.failed = 0
        self.verbose = verbose

    def check(self, ok, name, detail=""):
        if ok:
            self.passed += 1
            print("ok - %s" % name)
            if self.verbose and detail:
                print("    " + detail.replace("\n", "\n    "))
        else:
            self.failed += 1
            print("not ok - %s" % name)
            if detail:
                print("    " + detail.replace("\n", "\n    "))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="show e2e_queries.py output of passing checks too")
    args = ap.parse_args()

    res = Results(args.verbose)
    work = tempfile.mkdtemp(prefix="ai-usage-e2e-")
    www = os.path.join(work, "www")
    os.makedirs(www)
    metrics = os.path.join(www, "metrics")
    with open(os.path.join(FIXTURES, "sample.prom")) as fh:
        sample = fh.read()
    rollup_ts = int(time.time()) - 600
    write_atomic(metrics, render_metrics(sample, 1.0, rollup_ts))

    procs = []
    stop = threading.Event()
    grower = None
    try:
        # -- the "exporter": a static file server -------------------------------
        mport = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", www,
             str(mport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: http_get("http://127.0.0.1:%d/metrics" % mport)[0] == 200, 15,
                 "the sample server")

        # -- Prometheus with the bundled configuration ---------------------------
        with open(os.path.join(PROM_DIR, "prometheus.yml")) as fh:
            cfg = fh.read()
        replacements = [
            ("- 127.0.0.1:9464", "- 127.0.0.1:%d" % mport),
            ("scrape_interval: 15s", "scrape_interval: 1s"),
            ("scrape_timeout: 10s", "scrape_timeout: 1s"),
            ("evaluation_interval: 15s", "evaluation_interval: 1s"),
            ("- rules/", "- %s/rules/" % PROM_DIR),
        ]
        for old, new in replacements:
            if old not in cfg:
                raise RuntimeError("prometheus.yml no longer contains %r" % old)
            cfg = cfg.replace(old, new)
        cfg_path = os.path.join(work, "prometheus.yml")
        with open(cfg_path, "w") as fh:
            fh.write(cfg)
        pport = free_port(29090)
        url = "http://127.0.0.1:%d" % pport
        log = open(os.path.join(work, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            [args.prometheus, "--config.file=" + cfg_path,
             "--storage.tsdb.path=" + os.path.join(work, "data"),
             "--web.listen-address=127.0.0.1:%d" % pport, "--log.level=warn"],
            stdout=log, stderr=log))
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 60, "Prometheus to be ready")
        print("# Prometheus on %s scraping the sample on 127.0.0.1:%d (work dir %s)"
              % (url, mport, work))

        def scrapes():
            q = urllib.parse.quote('count_over_time(up{job="usage-analytics"}[1m])')
            _, body = http_get(url + "/api/v1/query?query=" + q)
            m = re.search(r'"value":\[[\d.]+,"(\d+)"\]', body)
            return int(m.group(1)) if m else 0

        wait_for(lambda: scrapes() >= 4, 60, "four scrapes")
        up_q = urllib.parse.quote('up{job="usage-analytics"}')
        res.check('"value"' in http_get(url + "/api/v1/query?query=" + up_q)[1]
                  and '"1"]' in http_get(url + "/api/v1/query?query=" + up_q)[1],
                  "bundled prometheus.yml scrapes job usage-analytics (up == 1)")

        # -- 1. flat counters -------------------------------------------------------
        rc, out = run_e2e(url, "--wait", "20")
        res.check(rc == 0, "e2e_queries.py passes with flat counters", out)

        # -- 2. negative -------------------------------------------------------------
        rc, out = run_e2e(url, "--dashboards",
                          os.path.join(FIXTURES, "e2e-broken-dashboard.json"),
                          "--rules", os.path.join(FIXTURES, "e2e-broken.rules.yml"),
                          "--no-loaded-rules")
        expected = ["target B", "target C", "broken:many_to_many"]
        unexpected = ["target A", "QuietButValid"]
        failed_part = out.split("FAILED:", 1)[-1] if "FAILED:" in out else ""
        res.check(rc == 1 and all(e in failed_part for e in expected)
                  and not any(u in failed_part for u in unexpected),
                  "e2e_queries.py reports exactly the broken queries of the negative fixture",
                  out)

        # -- 3. growing counters ------------------------------------------------------
        t0 = time.time()

        def grow():
            while not stop.wait(1.0):
                factor = 1.0 + 0.02 * (time.time() - t0)
                write_atomic(metrics, render_metrics(sample, factor, int(time.time()) - 600))

        grower = threading.Thread(target=grow, daemon=True)
        grower.start()
        time.sleep(8)
        rc, out = run_e2e(url, "--wait", "20", "--fail-on-nan", "-v")
        res.check(rc == 0, "e2e_queries.py --fail-on-nan passes with growing counters", out)
    except Exception as exc:  # report, then clean up
        res.check(False, "local e2e setup", repr(exc))
    finally:
        stop.set()
        if grower:
            grower.join(timeout=5)
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if args.keep:
            print("# kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("# local e2e: %d passed, %d failed" % (res.passed, res.failed))
    return 0 if res.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
