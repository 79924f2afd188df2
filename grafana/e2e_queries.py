#!/usr/bin/env python3
"""Run every dashboard query and every rule expression against a live Prometheus.

    python3 grafana/e2e_queries.py http://127.0.0.1:9090
    PROM_URL=http://127.0.0.1:9090 python3 grafana/e2e_queries.py --wait 60

What is checked (Python stdlib only):
  * each query variable (label_values(...)) of each dashboard has at least one value;
  * each panel target, with the dashboard variables set to their All value
    (allValue, ".*") and $__rate_interval / $__interval / $__range replaced by
    concrete durations, is accepted by /api/v1/query AND returns data;
  * each recording and alerting rule expression in grafana/prometheus/rules/ is
    accepted (an empty result is fine: most alerts are quiet);
  * if that Prometheus loaded rules, none of them reports health "err".
A result made only of NaN/Inf counts as data (flat counters give 0/0); with
--fail-on-nan such a panel query fails too.

Exit status 0 when everything passed, 1 when anything failed (every failure is
listed), 2 on bad usage or when Prometheus cannot be reached.
"""
import argparse
import glob
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DASHBOARDS = os.path.join(HERE, "dashboards", "*.json")
DEFAULT_RULES = os.path.join(HERE, "prometheus", "rules", "*.yml")

# --------------------------------------------------------------------------
# Durations and variable substitution (shared with lint_dashboards.py)
_DUR_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def duration_seconds(text):
    """Prometheus-style duration ("1h", "5m", "90s", "1h30m") -> seconds (float)."""
    m = _DUR_RE.match(text.strip())
    if not m or not any(m.groups()):
        raise ValueError("not a duration: %r" % text)
    d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s + ms / 1000.0


BUILTINS = ("__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
            "__range_ms", "__auto", "__from", "__to")

_VAR_RE = re.compile(r"\$\{(\w+)(?::[\w-]+)?\}|\$(\w+)|\[\[(\w+)(?::[\w-]+)?\]\]")


def variable_values(dashboard):
    """Dashboard variable name -> the value a query sees when 'All' is selected."""
    values = {}
    for var in dashboard.get("templating", {}).get("list", []):
        name = var.get("name")
        if not name:
            continue
        if var.get("type") == "datasource":
            values[name] = (var.get("current") or {}).get("value") or ""
        elif var.get("includeAll"):
            values[name] = var.get("allValue") or ".*"
        else:
            current = (var.get("current") or {}).get("value")
            if isinstance(current, list):
                current = "|".join(current)
            values[name] = current or ".*"
    return values


def substitute(expr, variables, rate_interval="1m", interval="15s", rng="1h"):
    """Replace Grafana variables in a PromQL expression.

    Returns (text, unknown) where unknown lists variable names that are neither
    dashboard variables nor Grafana built-ins.
    """
    rng_s = duration_seconds(rng)
    builtins = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__interval_ms": str(int(duration_seconds(interval) * 1000)),
        "__range": rng,
        "__range_s": str(int(rng_s)),
        "__range_ms": str(int(rng_s * 1000)),
        "__auto": interval,
    }
    unknown = []

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return variables[name]
        unknown.append(name)
        return m.group(0)

    return _VAR_RE.sub(repl, expr), unknown


def variable_names(expr):
    return [m.group(1) or m.group(2) or m.group(3) for m in _VAR_RE.finditer(expr)]


def iter_panels(dashboard):
    """Every panel, rows' nested panels included (collapsed rows keep them inside)."""
    for panel in dashboard.get("panels", []):
        yield panel
        for inner in panel.get("panels", []) or []:
            yield inner


def panel_queries(dashboard):
    """(panel, target) for every target of every non-row panel."""
    for panel in iter_panels(dashboard):
        if panel.get("type") == "row":
            continue
        for tgt in panel.get("targets", []) or []:
            yield panel, tgt


