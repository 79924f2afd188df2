#!/usr/bin/env python3
"""Generate grafana/dashboards/*.json (Grafana dashboard JSON, schemaVersion 39).

The JSON files are the deliverable and are committed; this script is their
source, the way monitoring mixins generate JSON from jsonnet. Python stdlib only.

    python3 grafana/build_dashboards.py           # rewrite the JSON files
    python3 grafana/build_dashboards.py --check   # exit 1 if they are out of date

Edit this file, not the JSON; grafana/test.sh fails when the two disagree.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "dashboards")

# --------------------------------------------------------------------------
# Maritime palette. Navy is used for stat backgrounds (white text on top) and
# never for thin lines, which would vanish on Grafana's dark theme; sand is
# reserved for warnings and coral for errors.
NAVY = "#1F3A5F"
TEAL = "#2A9D8F"
SEA = "#2E8B57"
SAND = "#E9C46A"
CORAL = "#E76F51"
STEEL = "#457B9D"   # steel blue, a lighter navy that stays readable on dark
FOAM = "#8AB6D6"    # sea foam
DEEP = "#264653"    # deep water, for backgrounds
DRIFT = "#A8A29E"   # driftwood grey, for "other"

PROVIDER_COLORS = {"openai": TEAL, "anthropic": STEEL, "google": SEA,
                   "perplexity": FOAM, "other": DRIFT}
FRAMEWORK_COLORS = {"langchain": TEAL, "autogen": STEEL, "hybrid": SEA,
                    "perplexity": FOAM}

DS = {"type": "prometheus", "uid": "${datasource}"}

# Filters. Every usage query carries the label matchers its metric supports;
# the linter enforces this.
F_ALL = 'provider=~"$provider", framework=~"$framework", agent_id=~"$agent"'
F_LAT = 'provider=~"$provider", framework=~"$framework"'
F_PROV = 'provider=~"$provider"'

REQ = "ai_usage_requests_total{%s}" % F_ALL
REQ_ERR = 'ai_usage_requests_total{%s, status="error"}' % F_ALL
REQ_OK = 'ai_usage_requests_total{%s, status="success"}' % F_ALL
COST = "ai_usage_cost_usd_total{%s}" % F_ALL
TOK = "ai_usage_tokens_total{%s}" % F_ALL
BUCKET = "ai_usage_response_time_seconds_bucket{%s}" % F_LAT
UNPRICED = "ai_usage_unpriced_requests_total{%s}" % F_PROV

LATENCY_NOTE = (" The exporter's response-time histogram carries only the provider and "
                "framework labels, so the Agent filter does not apply here: the figure covers "
                "every agent of the selected providers and frameworks.")
RANGE_NOTE = (" Counters are lifetime totals kept in the database; 'In range' is their "
              "increase over the dashboard's time range, 'All time' the lifetime total.")


# --------------------------------------------------------------------------
# Building blocks
class Ids:
    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return self.n


def target(expr, legend="__auto", ref="A", instant=False, fmt="time_series"):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }
    return t


def fixed(color):
    return {"mode": "fixed", "fixedColor": color}


def steps(*pairs):
    """steps(COLOR, (value, COLOR), ...) -> absolute thresholds."""
    out = [{"color": pairs[0], "value": None}]
    for value, color in pairs[1:]:
        out.append({"color": color, "value": value})
    return {"mode": "absolute", "steps": out}


def by_name(name, color=None, **props):
    properties = []
    if color:
        properties.append({"id": "color", "value": fixed(color)})
    for key, value in props.items():
        properties.append({"id": key.replace("__", "."), "value": value})
    return {"matcher": {"id": "byName", "options": name}, "properties": properties}


def color_overrides(mapping):
    return [by_name(name, color) for name, color in mapping.items()]


def base_panel(ids, ptype, title, description, grid, targets, unit, color=None,
               thresholds=None, overrides=None, decimals=None, custom=None,
               mappings=None, minv=None, maxv=None):
    defaults = {
        "color": color or {"mode": "palette-classic"},
        "mappings": mappings or [],
        "thresholds": thresholds or steps(SEA),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    if custom is not None:
        defaults["custom"] = custom
    x, y, w, h = grid
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "id": ids.next(),
        "targets": targets,
        "title": title,
        "type": ptype,
    }


def row(ids, title, y):
    return {
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "id": ids.next(),
        "panels": [],
        "title": title,
        "type": "row",
    }


def stat(ids, title, description, grid, targets, unit, color=None, thresholds=None,
         decimals=None, mappings=None, color_mode="background", text_mode="value_and_name",
         minv=None, maxv=None):
    p = base_panel(ids, "stat", title, description, grid, targets, unit, color=color,
                   thresholds=thresholds, decimals=decimals, mappings=mappings,
                   minv=minv, maxv=maxv)
    p["options"] = {
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "center",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": text_mode,
        "wideLayout": True,
    }
    return p


def ts_custom(stack=False, fill=12, thresholds_style="off"):
    return {
        "axisBorderShow": False,
        "axisCenteredZero": False,
        "axisColorMode": "text",
        "axisLabel": "",
        "axisPlacement": "auto",
        "barAlignment": 0,
        "drawStyle": "line",
        "fillOpacity": 25 if stack else fill,
        "gradientMode": "opacity",
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "insertNulls": False,
        "lineInterpolation": "smooth",
        "lineWidth": 2,
        "pointSize": 4,
        "scaleDistribution": {"type": "linear"},
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": thresholds_style},
    }


def timeseries(ids, title, description, grid, targets, unit, color=None, overrides=None,
               stack=False, decimals=None, thresholds=None, thresholds_style="off",
               axis_label="", minv=0):
    custom = ts_custom(stack=stack, thresholds_style=thresholds_style)
    custom["axisLabel"] = axis_label
    p = base_panel(ids, "timeseries", title, description, grid, targets, unit,
                   color=color, overrides=overrides, decimals=decimals, custom=custom,
                   thresholds=thresholds, minv=minv)
    p["options"] = {
        "legend": {"calcs": ["mean", "max", "lastNotNull"], "displayMode": "table",
                   "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def piechart(ids, title, description, grid, targets, unit, overrides=None):
    p = base_panel(ids, "piechart", title, description, grid, targets, unit,
                   overrides=overrides, decimals=2,
                   custom={"hideFrom": {"legend": False, "tooltip": False, "viz": False}})
    p["options"] = {
        "displayLabels": ["percent"],
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                   "values": ["value", "percent"]},
        "pieType": "donut",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return p


def barchart(ids, title, description, grid, targets, unit, x_field, transformations,
             color=None, overrides=None, stacking="none", decimals=None):
    custom = {
        "axisBorderShow": False,
        "axisCenteredZero": False,
        "axisColorMode": "text",
        "axisLabel": "",
        "axisPlacement": "auto",
        "fillOpacity": 85,
        "gradientMode": "none",
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "lineWidth": 1,
        "scaleDistribution": {"type": "linear"},
        "thresholdsStyle": {"mode": "off"},
    }
    p = base_panel(ids, "barchart", title, description, grid, targets, unit, color=color,
                   overrides=overrides, custom=custom, decimals=decimals, minv=0)
    p["options"] = {
        "barRadius": 0.1,
        "barWidth": 0.8,
        "fullHighlight": False,
        "groupWidth": 0.7,
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "orientation": "horizontal",
        "showValue": "auto",
        "stacking": stacking,
        "tooltip": {"mode": "multi", "sort": "desc"},
        "xField": x_field,
        "xTickLabelRotation": 0,
        "xTickLabelSpacing": 0,
    }
    p["transformations"] = transformations
    return p


def table(ids, title, description, grid, targets, unit, transformations, overrides=None,
          sort_by=None):
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": False,
              "inspect": False}
    p = base_panel(ids, "table", title, description, grid, targets, unit,
                   overrides=overrides, custom=custom, color={"mode": "thresholds"})
    p["options"] = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
        "sortBy": sort_by or [],
    }
    p["transformations"] = transformations
    return p


def organize(exclude=(), rename=None, order=None):
    return {"id": "organize", "options": {
        "excludeByName": {name: True for name in exclude},
        "includeByName": {},
        "indexByName": order or {},
        "renameByName": rename or {},
    }}


# --------------------------------------------------------------------------
# Dashboard shell
def variables():
    def labelvar(name, label, query, description):
        return {
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "datasource": DS,
            "definition": query,
            "description": description,
            "hide": 0,
            "includeAll": True,
            "label": label,
            "multi": True,
            "name": name,
            "options": [],
            "query": {"qryType": 1, "query": query,
                      "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }

    return {"list": [
        {
            "current": {"selected": False, "text": "Prometheus (usage analytics)",
                        "value": "usage-analytics-prometheus"},
            "description": "Prometheus that scrapes usage-analytics-exporter "
                           "(job usage-analytics).",
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "queryValue": "",
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
            "type": "datasource",
        },
        labelvar("provider", "Provider",
                 "label_values(ai_usage_requests_total, provider)",
                 "AI provider (openai, anthropic, perplexity, google, other, ...)."),
        labelvar("framework", "Framework",
                 'label_values(ai_usage_requests_total{provider=~"$provider"}, framework)',
                 "Agent framework (langchain, autogen, perplexity, hybrid, ...)."),
        labelvar("agent", "Agent",
                 'label_values(ai_usage_requests_total{provider=~"$provider", '
                 'framework=~"$framework"}, agent_id)',
                 "agent_id as recorded by track_detailed_usage()."),
    ]}


def dashboard(uid, title, description, panels, other_uid, other_title):
    return {
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{
            "asDropdown": False,
            "icon": "dashboard",
            "includeVars": True,
            "keepTime": True,
            "tags": [],
            "targetBlank": False,
            "title": other_title,
            "tooltip": "",
            "type": "link",
            "url": "/d/%s" % other_uid,
        }],
        "liveNow": False,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["ai-usage", "pg_usage_analytics", "prometheus"],
        "templating": variables(),
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def err_or_zero(by, rng, sel_err=REQ_ERR, sel_all=REQ, fn="increase"):
    """Errors per group; groups with traffic but no error series yield 0, not nothing."""
    by_clause = "sum by (%s) " % by if by else "sum"
    return ("(%s(%s(%s[%s])) or 0 * %s(%s(%s[%s])))"
            % (by_clause, fn, sel_err, rng, by_clause, fn, sel_all, rng))


# --------------------------------------------------------------------------
# Dashboard 1: overview
def overview():
    ids = Ids()
    P = []
    y = 0
    P.append(row(ids, "At a glance", y))
    y += 1
    P.append(stat(
        ids, "Requests",
        "AI requests recorded in usage_analytics.agent_usage_detailed (successful and "
        "failed) for the selected providers, frameworks and agents." + RANGE_NOTE,
        (0, y, 4, 5),
        [target("sum(increase(%s[$__range]))" % REQ, "In range", "A", instant=True),
         target("sum(%s)" % REQ, "All time", "B", instant=True)],
        "short", color=fixed(NAVY), decimals=0))
    P.append(stat(
        ids, "Cost (USD)",
        "Exact cost in US dollars of the priced requests (cost_usd is never rounded). "
        "Requests whose model has no price add nothing here; see 'Unpriced requests'."
        + RANGE_NOTE,
        (4, y, 4, 5),
        [target("sum(increase(%s[$__range]))" % COST, "In range", "A", instant=True),
         target("sum(%s)" % COST, "All time", "B", instant=True)],
        "currencyUSD", color=fixed(TEAL), decimals=2))
    P.append(stat(
        ids, "Tokens",
        "Input plus output tokens of the selected requests." + RANGE_NOTE,
        (8, y, 4, 5),
        [target("sum(increase(%s[$__range]))" % TOK, "In range", "A", instant=True),
         target("sum(%s)" % TOK, "All time", "B", instant=True)],
        "short", color=fixed(SEA), decimals=1))
    ok_rng = "(sum(increase(%s[$__range])) or 0 * sum(increase(%s[$__range])))" % (REQ_OK, REQ)
    ok_all = "(sum(%s) or 0 * sum(%s))" % (REQ_OK, REQ)
    P.append(stat(
        ids, "Success rate",
        "Share of requests recorded with success = true. Sand below 99 %, coral below 95 %. "
        "Empty when no request happened in the range." + RANGE_NOTE,
        (12, y, 4, 5),
        [target("100 * %s / sum(increase(%s[$__range]))" % (ok_rng, REQ), "In range", "A",
                instant=True),
         target("100 * %s / sum(%s)" % (ok_all, REQ), "All time", "B", instant=True)],
        "percent", color={"mode": "thresholds"},
        thresholds=steps(CORAL, (95, SAND), (99, SEA)), decimals=2, minv=0, maxv=100))
    P.append(stat(
        ids, "Active users (24h)",
        "Distinct users with at least one request in the last 24 hours, as computed by the "
        "exporter (gauge ai_usage_active_users{window=\"24h\"}). Not affected by the "
        "provider, framework or agent filters, nor by the time range.",
        (16, y, 4, 5),
        [target('max(ai_usage_active_users{window="24h"})', "Users", "A", instant=True)],
        "short", color=fixed(STEEL), decimals=0, text_mode="value"))
    P.append(stat(
        ids, "Unpriced requests",
        "Requests whose model matched no price in usage_analytics.model_pricing: their "
        "cost_usd is NULL, so cost figures understate the real spend. Filtered by provider "
        "only (the counter has provider and model labels). Sand when non-zero; add the "
        "price with usage_analytics.set_model_price()." + RANGE_NOTE,
        (20, y, 4, 5),
        [target("sum(increase(%s[$__range])) or vector(0)" % UNPRICED, "In range", "A",
                instant=True),
         target("sum(%s) or vector(0)" % UNPRICED, "All time", "B", instant=True)],
        "short", color={"mode": "thresholds"}, thresholds=steps(SEA, (1, SAND)),
        decimals=0))
    y += 5

    P.append(row(ids, "Spend", y))
    y += 1
    P.append(piechart(
        ids, "Cost by provider",
        "Share of the cost (USD) of the selected requests per AI provider over the "
        "dashboard's time range.",
        (0, y, 6, 9),
        [target("sum by (provider) (increase(%s[$__range]))" % COST, "{{provider}}", "A",
                instant=True)],
        "currencyUSD", overrides=color_overrides(PROVIDER_COLORS)))
    P.append(piechart(
        ids, "Cost by framework",
        "Share of the cost (USD) of the selected requests per agent framework over the "
        "dashboard's time range.",
        (6, y, 6, 9),
        [target("sum by (framework) (increase(%s[$__range]))" % COST, "{{framework}}", "A",
                instant=True)],
        "currencyUSD", overrides=color_overrides(FRAMEWORK_COLORS)))
    P.append(timeseries(
        ids, "Cost rate by provider (USD per hour)",
        "Spend pace per provider, stacked: the per-second rate of the cost counter times "
        "3600. The AIUsageCostRateHigh alert watches the same figure summed over all "
        "providers (5-minute rate).",
        (12, y, 12, 9),
        [target("sum by (provider) (rate(%s[$__rate_interval])) * 3600" % COST,
                "{{provider}}", "A")],
        "currencyUSD", overrides=color_overrides(PROVIDER_COLORS), stack=True,
        axis_label="USD / hour"))
    y += 9

    P.append(row(ids, "Traffic", y))
    y += 1
    P.append(timeseries(
        ids, "Requests per second by status",
        "Request rate, stacked by outcome: success (sea green) and error (coral).",
        (0, y, 12, 9),
        [target("sum by (status) (rate(%s[$__rate_interval]))" % REQ, "{{status}}", "A")],
        "reqps", overrides=[by_name("success", SEA), by_name("error", CORAL)], stack=True))
    P.append(barchart(
        ids, "Requests by agent",
        "Requests per agent over the dashboard's time range, split into successful and "
        "failed ones.",
        (12, y, 12, 9),
        [target("sum by (agent_id) (increase(%s[$__range]))" % REQ_OK, "", "A",
                instant=True, fmt="table"),
         target(err_or_zero("agent_id", "$__range"), "", "B", instant=True, fmt="table")],
        "short", "Agent",
        [{"id": "merge", "options": {}},
         organize(exclude=["Time"],
                  rename={"agent_id": "Agent", "Value #A": "Successful", "Value #B": "Failed"},
                  order={"agent_id": 0, "Value #A": 1, "Value #B": 2}),
         {"id": "sortBy", "options": {"fields": {}, "sort": [{"desc": True,
                                                              "field": "Successful"}]}}],
        overrides=[by_name("Successful", SEA), by_name("Failed", CORAL)], stacking="normal",
        decimals=0))
    y += 9
    P.append(timeseries(
        ids, "Token throughput by direction",
        "Tokens per second sent to (input) and returned by (output) the models.",
        (0, y, 12, 8),
        [target("sum by (direction) (rate(%s[$__rate_interval]))" % TOK, "{{direction}}",
                "A")],
        "short", overrides=[by_name("input", TEAL), by_name("output", STEEL)], stack=True,
        axis_label="tokens / s"))
    P.append(timeseries(
        ids, "Response time p50 / p95",
        "Median and 95th percentile response time, estimated by histogram_quantile() from "
        "the exporter's buckets (0.1 s to 60 s; slower requests count as 60 s). Sand and "
        "coral lines mark 10 s and 20 s (the AIUsageLatencyP95High threshold)."
        + LATENCY_NOTE,
        (12, y, 12, 8),
        [target("histogram_quantile(0.50, sum by (le) (rate(%s[$__rate_interval])))" % BUCKET,
                "p50", "A"),
         target("histogram_quantile(0.95, sum by (le) (rate(%s[$__rate_interval])))" % BUCKET,
                "p95", "B")],
        "s", overrides=[by_name("p50", TEAL), by_name("p95", STEEL)],
        thresholds=steps("transparent", (10, SAND), (20, CORAL)),
        thresholds_style="dashed"))
    y += 8

    P.append(row(ids, "Users and data quality", y))
    y += 1
    P.append(table(
        ids, "Top users today by cost",
        "Today's top users by cost as reported by the exporter (gauge "
        "ai_usage_top_user_cost_usd, rank 1 = highest). A snapshot of the current day: it "
        "ignores the time range and the provider, framework and agent filters.",
        (0, y, 12, 9),
        [target("max by (rank, user_id) (ai_usage_top_user_cost_usd)", "", "A",
                instant=True, fmt="table")],
        "short",
        [{"id": "convertFieldType", "options": {"conversions": [
            {"destinationType": "number", "targetField": "rank"}], "fields": {}}},
         organize(exclude=["Time"],
                  rename={"rank": "Rank", "user_id": "User", "Value": "Cost today"},
                  order={"rank": 0, "user_id": 1, "Value": 2}),
         {"id": "sortBy", "options": {"fields": {}, "sort": [{"field": "Rank"}]}}],
        overrides=[
            by_name("Rank", custom__width=70, decimals=0),
            by_name("Cost today", TEAL, unit="currencyUSD", decimals=4,
                    custom__cellOptions={"type": "color-text"}),
        ]))
    P.append(timeseries(
        ids, "Active users",
        "Distinct users with at least one request in the last hour, day and 30 days "
        "(gauge ai_usage_active_users). Not affected by the provider, framework or agent "
        "filters.",
        (12, y, 12, 9),
        [target("max by (window) (ai_usage_active_users)", "{{window}}", "A")],
        "short", overrides=[by_name("1h", TEAL), by_name("24h", STEEL),
                            by_name("30d", SEA)], decimals=0))
    y += 9
    P.append(table(
        ids, "Unpriced requests by model (all time)",
        "Lifetime count of requests per (provider, model) that matched no price. A single "
        "row with model '(none)' and 0 means every request was priced. Filtered by "
        "provider only. Fix with usage_analytics.set_model_price() or by sending a "
        "canonical model id.",
        (0, y, 12, 8),
        [target("sum by (provider, model) (%s) or on() label_replace(vector(0), "
                "\"model\", \"(none)\", \"\", \"\")" % UNPRICED, "", "A", instant=True,
                fmt="table")],
        "short",
        [organize(exclude=["Time"],
                  rename={"provider": "Provider", "model": "Model", "Value": "Unpriced requests"},
                  order={"provider": 0, "model": 1, "Value": 2})],
        overrides=[by_name("Unpriced requests", decimals=0,
                           custom__cellOptions={"type": "color-text"},
                           thresholds=steps(SEA, (1, SAND)))],
        sort_by=[{"desc": True, "displayName": "Unpriced requests"}]))
    P.append(timeseries(
        ids, "Unpriced requests per minute",
        "Rate of requests recorded without a price (cost_usd NULL), per minute. Zero is "
        "the healthy value. Filtered by provider only.",
        (12, y, 12, 8),
        [target("sum(rate(%s[$__rate_interval])) * 60 or vector(0)" % UNPRICED, "unpriced",
                "A")],
        "short", overrides=[by_name("unpriced", SAND)], axis_label="requests / min"))
    y += 8

    P.append(row(ids, "Pipeline health", y))
    y += 1
    up_map = [{"type": "value", "options": {
        "0": {"color": CORAL, "index": 1, "text": "DOWN"},
        "1": {"color": SEA, "index": 0, "text": "UP"}}}]
    P.append(stat(
        ids, "Exporter scrape target",
        "Whether Prometheus reaches usage-analytics-exporter (up{job=\"usage-analytics\"}), "
        "one value per exporter instance. DOWN fires AIUsageExporterDown after 5 minutes.",
        (0, y, 5, 4),
        [target('up{job="usage-analytics"}', "{{instance}}", "A", instant=True)],
        "none", color={"mode": "thresholds"}, thresholds=steps(CORAL, (1, SEA)),
        mappings=up_map, text_mode="value"))
    P.append(stat(
        ids, "Database reachable",
        "Whether the exporter's last database query worked (ai_usage_exporter_up). "
        "UNREACHABLE fires AIUsageDatabaseUnreachable after 5 minutes.",
        (5, y, 5, 4),
        [target("ai_usage_exporter_up", "{{instance}}", "A", instant=True)],
        "none", color={"mode": "thresholds"}, thresholds=steps(CORAL, (1, SEA)),
        mappings=[{"type": "value", "options": {
            "0": {"color": CORAL, "index": 1, "text": "UNREACHABLE"},
            "1": {"color": SEA, "index": 0, "text": "OK"}}}],
        text_mode="value"))
    P.append(stat(
        ids, "Rollup age",
        "Time since usage_analytics.rollup_daily() last succeeded "
        "(ai_usage_rollup_last_success_timestamp_seconds). Rollups are scheduled every "
        "15 minutes by schedule_rollups(); sand after 1 hour, coral after 2 hours (the "
        "AIUsageRollupsStale threshold). 'never' when no rollup has succeeded.",
        (10, y, 5, 4),
        [target("time() - max(ai_usage_rollup_last_success_timestamp_seconds)", "age", "A",
                instant=True)],
        "s", color={"mode": "thresholds"}, thresholds=steps(SEA, (3600, SAND), (7200, CORAL)),
        mappings=[{"type": "range", "options": {
            "from": 1000000000, "to": 1e15, "result": {"color": CORAL, "index": 0,
                                                          "text": "never"}}}],
        text_mode="value", decimals=0))
    P.append(stat(
        ids, "Exporter scrape duration",
        "Time the exporter's last scrape spent querying PostgreSQL "
        "(ai_usage_exporter_scrape_duration_seconds). Prometheus times a scrape out "
        "after 10 s; sand from 2 s, coral from 5 s (the AIUsageExporterScrapeSlow "
        "threshold).",
        (15, y, 5, 4),
        [target("max(ai_usage_exporter_scrape_duration_seconds)", "duration", "A",
                instant=True)],
        "s", color={"mode": "thresholds"}, thresholds=steps(SEA, (2, SAND), (5, CORAL)),
        text_mode="value", decimals=3))
    P.append(stat(
        ids, "Exporter database errors",
        "Scrapes whose database query failed during the dashboard's time range "
        "(increase of ai_usage_exporter_scrape_errors_total).",
        (20, y, 4, 4),
        [target("sum(increase(ai_usage_exporter_scrape_errors_total[$__range])) or vector(0)",
                "errors", "A", instant=True)],
        "short", color={"mode": "thresholds"}, thresholds=steps(SEA, (1, SAND)),
        text_mode="value", decimals=0))

    return dashboard(
        "ai-usage-overview", "AI usage overview",
        "AI/LLM requests, tokens and cost recorded by pg_usage_analytics, exported by "
        "usage-analytics-exporter.",
        P, "ai-usage-agents", "Agent performance")


# --------------------------------------------------------------------------
# Dashboard 2: agent performance
def agents():
    ids = Ids()
    P = []
    y = 0
    P.append(row(ids, "Agents at a glance", y))
    y += 1
    P.append(stat(
        ids, "Agents",
        "Agents with at least one request in the dashboard's time range ('In range') and "
        "agents ever recorded ('All time').",
        (0, y, 4, 5),
        [target("count(sum by (agent_id) (increase(%s[$__range])) > 0) or vector(0)" % REQ,
                "In range", "A", instant=True),
         target("count(count by (agent_id) (%s)) or vector(0)" % REQ, "All time", "B",
                instant=True)],
        "short", color=fixed(NAVY), decimals=0))
    P.append(stat(
        ids, "Request rate",
        "Current requests per second over all selected agents.",
        (4, y, 4, 5),
        [target("sum(rate(%s[$__rate_interval]))" % REQ, "now", "A", instant=True)],
        "reqps", color=fixed(STEEL), decimals=3, text_mode="value"))
    P.append(stat(
        ids, "Error rate",
        "Share of failed requests (success = false) over the dashboard's time range. "
        "Sand from 1 %, coral from 5 % (the AIUsageErrorRateHigh warning threshold, which "
        "the alert applies per provider).",
        (8, y, 4, 5),
        [target("100 * %s / sum(increase(%s[$__range]))" % (err_or_zero("", "$__range"), REQ),
                "in range", "A", instant=True)],
        "percent", color={"mode": "thresholds"},
        thresholds=steps(SEA, (1, SAND), (5, CORAL)), decimals=2, text_mode="value",
        minv=0, maxv=100))
    P.append(stat(
        ids, "p95 response time",
        "95th percentile response time over the dashboard's time range. Sand from 10 s, "
        "coral from 20 s (the AIUsageLatencyP95High threshold)." + LATENCY_NOTE,
        (12, y, 4, 5),
        [target("histogram_quantile(0.95, sum by (le) (rate(%s[$__range])))" % BUCKET,
                "p95", "A", instant=True)],
        "s", color={"mode": "thresholds"}, thresholds=steps(SEA, (10, SAND), (20, CORAL)),
        decimals=2, text_mode="value"))
    P.append(stat(
        ids, "Cost per request",
        "Cost divided by the number of requests over the dashboard's time range. Failed "
        "and unpriced requests count as requests but add no cost, so they lower this "
        "average.",
        (16, y, 4, 5),
        [target("sum(increase(%s[$__range])) / sum(increase(%s[$__range]))" % (COST, REQ),
                "in range", "A", instant=True)],
        "currencyUSD", color=fixed(TEAL), decimals=5, text_mode="value"))
    P.append(stat(
        ids, "Tokens per dollar",
        "Input plus output tokens bought per US dollar over the dashboard's time range; "
        "higher is more economical. Tokens of unpriced requests are included, which "
        "inflates this figure when 'Unpriced requests' is non-zero. Empty when nothing was "
        "spent in the range.",
        (20, y, 4, 5),
        [target("(sum(increase(%s[$__range])) / sum(increase(%s[$__range]))) != +Inf"
                % (TOK, COST), "in range", "A", instant=True)],
        "short", color=fixed(SEA), decimals=0, text_mode="value"))
    y += 5

    P.append(row(ids, "Throughput and errors", y))
    y += 1
    P.append(timeseries(
        ids, "Request rate per agent",
        "Requests per second per agent (successful and failed).",
        (0, y, 12, 9),
        [target("sum by (agent_id) (rate(%s[$__rate_interval]))" % REQ, "{{agent_id}}", "A")],
        "reqps", color={"mode": "palette-classic-by-name"}))
    P.append(timeseries(
        ids, "Error rate per agent",
        "Share of failed requests per agent, in percent. Dashed lines: sand at 5 %, coral "
        "at 25 % (the AIUsageErrorRateHigh warning and critical thresholds, which the "
        "alert applies per provider). Gaps mean the agent had no traffic.",
        (12, y, 12, 9),
        [target("100 * %s / sum by (agent_id) (rate(%s[$__rate_interval]))"
                % (err_or_zero("agent_id", "$__rate_interval", fn="rate"), REQ),
                "{{agent_id}}", "A")],
        "percent", color={"mode": "palette-classic-by-name"},
        thresholds=steps("transparent", (5, SAND), (25, CORAL)), thresholds_style="dashed",
        decimals=2))
    y += 9

    P.append(row(ids, "Latency", y))
    y += 1
    P.append(timeseries(
        ids, "p95 response time by provider / framework",
        "95th percentile response time per provider and framework, estimated by "
        "histogram_quantile() from the exporter's buckets (0.1 s to 60 s). Dashed lines at "
        "10 s (sand) and 20 s (coral, the AIUsageLatencyP95High threshold)." + LATENCY_NOTE,
        (0, y, 12, 9),
        [target("histogram_quantile(0.95, sum by (le, provider, framework) "
                "(rate(%s[$__rate_interval])))" % BUCKET, "{{provider}} / {{framework}}", "A")],
        "s", color={"mode": "palette-classic-by-name"},
        thresholds=steps("transparent", (10, SAND), (20, CORAL)), thresholds_style="dashed"))
    P.append(timeseries(
        ids, "Mean response time by provider / framework",
        "Average response time per provider and framework (histogram sum divided by "
        "count); exact, unlike the percentiles." + LATENCY_NOTE,
        (12, y, 12, 9),
        [target("sum by (provider, framework) (rate(ai_usage_response_time_seconds_sum{%s}"
                "[$__rate_interval])) / sum by (provider, framework) "
                "(rate(ai_usage_response_time_seconds_count{%s}[$__rate_interval]))"
                % (F_LAT, F_LAT), "{{provider}} / {{framework}}", "A")],
        "s", color={"mode": "palette-classic-by-name"}))
    y += 9

    P.append(row(ids, "Cost efficiency", y))
    y += 1
    P.append(barchart(
        ids, "Cost per request by agent",
        "Average cost of one request per agent over the dashboard's time range. Failed "
        "and unpriced requests count as requests but add no cost. Empty bars mean the "
        "agent had no requests in the range.",
        (0, y, 12, 9),
        [target("sum by (agent_id) (increase(%s[$__range])) / sum by (agent_id) "
                "(increase(%s[$__range]))" % (COST, REQ), "", "A", instant=True, fmt="table")],
        "currencyUSD", "Agent",
        [organize(exclude=["Time"], rename={"agent_id": "Agent", "Value": "Cost per request"}),
         {"id": "sortBy", "options": {"fields": {}, "sort": [{"desc": True,
                                                              "field": "Cost per request"}]}}],
        color=fixed(TEAL), decimals=5))
    P.append(barchart(
        ids, "Tokens per dollar by agent",
        "Input plus output tokens per US dollar of cost, per agent, over the dashboard's "
        "time range; higher is more economical. An agent without priced requests in the "
        "range has no cost and therefore no bar (the infinite ratio is filtered out).",
        (12, y, 12, 9),
        [target("(sum by (agent_id) (increase(%s[$__range])) / sum by (agent_id) "
                "(increase(%s[$__range]))) != +Inf" % (TOK, COST), "", "A", instant=True,
                fmt="table")],
        "short", "Agent",
        [organize(exclude=["Time"], rename={"agent_id": "Agent", "Value": "Tokens per dollar"}),
         {"id": "sortBy", "options": {"fields": {}, "sort": [{"desc": True,
                                                              "field": "Tokens per dollar"}]}}],
        color=fixed(SEA), decimals=0))
    y += 9
    P.append(timeseries(
        ids, "Cost rate per agent (USD per hour)",
        "Spend pace per agent: the per-second rate of the cost counter times 3600.",
        (0, y, 12, 8),
        [target("sum by (agent_id) (rate(%s[$__rate_interval])) * 3600" % COST,
                "{{agent_id}}", "A")],
        "currencyUSD", color={"mode": "palette-classic-by-name"}, axis_label="USD / hour"))
    P.append(timeseries(
        ids, "Token throughput per agent",
        "Input plus output tokens per second per agent.",
        (12, y, 12, 8),
        [target("sum by (agent_id) (rate(%s[$__rate_interval]))" % TOK, "{{agent_id}}", "A")],
        "short", color={"mode": "palette-classic-by-name"}, axis_label="tokens / s"))
    y += 8

    P.append(row(ids, "Scorecard", y))
    y += 1
    P.append(table(
        ids, "Agent scorecard (all time)",
        "Lifetime figures per agent from the database's totals; the time range does not "
        "apply, the provider, framework and agent filters do. Error % is coloured sand "
        "from 5 % and coral from 25 %. Tokens per dollar is empty for agents without any "
        "priced request.",
        (0, y, 24, 10),
        [target("sum by (agent_id) (%s)" % REQ, "", "A", instant=True, fmt="table"),
         target("100 * (sum by (agent_id) (%s) or 0 * sum by (agent_id) (%s)) / "
                "sum by (agent_id) (%s)" % (REQ_ERR, REQ, REQ), "", "B", instant=True,
                fmt="table"),
         target("sum by (agent_id) (%s)" % COST, "", "C", instant=True, fmt="table"),
         target("sum by (agent_id) (%s) / sum by (agent_id) (%s)" % (COST, REQ), "", "D",
                instant=True, fmt="table"),
         target("sum by (agent_id) (%s)" % TOK, "", "E", instant=True, fmt="table"),
         target("sum by (agent_id) (%s) / (sum by (agent_id) (%s) > 0)" % (TOK, COST), "",
                "F", instant=True, fmt="table")],
        "short",
        [{"id": "merge", "options": {}},
         organize(exclude=["Time"],
                  rename={"agent_id": "Agent", "Value #A": "Requests", "Value #B": "Error %",
                          "Value #C": "Cost", "Value #D": "Cost per request",
                          "Value #E": "Tokens", "Value #F": "Tokens per dollar"},
                  order={"agent_id": 0, "Value #A": 1, "Value #B": 2, "Value #C": 3,
                         "Value #D": 4, "Value #E": 5, "Value #F": 6})],
        overrides=[
            by_name("Requests", decimals=0),
            by_name("Error %", unit="percent", decimals=2,
                    custom__cellOptions={"type": "color-text"},
                    thresholds=steps(SEA, (5, SAND), (25, CORAL))),
            by_name("Cost", unit="currencyUSD", decimals=2),
            by_name("Cost per request", unit="currencyUSD", decimals=5),
            by_name("Tokens", decimals=0),
            by_name("Tokens per dollar", decimals=0),
        ],
        sort_by=[{"desc": True, "displayName": "Cost"}]))

    return dashboard(
        "ai-usage-agents", "AI usage: agent performance",
        "Per-agent throughput, errors, latency and cost efficiency from pg_usage_analytics.",
        P, "ai-usage-overview", "AI usage overview")


DASHBOARDS = {
    "usage-overview.json": overview,
    "agent-performance.json": agents,
}


def render(build):
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 when a committed JSON file differs")
    args = ap.parse_args()
    stale = []
    for name, build in DASHBOARDS.items():
        path = os.path.join(OUT_DIR, name)
        text = render(build)
        if args.check:
            try:
                with open(path, encoding="utf-8") as fh:
                    if fh.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            os.makedirs(OUT_DIR, exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            print("wrote %s" % os.path.relpath(path))
    if stale:
        for path in stale:
            print("out of date: %s (run python3 grafana/build_dashboards.py)" % path,
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
