"""Dashboard "AI usage: records" (uid ai-usage-records): the seed's records explorer.

Unlike the other two dashboards it reads the database itself, through Grafana's
PostgreSQL data source (provisioning/datasources/postgres.yaml, uid
usage-analytics-postgres) connected as a member of usage_analytics_auditor. Every
query calls the explorer functions of sql/explorer.sql, a thin layer over the
public API (get_usage_records, get_usage_summary, usage_trend, self_test):

* Grafana's time picker is the filters' start_date (inclusive) and end_date
  (exclusive): $__timeFrom() and $__timeTo();
* the multi-value variables arrive as text arrays, ARRAY[${var:sqlstring}]:
  selected values are quoted by Grafana ('a','b'); "All" is the custom all value
  NULL, which Grafana inserts unquoted, so ARRAY[NULL] means "no filter";
* the text boxes arrive as ${var:sqlstring} (one quoted, escaped literal).

tests/tests/grafana_records.rs substitutes these exactly so and runs every query
against a loaded database as the data-source login.
"""
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

from .panels import (COLOR_TEXT, CORAL, NAVY, SAND, SCHEMA_VERSION, SEA, STEEL, TEAL,
                     Ids, by_name, by_thresholds, fixed, organize, row, stat, steps,
                     table, timeseries, value_map)

UID = "ai-usage-records"
TITLE = "AI usage: records"
PG_TYPE = "grafana-postgresql-datasource"
PROVISIONED_PG_UID = "usage-analytics-postgres"
PG = dm.DataSourceRef(type_val=PG_TYPE, uid="${datasource}")
# The custom "All" value of the filter variables: inserted unquoted, so
# ARRAY[$var] becomes ARRAY[NULL], which the explorer reads as "no filter".
ALL_VALUE = "NULL"

# Filter variables: name -> (label, explorer_values kind, explorer argument, description).
FILTERS = [
    ("user", "User", "user", "users",
     "End user (user_id). Offers the users active in the time range, biggest spenders "
     "first (at most 1000); type any other user id to select it."),
    ("agent", "Agent", "agent", "agents", "agent_id as recorded by track_detailed_usage()."),
    ("framework", "Framework", "framework", "frameworks",
     "Agent framework (langchain, autogen, perplexity, hybrid, ...)."),
    ("provider", "Provider", "provider", "providers",
     "AI provider (openai, anthropic, perplexity, google, other, ...)."),
    ("model", "Model", "model", "models",
     "Canonical model that priced the request (requests with an unknown model have none: "
     "they appear under All only)."),
    ("message_type", "Message type", "message_type", "message_types",
     "The seed's request type (chat, preset_action, tool_execution, ...)."),
]


class SqlTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw-SQL target of Grafana's PostgreSQL data source (the SDK has no typed one)."""

    def __init__(self, sql, ref="A", fmt="table"):
        self._query = cogruntime.UnknownDataquery({
            "datasource": {"type": PG_TYPE, "uid": "${datasource}"},
            "editorMode": "code",
            "format": fmt,
            "rawQuery": True,
            "rawSql": sql,
            "refId": ref,
        })

    def build(self):
        return self._query


def selection_args():
    """The explorer arguments every panel passes: time range, filters, status, search."""
    lines = ["$__timeFrom(), $__timeTo()"]
    for name, _, _, arg, _ in FILTERS:
        lines.append("%s => ARRAY[${%s:sqlstring}]::text[]" % (arg, name))
    lines.append("succeeded => ${status:sqlstring}::boolean")
    lines.append("search => ${search:sqlstring}")
    return (",\n    ").join(lines)


def records_sql():
    return (
        "SELECT id, \"time\", user_id, agent_id, agent_name, framework, provider, model, message_type,\n"
        "       input_tokens, output_tokens, total_tokens, cache_read_tokens, cache_write_tokens,\n"
        "       cache_write_1h_tokens, reasoning_tokens, cost_usd, response_time_ms, success,\n"
        "       error_message, page_cursor\n"
        "  FROM usage_analytics.explorer_records(\n"
        "    %s,\n"
        "    page_after => ${page_after:sqlstring},\n"
        "    page_size => ${page_size:sqlstring}::integer)" % selection_args())