# --------------------------------------------------------------------------
# A deliberately small reader for Prometheus rule files: it finds each
# `- record:` / `- alert:` item and its `expr:` (plain, quoted or block scalar).
# grafana/test.sh checks that it finds as many rules as `promtool check rules`.
_RULE_RE = re.compile(r"^\s*-\s+(record|alert):\s*(.+?)\s*$")
_EXPR_RE = re.compile(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$")


def _scalar(text):
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return json.loads(text)
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return re.sub(r"\s+#.*$", "", text)


def parse_rule_file(path):
    """-> list of dicts {kind, name, expr, file, line}."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    rules = []
    current = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _RULE_RE.match(line)
        if m:
            current = {"kind": m.group(1), "name": _scalar(m.group(2)), "expr": None,
                       "file": path, "line": i + 1}
            rules.append(current)
        m = _EXPR_RE.match(line)
        if m and current is not None and current["expr"] is None:
            indent, value = len(m.group(1)), m.group(2)
            if value[:1] in ("|", ">"):
                folded = value.startswith(">")
                body = []
                i += 1
                while i < len(lines):
                    nxt = lines[i]
                    if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                        break
                    body.append(nxt)
                    i += 1
                strip = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
                body = [b[strip:] for b in body]
                current["expr"] = (" " if folded else "\n").join(body).strip()
                continue
            current["expr"] = _scalar(value)
        i += 1
    return rules


# --------------------------------------------------------------------------
# Prometheus HTTP API
class Prom:
    def __init__(self, base, timeout):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def get(self, path, params=None):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:  # 400/422 carry a JSON error body
            body = exc.read()
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "error": "HTTP %s: %s" % (exc.code, body[:200])}
        return json.loads(body)

    def query(self, expr):
        return self.get("/api/v1/query", {"query": expr, "time": "%.3f" % time.time()})


def classify(resp):
    """-> ('error', message) | ('empty', '') | ('nan', summary) | ('ok', summary)."""
    if resp.get("status") != "success":
        return "error", "%s: %s" % (resp.get("errorType", "error"), resp.get("error", resp))
    data = resp.get("data", {})
    rtype, result = data.get("resultType"), data.get("result")
    if rtype in ("scalar", "string"):
        values = [result[1]]
    else:
        if not result:
            return "empty", ""
        values = [s["value"][1] for s in result]
    finite = [v for v in values if _finite(v)]
    summary = "%d series" % len(values) if rtype not in ("scalar", "string") else rtype
    if not finite:
        return "nan", summary + ", all NaN/Inf"
    return "ok", summary


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------
def collect_checks(dashboard_files, rule_files, args):
    """-> list of check dicts: {kind, where, expr, allow_empty, label/match for variables}."""
    checks, problems = [], []
    for path in dashboard_files:
        try:
            with open(path, encoding="utf-8") as fh:
                dash = json.load(fh)
        except (OSError, ValueError) as exc:
            problems.append("%s: cannot load dashboard: %s" % (path, exc))
            continue
        dname = os.path.basename(path)
        values = variable_values(dash)
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            query = var.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            query = query or var.get("definition", "")
            text, unknown = substitute(query, values, args.rate_interval, args.interval,
                                       args.range)
            m = re.match(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", text, re.S)
            where = "%s: variable $%s" % (dname, var.get("name"))
            if unknown:
                problems.append("%s: unknown variables %s" % (where, unknown))
            elif not m:
                problems.append("%s: unsupported variable query %r" % (where, query))
            else:
                checks.append({"kind": "variable", "where": where, "expr": text,
                               "label": m.group(2), "match": (m.group(1) or "").strip()})
        for panel, tgt in panel_queries(dash):
            expr = (tgt.get("expr") or "").strip()
            where = "%s: panel %r target %s" % (dname, panel.get("title"), tgt.get("refId"))
            if not expr:
                problems.append("%s: empty expr" % where)
                continue
            text, unknown = substitute(expr, values, args.rate_interval, args.interval,
                                       args.range)
            if unknown:
                problems.append("%s: unknown variables %s" % (where, unknown))
                continue
            checks.append({"kind": "panel", "where": where, "expr": text})
    for path in rule_files:
        try:
            rules = parse_rule_file(path)
        except OSError as exc:
            problems.append("%s: cannot read: %s" % (path, exc))
            continue
        if not rules:
            problems.append("%s: no rules found" % path)
        for rule in rules:
            where = "%s:%d: %s %s" % (os.path.basename(path), rule["line"], rule["kind"],
                                       rule["name"])
            if not rule["expr"]:
                problems.append("%s: no expr found" % where)
                continue
            checks.append({"kind": rule["kind"], "where": where, "expr": rule["expr"]})
    return checks, problems


def run_check(prom, check, fail_on_nan):
    """-> (state, detail) where state is 'pass', 'fail' or 'retry' (no data yet)."""
    if check["kind"] == "variable":
        params = {}
        if check["match"]:
            params["match[]"] = check["match"]
        resp = prom.get("/api/v1/label/%s/values" % check["label"], params)
        if resp.get("status") != "success":
            return "fail", "error: %s" % resp.get("error", resp)
        if not resp.get("data"):
            return "retry", "no values"
        return "pass", "%d values" % len(resp["data"])
    resp = prom.query(check["expr"])
    state, detail = classify(resp)
    if state == "error":
        return "fail", detail
    if check["kind"] in ("record", "alert"):
        return "pass", detail or "empty (fine for a rule)"
    if state == "empty":
        return "retry", "no data"
    if state == "nan" and fail_on_nan:
        return "retry", detail
    return "pass", detail


def check_loaded_rules(prom):
    """Rule health as reported by Prometheus itself -> (notes, failures)."""
    resp = prom.get("/api/v1/rules")
    if resp.get("status") != "success":
        return [], ["/api/v1/rules: %s" % resp.get("error", resp)]
    groups = resp.get("data", {}).get("groups", [])
    if not groups:
        return ["Prometheus has no rules loaded (only the expressions were evaluated)"], []
    failures, count = [], 0
    for group in groups:
        for rule in group.get("rules", []):
            count += 1
            if rule.get("health") == "err":
                failures.append("loaded rule %s/%s: health err: %s"
                                % (group.get("name"), rule.get("name"), rule.get("lastError")))
    return ["Prometheus reports %d loaded rules in %d groups" % (count, len(groups))], failures


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Run every dashboard query and rule expression against Prometheus.")
    ap.add_argument("prom_url", nargs="?", default=os.environ.get("PROM_URL"),
                    help="Prometheus base URL (default: $PROM_URL)")
    ap.add_argument("--dashboards", nargs="+", default=None,
                    help="dashboard JSON files (default: grafana/dashboards/*.json)")
    ap.add_argument("--rules", nargs="*", default=None,
                    help="rule files (default: grafana/prometheus/rules/*.yml); "
                         "pass --rules with no file to skip them")
    ap.add_argument("--rate-interval", default="1m", help="value of $__rate_interval")
    ap.add_argument("--interval", default="15s", help="value of $__interval")
    ap.add_argument("--range", default="1h", help="value of $__range")
    ap.add_argument("--wait", type=float, default=0.0,
                    help="keep retrying queries without data for up to this many seconds")
    ap.add_argument("--fail-on-nan", action="store_true",
                    help="a panel query whose values are all NaN/Inf fails")
    ap.add_argument("--timeout", type=float, default=15.0, help="HTTP timeout, seconds")
    ap.add_argument("--no-loaded-rules", action="store_true",
                    help="do not inspect /api/v1/rules")
    ap.add_argument("--list-rules", action="store_true",
                    help="print the rules found in the rule files and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every query")
    args = ap.parse_args(argv)

    dashboard_files = args.dashboards or sorted(glob.glob(DEFAULT_DASHBOARDS))
    rule_files = sorted(glob.glob(DEFAULT_RULES)) if args.rules is None else args.rules

    if args.list_rules:
        total = 0
        for path in rule_files:
            for rule in parse_rule_file(path):
                total += 1
                print("%s\t%s\t%s" % (rule["kind"], rule["name"],
                                      (rule["expr"] or "").replace("\n", " ")))
        print("%d rules" % total)
        return 0

    if not args.prom_url:
        ap.error("give the Prometheus base URL as an argument or in PROM_URL")
    try:
        for d in (args.rate_interval, args.interval, args.range):
            duration_seconds(d)
    except ValueError as exc:
        ap.error(str(exc))

    prom = Prom(args.prom_url, args.timeout)
    try:
        info = prom.get("/api/v1/status/buildinfo")
        version = info.get("data", {}).get("version", "?")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print("cannot reach Prometheus at %s: %s" % (args.prom_url, exc), file=sys.stderr)
        return 2
    print("Prometheus %s at %s; $__rate_interval=%s $__interval=%s $__range=%s"
          % (version, args.prom_url, args.rate_interval, args.interval, args.range))

    checks, problems = collect_checks(dashboard_files, rule_files, args)
    results = {}
    deadline = time.time() + args.wait
    pending = list(range(len(checks)))
    while True:
        still = []
        for idx in pending:
            try:
                state, detail = run_check(prom, checks[idx], args.fail_on_nan)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                state, detail = "fail", "request failed: %s" % exc
            results[idx] = (state, detail)
            if state == "retry":
                still.append(idx)
        pending = still
        if not pending or time.time() >= deadline:
            break
        time.sleep(min(5.0, max(0.5, deadline - time.time())))

    failures = list(problems)
    counts = {}
    nan_panels = 0
    for idx, check in enumerate(checks):
        state, detail = results[idx]
        counts[check["kind"]] = counts.get(check["kind"], 0) + 1
        if state != "pass":
            failures.append("%s: %s\n      %s" % (check["where"], detail, check["expr"]
                                                 .replace("\n", " ")))
        elif "NaN" in detail:
            nan_panels += 1
        if args.verbose:
            print("  [%s] %s: %s" % ("ok" if state == "pass" else "FAIL", check["where"],
                                     detail))

    if not args.no_loaded_rules:
        notes, rule_failures = check_loaded_rules(prom)
        for note in notes:
            print(note)
        failures.extend(rule_failures)

    print("checked %s" % ", ".join("%d %s queries" % (n, k) for k, n in sorted(counts.items())))
    if nan_panels:
        print("note: %d panel queries returned only NaN/Inf (e.g. 0/0 while counters are flat)"
              % nan_panels)
    if failures:
        print("FAILED: %d problem(s)" % len(failures))
        for failure in failures:
            print("  - " + failure)
        return 1
    print("OK: every dashboard query returned data and every rule expression evaluated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
