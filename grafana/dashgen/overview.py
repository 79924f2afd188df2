"""Dashboard "AI usage overview" (uid ai-usage-overview): spend, traffic, users, health."""
from grafana_foundation_sdk.models import dashboard as dm

from .panels import (BUCKET, BUDGET_LIMIT, BUDGET_PROJECTED, BUDGET_RATIO,
                     BUDGET_SPENT, COLOR_TEXT, CORAL, COST,
                     FRAMEWORK_COLORS, Ids, LATENCY_NOTE, NAVY, PROVIDER_COLORS,
                     RANGE_NOTE, REPRICED, REQ, REQ_OK, SAND, SEA, STEEL, TEAL, TOK,
                     TOK_CACHE, UNPRICED, bargauge, barchart, by_name, by_thresholds,
                     color_overrides, dashboard, err_or_zero, fixed, merge, nan_map,
                     organize, piechart, priced_requests, priced_tokens, range_map,
                     row, sort_by, stat, steps, table, target, timeseries,
                     transform, value_map)


def _in_range(sel):
    return "increase(%s[$__range])" % sel


def _lifetime(sel):
    return sel


def _rate(sel):
    return "rate(%s[$__rate_interval])" % sel


PRICED_NOTE = (" Priced requests are all requests minus the unpriced ones "
               "(ai_usage_unpriced_requests_total, which has only provider and model "
               "labels): exact without an Agent or Framework filter; with one, a model "
               "priced for only some of its requests is undercounted.")