def summary_sql():
    return (
        "SELECT (s ->> 'total_requests')::bigint AS \"Requests\",\n"
        "       (s ->> 'success_rate')::numeric AS \"Success rate\",\n"
        "       (s ->> 'total_input_tokens')::bigint AS \"Input tokens\",\n"
        "       (s ->> 'total_output_tokens')::bigint AS \"Output tokens\",\n"
        "       (s ->> 'cache_read_tokens')::bigint AS \"Cache read tokens\",\n"
        "       (s ->> 'reasoning_tokens')::bigint AS \"Reasoning tokens\",\n"
        "       (s ->> 'total_cost_usd')::numeric AS \"Cost\",\n"
        "       (s ->> 'cost_per_request_usd')::numeric AS \"Cost per request\",\n"
        "       (s ->> 'cache_savings_usd')::numeric AS \"Cache savings\",\n"
        "       (s ->> 'tokens_per_usd')::numeric AS \"Tokens per dollar\",\n"
        "       (s ->> 'avg_response_time_ms')::numeric AS \"Avg response time\",\n"
        "       (s ->> 'unique_users')::bigint AS \"Users\",\n"
        "       (s ->> 'unpriced_requests')::bigint AS \"Unpriced requests\"\n"
        "  FROM usage_analytics.explorer_summary(\n"
        "    %s) AS s" % selection_args())


def trend_sql():
    return (
        "SELECT period_start AS \"time\", requests AS \"Requests\",\n"
        "       requests - successful_requests AS \"Failed\", cost_usd AS \"Cost\"\n"
        "  FROM usage_analytics.explorer_trend(\n"
        "    ${granularity:sqlstring},\n"
        "    %s)\n"
        " ORDER BY 1" % selection_args())


SELF_TEST_SQL = ("SELECT check_name, ok, detail\n"
                 "  FROM usage_analytics.self_test()")


def values_sql(kind):
    return ("SELECT value FROM usage_analytics.explorer_values('%s', $__timeFrom(), $__timeTo())"
            % kind)


def _pg(panel):
    return panel.datasource(PG)


# --------------------------------------------------------------------------
# Variables
def _filter_variable(name, label, kind, description):
    sql = values_sql(kind)
    return (db.QueryVariable(name).label(label).description(description).datasource(PG)
            .query(sql)
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .hide(dm.VariableHide.DONT_HIDE).include_all(True).all_value(ALL_VALUE).multi(True)
            .allow_custom_value(True).options([])
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).regex("")
            .sort(dm.VariableSort.DISABLED if kind == "user" else dm.VariableSort.ALPHABETICAL_ASC))


def _option(text, value, selected=False):
    return dm.VariableOption(selected=selected, text=text, value=value)


def variables():
    out = [
        db.DatasourceVariable("datasource").label("Data source")
        .description("PostgreSQL with pg_usage_analytics, connected as a member of "
                     "usage_analytics_auditor (read-only, every user's rows).")
        .type(PG_TYPE)
        .current(dm.VariableOption(selected=False, text="PostgreSQL (usage analytics)",
                                   value=PROVISIONED_PG_UID))
        .hide(dm.VariableHide.DONT_HIDE).include_all(False).multi(False).regex(""),
    ]
    out += [_filter_variable(name, label, kind, desc) for name, label, kind, _, desc in FILTERS]
    out.append(
        db.CustomVariable("status").label("Status")
        .description("Successful or failed requests only (the filters' success key).")
        .values("success : true, error : false")
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        .options([_option("All", "$__all", True), _option("success", "true"),
                  _option("error", "false")])
        .hide(dm.VariableHide.DONT_HIDE).include_all(True).all_value(ALL_VALUE).multi(False))
    out.append(
        db.TextBoxVariable("search").label("Search")
        .description("Case-insensitive substring of agent_id, agent_name, model or "
                     "error_message (the filters' search key). Empty: no search.")
        .default_value("").current(_option("", "", True)).options([_option("", "", True)])
        .hide(dm.VariableHide.DONT_HIDE))
    out.append(
        db.TextBoxVariable("page_after").label("Page after")
        .description("Keyset paging: the page_cursor of the last row of the current page "
                     "(or click it in the table) shows the rows after it. Empty: first page.")
        .default_value("").current(_option("", "", True)).options([_option("", "", True)])
        .hide(dm.VariableHide.DONT_HIDE))
    out.append(
        db.CustomVariable("page_size").label("Rows per page")
        .description("Rows per page of the records table (explorer_records page_size).")
        .values("50,100,500,1000")
        .current(_option("100", "100", True))
        .options([_option(v, v, v == "100") for v in ("50", "100", "500", "1000")])
        .hide(dm.VariableHide.DONT_HIDE).include_all(False).multi(False))
    out.append(
        db.CustomVariable("granularity").label("Trend by")
        .description("Period of the trend panel: UTC day, ISO week (Monday) or month.")
        .values("day,week,month")
        .current(_option("day", "day", True))
        .options([_option(v, v, v == "day") for v in ("day", "week", "month")])
        .hide(dm.VariableHide.DONT_HIDE).include_all(False).multi(False))
    return out


