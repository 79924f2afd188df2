"""Dashboard "AI usage: agent performance" (uid ai-usage-agents): per-agent figures."""
from .panels import (BUCKET, COLOR_TEXT, CORAL, COST, F_LAT, Ids,
                     LATENCY_NOTE, NAVY, REQ, REQ_ERR, SAND, SEA, STEEL, TEAL,
                     TOK, barchart, by_name, by_thresholds, dashboard,
                     err_or_zero, fixed, merge, organize, palette_by_name,
                     row, sort_by, stat, steps, table, target, timeseries)


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
        "percent", color=by_thresholds(),
        thresholds=steps(SEA, (1, SAND), (5, CORAL)), decimals=2, text_mode="value",
        minv=0, maxv=100))
    P.append(stat(
        ids, "p95 response time",
        "95th percentile response time over the dashboard's time range. Sand from 10 s, "
        "coral from 20 s (the AIUsageLatencyP95High threshold)." + LATENCY_NOTE,
        (12, y, 4, 5),
        [target("histogram_quantile(0.95, sum by (le) (rate(%s[$__range])))" % BUCKET,
                "p95", "A", instant=True)],
        "s", color=by_thresholds(), thresholds=steps(SEA, (10, SAND), (20, CORAL)),
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
        "reqps", color=palette_by_name()))
    P.append(timeseries(
        ids, "Error rate per agent",
        "Share of failed requests per agent, in percent. Dashed lines: sand at 5 %, coral "
        "at 25 % (the AIUsageErrorRateHigh warning and critical thresholds, which the "
        "alert applies per provider). Gaps mean the agent had no traffic.",
        (12, y, 12, 9),
        [target("100 * %s / sum by (agent_id) (rate(%s[$__rate_interval]))"
                % (err_or_zero("agent_id", "$__rate_interval", fn="rate"), REQ),
                "{{agent_id}}", "A")],
        "percent", color=palette_by_name(),
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
        "s", color=palette_by_name(),
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
        "s", color=palette_by_name()))
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
         sort_by("Cost per request")],
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
         sort_by("Tokens per dollar")],
        color=fixed(SEA), decimals=0))
    y += 9
    P.append(timeseries(
        ids, "Cost rate per agent (USD per hour)",
        "Spend pace per agent: the per-second rate of the cost counter times 3600.",
        (0, y, 12, 8),
        [target("sum by (agent_id) (rate(%s[$__rate_interval])) * 3600" % COST,
                "{{agent_id}}", "A")],
        "currencyUSD", color=palette_by_name(), axis_label="USD / hour"))
    P.append(timeseries(
        ids, "Token throughput per agent",
        "Input plus output tokens per second per agent.",
        (12, y, 12, 8),
        [target("sum by (agent_id) (rate(%s[$__rate_interval]))" % TOK, "{{agent_id}}", "A")],
        "short", color=palette_by_name(), axis_label="tokens / s"))
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
        [merge(),
         organize(exclude=["Time"],
                  rename={"agent_id": "Agent", "Value #A": "Requests", "Value #B": "Error %",
                          "Value #C": "Cost", "Value #D": "Cost per request",
                          "Value #E": "Tokens", "Value #F": "Tokens per dollar"},
                  order={"agent_id": 0, "Value #A": 1, "Value #B": 2, "Value #C": 3,
                         "Value #D": 4, "Value #E": 5, "Value #F": 6})],
        overrides=[
            by_name("Requests", decimals=0),
            by_name("Error %", unit="percent", decimals=2,
                    custom__cellOptions=COLOR_TEXT,
                    thresholds=steps(SEA, (5, SAND), (25, CORAL))),
            by_name("Cost", unit="currencyUSD", decimals=2),
            by_name("Cost per request", unit="currencyUSD", decimals=5),
            by_name("Tokens", decimals=0),
            by_name("Tokens per dollar", decimals=0),
        ],
        sort_by=["Cost"]))

    return dashboard(
        "ai-usage-agents", "AI usage: agent performance",
        "Per-agent throughput, errors, latency and cost efficiency from pg_usage_analytics.",
        P, "ai-usage-overview", "AI usage overview")
