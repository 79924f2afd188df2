#!/usr/bin/env bash
# Tests of the Grafana + Prometheus bundle (everything under grafana/).
#
#   grafana/test.sh                 # all checks, including a throw-away Prometheus
#   SKIP_LOCAL_E2E=1 grafana/test.sh  # without starting Prometheus
#
# Needs promtool and prometheus (Debian package `prometheus`) and python3.
# Ends with a line "N passed, M failed"; exits non-zero when anything failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PROMTOOL="${PROMTOOL:-promtool}"
PYTHON="${PYTHON:-python3}"

passed=0
failed=0
skipped=0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# run NAME CMD...: the command must succeed.
run() {
    local name="$1"; shift
    if "$@" >"$TMP/out" 2>&1; then
        passed=$((passed + 1)); echo "ok - $name"
    else
        failed=$((failed + 1)); echo "not ok - $name"; sed 's/^/    /' "$TMP/out"
    fi
}

# expect_fail NAME PATTERNS CMD...: the command must fail and its output must
# contain every space-separated pattern of PATTERNS.
expect_fail() {
    local name="$1" patterns="$2"; shift 2
    local missing=""
    if "$@" >"$TMP/out" 2>&1; then
        failed=$((failed + 1)); echo "not ok - $name (command unexpectedly succeeded)"
        sed 's/^/    /' "$TMP/out"; return 0
    fi
    for p in $patterns; do
        grep -qF -- "$p" "$TMP/out" || missing="$missing $p"
    done
    if [ -z "$missing" ]; then
        passed=$((passed + 1)); echo "ok - $name"
    else
        failed=$((failed + 1)); echo "not ok - $name (missing:$missing)"
        sed 's/^/    /' "$TMP/out"
    fi
}

if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    echo "promtool not found (apt-get install prometheus)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# --- Prometheus configuration and rules ------------------------------------------
run "promtool check config prometheus/prometheus.yml" \
    "$PROMTOOL" check config prometheus/prometheus.yml
run "promtool check rules prometheus/rules/*.yml" \
    "$PROMTOOL" check rules prometheus/rules/*.yml
run "promtool test rules prometheus/tests/*.yml (every alert fires and stays quiet)" \
    "$PROMTOOL" test rules prometheus/tests/*.yml

# The unit tests must notice a changed threshold or a weakened alert.
mutant() {  # mutant FILE OLD NEW: copy prometheus/, apply one edit, run the tests
    rm -rf "$TMP/mut" && cp -r prometheus "$TMP/mut"
    "$PYTHON" - "$TMP/mut/rules/$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
assert old in text, "mutation target not found: %r" % old
open(path, "w").write(text.replace(old, new, 1))
EOF
    (cd "$TMP/mut" && "$PROMTOOL" test rules tests/*.yml)
}
expect_fail "rule tests catch a changed cost threshold (50 -> 500 USD/h)" "FAILED" \
    mutant recording.rules.yml "expr: vector(50)" "expr: vector(500)"
expect_fail "rule tests catch AIUsageExporterDown losing its absent() branch" "FAILED" \
    mutant alerts.rules.yml 'absent(up{job="usage-analytics"})' 'absent(up{job="usage-analytics"}) unless on() vector(1)'

expect_fail "rule tests catch cost per priced request counting unpriced requests as priced" "FAILED" \
    mutant recording.rules.yml \
    "sum by (provider, model) (rate(ai_usage_unpriced_requests_total[5m]))" \
    "0 * sum by (provider, model) (rate(ai_usage_unpriced_requests_total[5m]))"
expect_fail "rule tests catch a changed budget warning threshold (0.8 -> 0.9)" "FAILED" \
    mutant budgets.rules.yml "expr: vector(0.8)" "expr: vector(0.9)"

rules_loaded() {  # prometheus.yml must load every rules/*.yml (and nothing else)
    "$PYTHON" - <<'EOF'
import glob, os, re, sys
cfg = open("prometheus/prometheus.yml").read()
block = re.search(r"(?m)^rule_files:\n((?:[ \t]+- .*\n)+)", cfg)
loaded = sorted(re.findall(r"- (\S+)", block.group(1))) if block else []
present = sorted(os.path.relpath(p, "prometheus") for p in glob.glob("prometheus/rules/*.yml"))
print("rule_files: %s\nrules/*.yml: %s" % (loaded, present))
sys.exit(0 if loaded == present else 1)
EOF
}
run "prometheus.yml rule_files lists every prometheus/rules/*.yml" rules_loaded

promtool_rules="$("$PROMTOOL" check rules prometheus/rules/*.yml 2>&1 \
    | sed -n 's/.*SUCCESS: \([0-9]*\) rules found.*/\1/p' | awk '{n += $1} END {print n + 0}')"