# The next page: this dashboard with every selection kept and page_after set to
# the clicked row's cursor (cursors hold only [0-9A-Za-z:./-], safe in a URL).
NEXT_PAGE_URL = ("/d/%s/ai-usage-records?${__url_time_range}&${datasource:queryparam}&"
                 "${user:queryparam}&${agent:queryparam}&${framework:queryparam}&"
                 "${provider:queryparam}&${model:queryparam}&${message_type:queryparam}&"
                 "${status:queryparam}&${search:queryparam}&${page_size:queryparam}&"
                 "${granularity:queryparam}&var-page_after=${__value.raw}" % UID)

RECORD_COLUMNS = {
    "id": "ID", "time": "Time", "user_id": "User", "agent_id": "Agent",
    "agent_name": "Agent name", "framework": "Framework", "provider": "Provider",
    "model": "Model", "message_type": "Message type", "input_tokens": "Input tokens",
    "output_tokens": "Output tokens", "total_tokens": "Total tokens",
    "cache_read_tokens": "Cache read tokens", "cache_write_tokens": "Cache write tokens",
    "cache_write_1h_tokens": "Cache write 1h tokens", "reasoning_tokens": "Reasoning tokens",
    "cost_usd": "Cost", "response_time_ms": "Latency", "success": "Success",
    "error_message": "Error", "page_cursor": "Page cursor",
}

SELECTION_NOTE = (" Filters: the time range and every variable above (multi-value selections "
                  "are the union of their values; All filters nothing).")


