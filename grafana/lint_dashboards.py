#!/usr/bin/env python3
"""Lint Grafana dashboard JSON files of pg_usage_analytics (Python stdlib only).

    python3 grafana/lint_dashboards.py                     # grafana/dashboards/*.json
    python3 grafana/lint_dashboards.py --promtool promtool # also syntax-check PromQL
    python3 grafana/lint_dashboards.py some/file.json ...

Every problem is printed as  FILE: [CODE] message  and the exit status is 1 when
there is any. Codes:
  E-JSON      file is not valid JSON (or not an object)
  E-SCHEMA    schemaVersion missing / not an integer / too old (< 36)
  E-UID       uid missing, malformed, not the fixed one for a known file, or duplicated
  E-ID        dashboard id not null (provisioned dashboards must not carry database ids)
  E-REFRESH   refresh missing or not a duration
  E-TIME      time range missing
  E-DSVAR     no $datasource variable of type datasource for prometheus
  E-VAR       provider/framework/agent variable missing or not multi/includeAll/allValue ".*"
  E-PANEL     panel without title, with unknown type, or duplicated panel id
  E-GRID      gridPos missing, outside the 24-column grid, or overlapping another panel
  E-DS        panel or target datasource does not resolve to ${datasource} or the
              provisioned uid usage-analytics-prometheus
  E-TARGET    panel without targets, target without refId or with an empty expr
  E-DESC      panel without description
  E-UNIT      numeric panel without fieldConfig.defaults.unit
  E-FILTER    a usage metric queried without the =~ matchers of the dashboard filters,
              or a filter variable used with =, != or !~, or on the wrong label
  E-VARREF    a query uses a variable that the dashboard does not define
  E-COLOR     a fixed colour outside the maritime palette
  E-PROMQL    promtool rejects the query (only with --promtool)
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep grafana/ free of __pycache__
sys.path.insert(0, HERE)
from e2e_queries import (BUILTINS, iter_panels, substitute, variable_names,  # noqa: E402
                         variable_values)

EXPECTED_UIDS = {
    "usage-overview.json": "ai-usage-overview",
    "agent-performance.json": "ai-usage-agents",
}
PROVISIONED_DS_UID = "usage-analytics-prometheus"
DS_REFS = {"${datasource}", "$datasource", "[[datasource]]", PROVISIONED_DS_UID}

PANEL_TYPES = {"stat", "timeseries", "barchart", "piechart", "table", "bargauge", "gauge",
               "text", "row", "heatmap", "histogram", "state-timeline", "status-history"}
NUMERIC_TYPES = {"stat", "timeseries", "barchart", "piechart", "table", "bargauge", "gauge",
                 "heatmap", "histogram"}
NO_QUERY_TYPES = {"row", "text"}

# Filter variable -> label it filters on.
FILTER_VARS = {"provider": "provider", "framework": "framework", "agent": "agent_id"}
# Usage metric -> filter variables its queries must carry (the labels it has).
METRIC_FILTERS = {
    "ai_usage_requests_total": ("provider", "framework", "agent"),
    "ai_usage_tokens_total": ("provider", "framework", "agent"),
    "ai_usage_cost_usd_total": ("provider", "framework", "agent"),
    "ai_usage_response_time_seconds_bucket": ("provider", "framework"),
    "ai_usage_response_time_seconds_sum": ("provider", "framework"),
    "ai_usage_response_time_seconds_count": ("provider", "framework"),
    "ai_usage_unpriced_requests_total": ("provider",),
}
PALETTE = {"#1F3A5F", "#2A9D8F", "#2E8B57", "#E9C46A", "#E76F51",
           "#457B9D", "#8AB6D6", "#264653", "#A8A29E"}

_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# metric name followed by an optional {...} selector; PromQL keywords are filtered below.
_SELECTOR = re.compile(r"(?<![\w:\"'])(ai_usage_[a-z_]+)\b\s*(\{[^}]*\})?")
_MATCHER_WITH_VAR = re.compile(
    r"([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*\"([^\"]*\$\{?\w+\}?[^\"]*)\"")


class Report:
    def __init__(self):
        self.problems = []

    def add(self, path, code, msg):
        self.problems.append((path, code, msg))


def ds_ok(ds):
    if isinstance(ds, str):
        return ds in DS_REFS
    if isinstance(ds, dict):
        return ds.get("uid") in DS_REFS and ds.get("type", "prometheus") == "prometheus"
    return False


def check_filters(expr, where, path, rep):
    for m in _SELECTOR.finditer(expr):
        metric, selector = m.group(1), m.group(2) or ""
        required = METRIC_FILTERS.get(metric)
        if not required:
            continue
        for var in required:
            label = FILTER_VARS[var]
            pat = r'\b%s\s*=~\s*"\$\{?%s\}?"' % (re.escape(label), re.escape(var))
            if not re.search(pat, selector):
                rep.add(path, "E-FILTER", "%s: %s lacks %s=~\"$%s\"" % (where, metric, label, var))
    for m in _MATCHER_WITH_VAR.finditer(expr):
        label, op, value = m.groups()
        for var in variable_names(value):
            if var not in FILTER_VARS:
                continue
            if op != "=~":
                rep.add(path, "E-FILTER", "%s: $%s used with %s (multi-value and All need =~)"
                        % (where, var, op))
            if label != FILTER_VARS[var]:
                rep.add(path, "E-FILTER", "%s: $%s used on label %s instead of %s"
                        % (where, var, label, FILTER_VARS[var]))


def walk_colors(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("fixedColor", "color") and isinstance(value, str) and value.startswith("#"):
                found.append(value)
            else:
                walk_colors(value, found)
    elif isinstance(node, list):
        for item in node:
            walk_colors(item, found)


def lint_dashboard(path, dash, rep, uids, exprs):
    name = os.path.basename(path)
    sv = dash.get("schemaVersion")
    if not isinstance(sv, int) or isinstance(sv, bool):
        rep.add(path, "E-SCHEMA", "schemaVersion missing or not an integer")
    elif sv < 36:
        rep.add(path, "E-SCHEMA", "schemaVersion %d is older than 36" % sv)

    uid = dash.get("uid")
    if not isinstance(uid, str) or not _UID.match(uid):
        rep.add(path, "E-UID", "uid missing or not 1-40 characters of [A-Za-z0-9_-]: %r" % uid)
    else:
        if name in EXPECTED_UIDS and uid != EXPECTED_UIDS[name]:
            rep.add(path, "E-UID", "uid %r, expected the fixed uid %r" % (uid, EXPECTED_UIDS[name]))
        if uid in uids:
            rep.add(path, "E-UID", "uid %r already used by %s" % (uid, uids[uid]))
        uids.setdefault(uid, path)
    if dash.get("id") is not None:
        rep.add(path, "E-ID", "id must be null, not %r" % dash.get("id"))

    refresh = dash.get("refresh")
    if not isinstance(refresh, str) or not _DURATION.match(refresh):
        rep.add(path, "E-REFRESH", "refresh must be set to a duration such as \"30s\": %r"
                % refresh)
    t = dash.get("time")
    if not isinstance(t, dict) or not t.get("from") or not t.get("to"):
        rep.add(path, "E-TIME", "time range (time.from/time.to) missing")

    variables = dash.get("templating", {}).get("list", [])
    if not isinstance(variables, list):
        variables = []
    by_name = {v.get("name"): v for v in variables if isinstance(v, dict)}
    dsv = by_name.get("datasource")
    if not dsv or dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
        rep.add(path, "E-DSVAR", "needs a variable named datasource, type datasource, "
                                 "query prometheus")
    for var, label in FILTER_VARS.items():
        v = by_name.get(var)
        if not v:
            rep.add(path, "E-VAR", "variable $%s missing" % var)
            continue
        if v.get("type") != "query":
            rep.add(path, "E-VAR", "$%s must be a query variable" % var)
        if v.get("allValue") != ".*":
            rep.add(path, "E-VAR", "$%s allValue must be \".*\", not %r" % (var, v.get("allValue")))
        if v.get("includeAll") is not True:
            rep.add(path, "E-VAR", "$%s must have includeAll" % var)
        if v.get("multi") is not True:
            rep.add(path, "E-VAR", "$%s must be multi-value" % var)
        if not ds_ok(v.get("datasource")):
            rep.add(path, "E-DS", "$%s datasource does not resolve: %r" % (var, v.get("datasource")))
        query = v.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        if not re.match(r"^\s*label_values\(\s*ai_usage_requests_total\b.*,\s*%s\s*\)\s*$"
                        % re.escape(label), query, re.S):
            rep.add(path, "E-VAR", "$%s must be label_values(ai_usage_requests_total..., %s), "
                                   "got %r" % (var, label, query))
        for m in _MATCHER_WITH_VAR.finditer(query):
            if m.group(2) != "=~":
                rep.add(path, "E-FILTER", "$%s query uses %s with a variable" % (var, m.group(2)))

    values = variable_values(dash)
    known = set(by_name) | set(BUILTINS)
    seen_ids = {}
    boxes = []
    for panel in iter_panels(dash):
        ptype = panel.get("type")
        title = panel.get("title") or ""
        where = "panel %r" % (title or panel.get("id"))
        if not title:
            rep.add(path, "E-PANEL", "panel id %r has no title" % panel.get("id"))
        if ptype not in PANEL_TYPES:
            rep.add(path, "E-PANEL", "%s: unknown panel type %r" % (where, ptype))
        pid = panel.get("id")
        if not isinstance(pid, int) or pid in seen_ids:
            rep.add(path, "E-PANEL", "%s: panel id %r missing or duplicated" % (where, pid))
        seen_ids[pid] = True

        grid = panel.get("gridPos")
        if not isinstance(grid, dict) or not all(isinstance(grid.get(k), int)
                                                  for k in ("x", "y", "w", "h")):
            rep.add(path, "E-GRID", "%s: gridPos missing or incomplete" % where)
        else:
            x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > 24:
                rep.add(path, "E-GRID", "%s: gridPos %r outside the 24-column grid" % (where, grid))
            for other, (ox, oy, ow, oh) in boxes:
                if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                    rep.add(path, "E-GRID", "%s overlaps %s" % (where, other))
            boxes.append((where, (x, y, w, h)))

        if ptype in NO_QUERY_TYPES:
            continue
        if not ds_ok(panel.get("datasource")):
            rep.add(path, "E-DS", "%s: datasource %r does not resolve to ${datasource} or %s"
                    % (where, panel.get("datasource"), PROVISIONED_DS_UID))
        desc = panel.get("description")
        if not isinstance(desc, str) or not desc.strip():
            rep.add(path, "E-DESC", "%s: description missing" % where)
        if ptype in NUMERIC_TYPES:
            unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
            if not isinstance(unit, str) or not unit.strip():
                rep.add(path, "E-UNIT", "%s: fieldConfig.defaults.unit missing" % where)
        targets = panel.get("targets")
        if not isinstance(targets, list) or not targets:
            rep.add(path, "E-TARGET", "%s: no targets" % where)
            continue
        refids = set()
        for tgt in targets:
            ref = tgt.get("refId")
            twhere = "%s target %s" % (where, ref)
            if not ref or ref in refids:
                rep.add(path, "E-TARGET", "%s: refId missing or duplicated" % twhere)
            refids.add(ref)
            if "datasource" in tgt and not ds_ok(tgt.get("datasource")):
                rep.add(path, "E-DS", "%s: datasource %r does not resolve"
                        % (twhere, tgt.get("datasource")))
            expr = tgt.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                rep.add(path, "E-TARGET", "%s: empty expr" % twhere)
                continue
            unknown = [v for v in variable_names(expr) if v not in known]
            if unknown:
                rep.add(path, "E-VARREF", "%s: undefined variables %s" % (twhere, unknown))
                continue
            check_filters(expr, twhere, path, rep)
            text, _ = substitute(expr, values)
            exprs.append((path, twhere, text))

    colors = []
    walk_colors(dash.get("panels", []), colors)
    for color in sorted(set(colors)):
        if color.upper() not in PALETTE:
            rep.add(path, "E-COLOR", "colour %s is not in the maritime palette" % color)


def promql_check(promtool, exprs, rep):
    """Syntax-check expressions with `promtool check rules` (JSON is valid YAML)."""
    def run(items):
        doc = {"groups": [{"name": "lint", "rules": [
            {"record": "lint_expr_%d" % i, "expr": text} for i, (_, _, text) in enumerate(items)]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
            json.dump(doc, fh)
            name = fh.name
        try:
            proc = subprocess.run([promtool, "check", "rules", name], capture_output=True,
                                  text=True)
        finally:
            os.unlink(name)
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()

    if not exprs:
        return
    ok, _ = run(exprs)
    if ok:
        return
    for item in exprs:  # find the culprits one by one
        ok, out = run([item])
        if not ok:
            lines = [l.strip() for l in out.splitlines() if "lint_expr" in l or "parse" in l]
            rep.add(item[0], "E-PROMQL", "%s: %s" % (item[1], " ".join(lines) or out))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Lint pg_usage_analytics Grafana dashboards.")
    ap.add_argument("files", nargs="*", help="dashboard JSON files "
                                             "(default: grafana/dashboards/*.json)")
    ap.add_argument("--promtool", metavar="PATH",
                    help="syntax-check every query with this promtool binary")
    args = ap.parse_args(argv)
    files = args.files or sorted(glob.glob(os.path.join(HERE, "dashboards", "*.json")))
    if not files:
        print("no dashboard files found", file=sys.stderr)
        return 1
    rep = Report()
    uids, exprs = {}, []
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                dash = json.load(fh)
        except ValueError as exc:
            rep.add(path, "E-JSON", "invalid JSON: %s" % exc)
            continue
        except OSError as exc:
            rep.add(path, "E-JSON", "cannot read: %s" % exc)
            continue
        if not isinstance(dash, dict):
            rep.add(path, "E-JSON", "top level is not a JSON object")
            continue
        lint_dashboard(path, dash, rep, uids, exprs)
    if args.promtool:
        promql_check(args.promtool, exprs, rep)
    for path, code, msg in rep.problems:
        print("%s: [%s] %s" % (os.path.relpath(path), code, msg))
    panels = len(exprs)
    if rep.problems:
        print("lint: %d problem(s) in %d file(s)" % (len(rep.problems), len(files)))
        return 1
    print("lint: %d dashboard(s), %d queries, no problems%s"
          % (len(files), panels, " (PromQL checked by promtool)" if args.promtool else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