parsed_rules="$("$PYTHON" e2e_queries.py --list-rules | tail -n1 | cut -d' ' -f1)"
run "e2e_queries.py finds the same $promtool_rules rules as promtool" \
    test "$promtool_rules" = "$parsed_rules"

# --- Dashboards ---------------------------------------------------------------------
run "dashboards/*.json are up to date with build_dashboards.py (grafana-foundation-sdk)" \
    "$PYTHON" build_dashboards.py --check
stale_copy() {  # a copy of dashboards/ with one edited expression must be reported
    rm -rf "$TMP/dash" && cp -r dashboards "$TMP/dash"
    sed -i '0,/"expr": "sum(/s//"expr": "max(/' "$TMP/dash/usage-overview.json"
    "$PYTHON" build_dashboards.py --check --dir "$TMP/dash"
}
expect_fail "build_dashboards.py --check reports a hand-edited dashboard JSON" \
    "out-of-date: usage-overview.json" stale_copy
run "lint_dashboards.py accepts dashboards/*.json (PromQL checked by promtool)" \
    "$PYTHON" lint_dashboards.py --promtool "$PROMTOOL"
expect_fail "lint_dashboards.py rejects tests/fixtures/broken-dashboard.json" \
    "E-SCHEMA E-UID E-ID E-REFRESH E-TIME E-DSVAR E-VAR E-PANEL E-GRID E-DS E-TARGET E-DESC E-UNIT E-FILTER E-VARREF E-COLOR E-PROMQL" \
    "$PYTHON" lint_dashboards.py --promtool "$PROMTOOL" dashboards/usage-overview.json tests/fixtures/broken-dashboard.json
expect_fail "lint_dashboards.py rejects tests/fixtures/invalid-json.json" "E-JSON" \
    "$PYTHON" lint_dashboards.py tests/fixtures/invalid-json.json

check_provisioning() {
    "$PYTHON" - <<'EOF'
import json, re, sys
ds = open("provisioning/datasources/prometheus.yaml").read()
db = open("provisioning/dashboards/usage-analytics.yaml").read()
need = [
    (ds, r"(?m)^apiVersion: 1$"), (ds, r"(?m)^\s+type: prometheus$"),
    (ds, r"(?m)^\s+uid: usage-analytics-prometheus$"),
    (ds, r"(?m)^\s+url: http://127\.0\.0\.1:9090$"),
    (db, r"(?m)^apiVersion: 1$"), (db, r"(?m)^\s+type: file$"),
    (db, r"(?m)^\s+path: /var/lib/grafana/dashboards/usage-analytics$"),
    (db, r"(?m)^#.*grafana/dashboards"),
]
bad = [pat for text, pat in need if not re.search(pat, text)]
for name in ("usage-overview.json", "agent-performance.json"):
    dash = json.load(open("dashboards/" + name))
    var = [v for v in dash["templating"]["list"] if v["name"] == "datasource"][0]
    if var["current"].get("value") != "usage-analytics-prometheus":
        bad.append(name + ": $datasource default is not the provisioned uid")
if "\t" in ds + db:
    bad.append("tab characters in YAML")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
}
run "provisioning files point at uid usage-analytics-prometheus and the dashboards path" \
    check_provisioning

# --- Against a real Prometheus -------------------------------------------------------
if [ "${SKIP_LOCAL_E2E:-0}" = "1" ]; then
    skipped=$((skipped + 1)); echo "skip - local e2e (SKIP_LOCAL_E2E=1)"
else
    run "local e2e: Prometheus scraping the exporter golden exposition, e2e_queries.py" \
        "$PYTHON" tests/local_e2e.py
fi

if [ "$skipped" -gt 0 ]; then echo "($skipped skipped)"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