def records():
    ids = Ids()
    P = []
    y = 0
    P.append(row(ids, "Selection", y))
    y += 1
    P.append(_pg(stat(
        ids, "Summary",
        "get_usage_summary over the selection (usage_analytics.explorer_summary): the same "
        "numbers as the API called with these filters, and as the sum of every page of the "
        "records table. Cache read and reasoning tokens (0.2) are part of input and output "
        "tokens; cost per request is over priced requests only." + SELECTION_NOTE,
        (0, y, 24, 5),
        [SqlTarget(summary_sql())],
        "short", color=fixed(NAVY), decimals=0, text_mode="value_and_name")
        .override_by_name("Success rate", [
            dm.DynamicConfigValue(id_val="unit", value="percent"),
            dm.DynamicConfigValue(id_val="decimals", value=2)])
        .override_by_name("Cost", [
            dm.DynamicConfigValue(id_val="unit", value="currencyUSD"),
            dm.DynamicConfigValue(id_val="decimals", value=4),
            dm.DynamicConfigValue(id_val="color", value=fixed(TEAL).build())])
        .override_by_name("Cost per request", [
            dm.DynamicConfigValue(id_val="unit", value="currencyUSD"),
            dm.DynamicConfigValue(id_val="decimals", value=6),
            dm.DynamicConfigValue(id_val="color", value=fixed(TEAL).build())])
        .override_by_name("Avg response time", [
            dm.DynamicConfigValue(id_val="unit", value="ms"),
            dm.DynamicConfigValue(id_val="decimals", value=0),
            dm.DynamicConfigValue(id_val="color", value=fixed(STEEL).build())])
        .override_by_name("Unpriced requests", [
            dm.DynamicConfigValue(id_val="color", value=by_thresholds().build()),
            dm.DynamicConfigValue(id_val="thresholds",
                                  value=steps(SEA, (1, SAND)).build())])))
    y += 5
    P.append(_pg(timeseries(
        ids, "Trend by $granularity",
        "usage_trend over the selection (usage_analytics.explorer_trend), per UTC day, ISO "
        "week or month (variable 'Trend by'): requests, failed requests and cost per period. "
        "Periods are whole UTC days, weeks or months clipped to the time range." + SELECTION_NOTE,
        (0, y, 24, 8),
        [SqlTarget(trend_sql(), fmt="time_series")],
        "short", color=fixed(TEAL), axis_label="requests",
        overrides=[
            by_name("Requests", TEAL),
            by_name("Failed", CORAL),
            by_name("Cost", SAND, unit="currencyUSD", decimals=4,
                    custom__axisPlacement="right", custom__axisLabel="USD"),
        ])))
    y += 8

    P.append(row(ids, "Records", y))
    y += 1
    P.append(_pg(table(
        ids, "Usage records",
        "get_usage_records over the selection (usage_analytics.explorer_records), newest "
        "first, one page of 'Rows per page' rows. Next page: click the Page cursor of the "
        "last row, or paste it into 'Page after' (keyset paging: every page is as fast as "
        "the first); clear 'Page after' for the first page. Cache and reasoning token "
        "columns are empty before 0.2. The panel's Inspect > Data > Download CSV is the "
        "seed's export of this page; for every row of a selection use "
        "usage_analytics.export_usage_csv('{filters}') or COPY (SELECT * FROM "
        "usage_analytics.usage_export('{filters}')) TO STDOUT WITH (FORMAT csv, HEADER), "
        "with the filter documents of usage_analytics.explorer_filters(...)." + SELECTION_NOTE,
        (0, y, 24, 14),
        [SqlTarget(records_sql())],
        "none",
        [organize(rename=RECORD_COLUMNS,
                  order={name: i for i, name in enumerate(RECORD_COLUMNS)})],
        overrides=[
            by_name("Time", unit="dateTimeAsIsoNoDateIfToday", custom__width=170),
            by_name("ID", custom__width=120),
            by_name("User", custom__width=120),
            by_name("Cost", unit="currencyUSD", decimals=6),
            by_name("Latency", unit="ms", decimals=0),
            by_name("Success", custom__cellOptions=COLOR_TEXT,
                    mappings=[value_map({"true": (SEA, 0, "ok"),
                                         "false": (CORAL, 1, "error")})]),
            by_name("Error", color=CORAL, custom__cellOptions=COLOR_TEXT),
            by_name("Page cursor", links=[{
                "title": "Next page: the rows after this one",
                "url": NEXT_PAGE_URL,
                "targetBlank": False,
            }]),
        ])))
    y += 14

    P.append(row(ids, "Test page", y))
    y += 1
    P.append(_pg(table(
        ids, "Installation self-test",
        "usage_analytics.self_test(): the seed's test page, one row per check of the "
        "installation (pricing, model detection, row-level security, partitions, roles, "
        "pg_cron job, rollup freshness). Checks across all users appear to admins only.",
        (0, y, 24, 8),
        [SqlTarget(SELF_TEST_SQL)],
        "none",
        [organize(rename={"check_name": "Check", "ok": "OK", "detail": "Detail"})],
        overrides=[
            by_name("Check", custom__width=220),
            by_name("OK", custom__width=80, custom__cellOptions=COLOR_TEXT,
                    mappings=[value_map({"true": (SEA, 0, "ok"),
                                         "false": (CORAL, 1, "FAILED")})]),
        ])))

    d = (db.Dashboard(TITLE).uid(UID)
         .description("The seed's records explorer over Grafana's PostgreSQL data source: "
                      "summary, trend, paged records and the installation self-test, all "
                      "from pg_usage_analytics' SQL API.")
         .editable().fiscal_year_start_month(0).tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .live_now(False).refresh("").tags(["ai-usage", "pg_usage_analytics", "postgresql"])
         .time("now-24h", "now").timezone("browser").version(1).week_start("")
         .annotation(db.AnnotationQuery().built_in(1).name("Annotations & Alerts")
                     .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                     .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)")
                     .type("dashboard"))
         .link(db.DashboardLink("AI usage overview").type(dm.DashboardLinkType.LINK)
               .icon("dashboard").tooltip("").url("/d/ai-usage-overview").tags([])
               .as_dropdown(False).target_blank(False).include_vars(False).keep_time(True))
         .variables(variables()))
    for panel in P:
        d = d.with_row(panel) if isinstance(panel, db.Row) else d.with_panel(panel)
    model = d.build()
    model.schema_version = SCHEMA_VERSION
    return model