TOKENS_NOTE = (" The exporter counts tokens per (provider, model), not per priced request, "
               "so the tokens of priced requests are estimated: each model's input + output "
               "tokens times its share of priced requests. Exact when a model is priced for "
               "all or none of its requests in the range (the usual case); for a model "
               "priced for only some, it assumes the same tokens per request.")


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
        "percent", color=by_thresholds(),
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
        "short", color=by_thresholds(), thresholds=steps(SEA, (1, SAND)),
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

    P.append(row(ids, "Efficiency and pricing", y))
    y += 1
    P.append(stat(
        ids, "Cost per priced request",
        "Average cost in USD of one priced request: cost divided by the requests that "
        "had a price (the summary's cost_per_request_usd). 'n/a' when no priced "
        "request happened." + PRICED_NOTE + RANGE_NOTE,
        (0, y, 6, 5),
        [target("sum(%s) / sum(%s)" % (_in_range(COST), priced_requests(_in_range)),
                "In range", "A", instant=True),
         target("sum(%s) / sum(%s)" % (COST, priced_requests(_lifetime)),
                "All time", "B", instant=True)],
        "currencyUSD", color=fixed(NAVY), decimals=6, mappings=[nan_map("n/a")]))
    P.append(stat(
        ids, "Tokens per dollar",
        "Input plus output tokens of the priced requests per USD of their cost (the "
        "summary's tokens_per_usd). 'n/a' when nothing was spent." + TOKENS_NOTE
        + RANGE_NOTE,
        (6, y, 6, 5),
        [target("%s / sum(%s)" % (priced_tokens(_in_range), _in_range(COST)),
                "In range", "A", instant=True),
         target("%s / sum(%s)" % (priced_tokens(_lifetime), COST),
                "All time", "B", instant=True)],
        "short", color=fixed(TEAL), decimals=0, mappings=[nan_map("n/a")]))
    P.append(stat(
        ids, "Repriced cost",
        "Change of recorded cost made by usage_analytics.reprice() "
        "(ai_usage_cost_repriced_usd_total): 'Up' and 'Down' in the dashboard's time "
        "range, and the net change of all time. The cost counters keep every request's "
        "cost as first recorded, so the database's current total is the cost counter "
        "plus the net change. Not filterable (the counter has only a direction label).",
        (12, y, 6, 5),
        [target('sum(%s)' % _in_range(REPRICED + '{direction="up"}'), "Up", "A", instant=True),
         target('sum(%s)' % _in_range(REPRICED + '{direction="down"}'), "Down", "B",
                instant=True),
         target('sum(%s{direction="up"}) - sum(%s{direction="down"})' % (REPRICED, REPRICED),
                "Net all time", "C", instant=True)],
        "currencyUSD", color=fixed(STEEL), decimals=4))
    P.append(stat(
        ids, "Cache-read share of input",
        "Share of input tokens read from the provider's prompt cache (direction "
        "cache_read of ai_usage_tokens_total over direction input, which includes "
        "them), in the dashboard's time range and of all time. 'n/a' without input "
        "tokens." + RANGE_NOTE,
        (18, y, 6, 5),
        [target('100 * sum(%s) / sum(%s)'
                % (_in_range(TOK_CACHE.replace("cache_read|cache_write|reasoning",
                                               "cache_read")),
                   _in_range(TOK.replace("input|output", "input"))),
                "In range", "A", instant=True),
         target('100 * sum(%s) / sum(%s)'
                % (TOK_CACHE.replace("cache_read|cache_write|reasoning", "cache_read"),
                   TOK.replace("input|output", "input")),
                "All time", "B", instant=True)],
        "percent", color=fixed(SEA), decimals=1, mappings=[nan_map("n/a")]))
    y += 5
    P.append(timeseries(
        ids, "Cost per priced request by provider",
        "Average cost in USD of one priced request, per provider, over each "
        "$__rate_interval window. Gaps where a provider had no priced request. "
        "Prometheus also records this per provider over 5 minutes as "
        "ai_usage:cost_usd_per_priced_request:rate5m." + PRICED_NOTE,
        (0, y, 12, 8),
        [target("sum by (provider) (%s) / sum by (provider) (%s)"
                % (_rate(COST), priced_requests(_rate)), "{{provider}}", "A")],
        "currencyUSD", overrides=color_overrides(PROVIDER_COLORS), decimals=6,
        axis_label="USD / request"))
    P.append(timeseries(
        ids, "Tokens per dollar by provider",
        "Input plus output tokens of priced requests per USD, per provider, over each "
        "$__rate_interval window; higher is cheaper. Recorded per provider over 5 "
        "minutes as ai_usage:tokens_per_usd:rate5m." + TOKENS_NOTE,
        (12, y, 12, 8),
        [target("%s / sum by (provider) (%s)"
                % (priced_tokens(_rate, "provider"), _rate(COST)), "{{provider}}", "A")],
        "short", overrides=color_overrides(PROVIDER_COLORS), decimals=0,
        axis_label="tokens / USD"))
    y += 8
    P.append(timeseries(
        ids, "Cache and reasoning tokens by provider",
        "Tokens per second read from (cache_read) and written to (cache_write, 5-minute "
        "and 1-hour) the providers' prompt caches, and reasoning tokens. They are not "
        "extra tokens: cache reads and writes are part of the input, reasoning of the "
        "output, so 'Token throughput' already counts them.",
        (0, y, 12, 8),
        [target("sum by (provider, direction) (%s)" % _rate(TOK_CACHE),
                "{{provider}} {{direction}}", "A")],
        "short", axis_label="tokens / s"))
    P.append(bargauge(
        ids, "Models that need a price",
        "Unpriced requests in the dashboard's time range per (provider, model): the "
        "model names sent that matched no price, so their cost is missing from every "
        "cost figure. Add prices with usage_analytics.set_model_price() or "
        "import_price_catalog(), then reprice(). A single 'none: every request priced' "
        "bar means there is nothing to do. Filtered by provider only.",
        (12, y, 12, 8),
        [target("sort_desc(sum by (provider, model) (%s) > 0) or on() "
                "label_replace(label_replace(vector(0), \"model\", \"every request priced\", "
                "\"\", \"\"), \"provider\", \"none\", \"\", \"\")" % _in_range(UNPRICED),
                "{{provider}}: {{model}}", "A", instant=True)],
        "short", color=by_thresholds(), thresholds=steps(SEA, (1, SAND)), decimals=0,
        minv=0))
    y += 8

    P.append(row(ids, "Budgets", y))
    y += 1
    BUDGET_NOTE = (" One series per budget defined with usage_analytics budgets (exporter "
                   "gauges, refreshed with the cached gauges); no budget, no data. Not "
                   "affected by the provider, framework or agent filters (a budget has its "
                   "own scope) nor by the time range.")
    P.append(bargauge(
        ids, "Budget utilization",
        "Spent (plus reserved) over limit for each budget's current period "
        "(ai_usage_budget_utilization_ratio). Sand from 80 % (AIUsageBudgetWarning), "
        "coral from 100 % (AIUsageBudgetExhausted: hard budgets refuse "
        "authorize_request). A budget with a zero limit has no ratio." + BUDGET_NOTE,
        (0, y, 10, 8),
        [target("max by (budget) (%s)" % BUDGET_RATIO, "{{budget}}", "A", instant=True)],
        "percentunit", color=by_thresholds(), thresholds=steps(SEA, (0.8, SAND), (1, CORAL)),
        decimals=1, minv=0, maxv=1))
    P.append(timeseries(
        ids, "Budget spend vs limit vs projected",
        "Per budget: spend in the current period (solid), its limit (dashed) and the "
        "spend projected to the period's end at the current run rate (dotted; absent "
        "for budgets without a projection). A projected line above the limit is what "
        "AIUsageBudgetForecastOverLimit warns about." + BUDGET_NOTE,
        (10, y, 14, 8),
        [target("max by (budget) (%s)" % BUDGET_SPENT, "{{budget}} spent", "A"),
         target("max by (budget) (%s)" % BUDGET_LIMIT, "{{budget}} limit", "B"),
         target("max by (budget) (%s)" % BUDGET_PROJECTED, "{{budget}} projected", "C")],
        "currencyUSD", decimals=2)
        .override_by_regexp(".* limit$", [dm.DynamicConfigValue(
            id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"})])
        .override_by_regexp(".* projected$", [dm.DynamicConfigValue(
            id_val="custom.lineStyle", value={"dash": [0, 10], "fill": "dot"})]))
    y += 8

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
        [merge(),
         organize(exclude=["Time"],
                  rename={"agent_id": "Agent", "Value #A": "Successful", "Value #B": "Failed"},
                  order={"agent_id": 0, "Value #A": 1, "Value #B": 2}),
         sort_by("Successful")],
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
        [transform("convertFieldType", {"conversions": [
            {"destinationType": "number", "targetField": "rank"}], "fields": {}}),
         organize(exclude=["Time"],
                  rename={"rank": "Rank", "user_id": "User", "Value": "Cost today"},
                  order={"rank": 0, "user_id": 1, "Value": 2}),
         sort_by("Rank", desc=False)],
        overrides=[
            by_name("Rank", custom__width=70, decimals=0),
            by_name("Cost today", TEAL, unit="currencyUSD", decimals=4,
                    custom__cellOptions=COLOR_TEXT),
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
                           custom__cellOptions=COLOR_TEXT,
                           thresholds=steps(SEA, (1, SAND)))],
        sort_by=["Unpriced requests"]))
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
    up_map = [value_map({"0": (CORAL, 1, "DOWN"), "1": (SEA, 0, "UP")})]
    P.append(stat(
        ids, "Exporter scrape target",
        "Whether Prometheus reaches usage-analytics-exporter (up{job=\"usage-analytics\"}), "
        "one value per exporter instance. DOWN fires AIUsageExporterDown after 5 minutes.",
        (0, y, 5, 4),
        [target('up{job="usage-analytics"}', "{{instance}}", "A", instant=True)],
        "none", color=by_thresholds(), thresholds=steps(CORAL, (1, SEA)),
        mappings=up_map, text_mode="value"))
    P.append(stat(
        ids, "Database reachable",
        "Whether the exporter's last database query worked (ai_usage_exporter_up). "
        "UNREACHABLE fires AIUsageDatabaseUnreachable after 5 minutes.",
        (5, y, 5, 4),
        [target("ai_usage_exporter_up", "{{instance}}", "A", instant=True)],
        "none", color=by_thresholds(), thresholds=steps(CORAL, (1, SEA)),
        mappings=[value_map({"0": (CORAL, 1, "UNREACHABLE"), "1": (SEA, 0, "OK")})],
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
        "s", color=by_thresholds(), thresholds=steps(SEA, (3600, SAND), (7200, CORAL)),
        mappings=[range_map(1000000000, 1e15, CORAL, "never")],
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
        "s", color=by_thresholds(), thresholds=steps(SEA, (2, SAND), (5, CORAL)),
        text_mode="value", decimals=3))
    P.append(stat(
        ids, "Exporter database errors",
        "Scrapes whose database query failed during the dashboard's time range "
        "(increase of ai_usage_exporter_scrape_errors_total).",
        (20, y, 4, 4),
        [target("sum(increase(ai_usage_exporter_scrape_errors_total[$__range])) or vector(0)",
                "errors", "A", instant=True)],
        "short", color=by_thresholds(), thresholds=steps(SEA, (1, SAND)),
        text_mode="value", decimals=0))

    return dashboard(
        "ai-usage-overview", "AI usage overview",
        "AI/LLM requests, tokens and cost recorded by pg_usage_analytics, exported by "
        "usage-analytics-exporter.",
        P, "ai-usage-agents", "Agent performance")
