"""Shared building blocks of the pg_usage_analytics dashboards, on grafana-foundation-sdk.

Palette, the filtered metric selectors every usage query starts from, and one
helper per panel type that fixes the look shared by both dashboards (stat cards,
time series, pies, bar charts, tables), plus the dashboard shell (variables,
annotations, the link to the other dashboard).
"""
from grafana_foundation_sdk.builders import barchart as sdk_barchart
from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import piechart as sdk_piechart
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import piechart as pc
from grafana_foundation_sdk.models import prometheus as pm

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

PROVISIONED_DS_UID = "usage-analytics-prometheus"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Dashboards keep schemaVersion 39 so that Grafana 10.4 and later load them as
# before; Grafana migrates them forward on load.
SCHEMA_VERSION = 39

# Filters. Every usage query carries the label matchers its metric supports;
# the linter enforces this.
F_ALL = 'provider=~"$provider", framework=~"$framework", agent_id=~"$agent"'
F_LAT = 'provider=~"$provider", framework=~"$framework"'
F_PROV = 'provider=~"$provider"'

REQ = "ai_usage_requests_total{%s}" % F_ALL
REQ_ERR = 'ai_usage_requests_total{%s, status="error"}' % F_ALL
REQ_OK = 'ai_usage_requests_total{%s, status="success"}' % F_ALL
COST = "ai_usage_cost_usd_total{%s}" % F_ALL
# ai_usage_tokens_total's directions overlap: input includes the cached input
# (cache_read, cache_write) and output the reasoning tokens, so "tokens" is
# always input + output; the other three are shown apart (TOK_CACHE).
TOK = 'ai_usage_tokens_total{%s, direction=~"input|output"}' % F_ALL
TOK_CACHE = 'ai_usage_tokens_total{%s, direction=~"cache_read|cache_write|reasoning"}' % F_ALL
BUCKET = "ai_usage_response_time_seconds_bucket{%s}" % F_LAT
UNPRICED = "ai_usage_unpriced_requests_total{%s}" % F_PROV
# No provider/framework/agent labels: neither is filterable.
REPRICED = "ai_usage_cost_repriced_usd_total"
BUDGET_LIMIT = "ai_usage_budget_limit_usd"
BUDGET_SPENT = "ai_usage_budget_spent_usd"
BUDGET_RATIO = "ai_usage_budget_utilization_ratio"
BUDGET_PROJECTED = "ai_usage_budget_projected_spend_usd"

LATENCY_NOTE = (" The exporter's response-time histogram carries only the provider and "
                "framework labels, so the Agent filter does not apply here: the figure covers "
                "every agent of the selected providers and frameworks.")
RANGE_NOTE = (" Counters are lifetime totals kept in the database; 'In range' is their "
              "increase over the dashboard's time range, 'All time' the lifetime total.")


def err_or_zero(by, rng, sel_err=REQ_ERR, sel_all=REQ, fn="increase"):
    """Errors per group; groups with traffic but no error series yield 0, not nothing."""
    by_clause = "sum by (%s) " % by if by else "sum"
    return ("(%s(%s(%s[%s])) or 0 * %s(%s(%s[%s])))"
            % (by_clause, fn, sel_err, rng, by_clause, fn, sel_all, rng))


def priced_requests(fn):
    """Priced requests per (provider, model): requests minus unpriced requests.

    fn(selector) -> a counter expression, e.g. increase(...[$__range]) or the
    selector itself (lifetime). The unpriced counter has only provider and
    model labels, so under an Agent or Framework filter it counts every agent's
    unpriced requests of that model: clamp_min keeps a model that is never
    priced at 0 (exact); only a model priced for some requests and not for
    others is then undercounted. Without those filters the figure is exact.
    """
    req = "sum by (provider, model) (%s)" % fn(REQ)
    return ("clamp_min(%s - on (provider, model) (sum by (provider, model) (%s) or 0 * %s), 0)"
            % (req, fn(UNPRICED), req))


def priced_tokens(fn, by=""):
    """Input + output tokens of the priced requests (see priced_requests).

    The exporter has no priced-token counter, so each (provider, model)'s
    tokens are scaled by its share of priced requests: exact for a model that is
    either priced or unpriced for every request in the range, an estimate
    (same tokens per request) for one priced only for some. A model without
    requests drops out; the `or` makes "no priced tokens" 0 (so the ratio is
    0/0 = NaN, "nothing priced"), not an empty result. by: "" or "provider".
    """
    agg = "sum by (%s) " % by if by else "sum"
    req = "sum by (provider, model) (%s)" % fn(REQ)
    return ("(%s(sum by (provider, model) (%s) * on (provider, model) (%s / (%s > 0))) "
            "or 0 * %s(%s))" % (agg, fn(TOK), priced_requests(fn), req, agg, fn(COST)))


# --------------------------------------------------------------------------
# Small values
class Ids:
    """Panel ids in order of appearance, 1, 2, ..."""

    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return self.n


def target(expr, legend="__auto", ref="A", instant=False, fmt="time_series"):
    q = (prom.Dataquery().datasource(DS).editor_mode(pm.QueryEditorMode.CODE).expr(expr)
         .format(pm.PromQueryFormat(fmt)).legend_format(legend).ref_id(ref))
    return q.instant() if instant else q.range()


def fixed(color):
    return db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(color)


def palette_by_name():
    return db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC_BY_NAME)


def by_thresholds():
    return db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)


def steps(*pairs):
    """steps(COLOR, (value, COLOR), ...) -> absolute thresholds."""
    out = [dm.Threshold(value=None, color=pairs[0])]
    out += [dm.Threshold(value=value, color=color) for value, color in pairs[1:]]
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(out)


def value_map(mapping):
    """value_map({"0": (COLOR, index, TEXT), ...}) -> a value-to-text mapping."""
    return dm.ValueMap(options={value: dm.ValueMappingResult(text=text, color=color, index=index)
                                for value, (color, index, text) in mapping.items()})


def range_map(lo, hi, color, text):
    return dm.RangeMap(options=dm.DashboardRangeMapOptions(
        from_val=lo, to=hi, result=dm.ValueMappingResult(text=text, color=color, index=0)))


def by_name(name, color=None, **props):
    """A field override; keyword keys use __ for dots (custom__width -> custom.width)."""
    properties = []
    if color:
        properties.append(dm.DynamicConfigValue(id_val="color", value=fixed(color).build()))
    for key, value in props.items():
        if hasattr(value, "build"):
            value = value.build()
        properties.append(dm.DynamicConfigValue(id_val=key.replace("__", "."), value=value))
    return (name, properties)


def color_overrides(mapping):
    return [by_name(name, color) for name, color in mapping.items()]


COLOR_TEXT = cm.TableColorTextCellOptions()


def transform(tid, options):
    return dm.DataTransformerConfig(id_val=tid, options=options)


def organize(exclude=(), rename=None, order=None):
    return transform("organize", {
        "excludeByName": {name: True for name in exclude},
        "includeByName": {},
        "indexByName": order or {},
        "renameByName": rename or {},
    })


def merge():
    return transform("merge", {})


def sort_by(field, desc=True):
    entry = {"desc": True, "field": field} if desc else {"field": field}
    return transform("sortBy", {"fields": {}, "sort": [entry]})


def _hide_from():
    return cb.HideSeriesConfig().legend(False).tooltip(False).viz(False)


def _common(panel, ids, title, description, grid, targets, unit, color=None,
            thresholds=None, overrides=None, decimals=None, mappings=None, minv=None,
            maxv=None):
    x, y, w, h = grid
    panel = (panel.id(ids.next()).title(title).description(description).datasource(DS)
             .grid_pos(dm.GridPos(h=h, w=w, x=x, y=y)).targets(targets).unit(unit)
             .color_scheme(color or db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
             .mappings(mappings or []).thresholds(thresholds or steps(SEA)))
    if decimals is not None:
        panel = panel.decimals(decimals)
    if minv is not None:
        panel = panel.min(minv)
    if maxv is not None:
        panel = panel.max(maxv)
    for name, properties in overrides or []:
        panel = panel.override_by_name(name, properties)
    return panel


# --------------------------------------------------------------------------
# Panels
def row(ids, title, y):
    return db.Row(title).id(ids.next()).collapsed(False).grid_pos(dm.GridPos(h=1, w=24, x=0, y=y))


def stat(ids, title, description, grid, targets, unit, color=None, thresholds=None,
         decimals=None, mappings=None, color_mode="background", text_mode="value_and_name",
         minv=None, maxv=None):
    p = _common(sdk_stat.Panel(), ids, title, description, grid, targets, unit, color=color,
                thresholds=thresholds, decimals=decimals, mappings=mappings, minv=minv,
                maxv=maxv)
    return (p.color_mode(cm.BigValueColorMode(color_mode)).graph_mode(cm.BigValueGraphMode.NONE)
            .justify_mode(cm.BigValueJustifyMode.CENTER)
            .orientation(cm.VizOrientation.HORIZONTAL)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
            .show_percent_change(False).text_mode(cm.BigValueTextMode(text_mode))
            .wide_layout(True))


def timeseries(ids, title, description, grid, targets, unit, color=None, overrides=None,
               stack=False, decimals=None, thresholds=None, thresholds_style="off",
               axis_label="", minv=0):
    p = _common(sdk_timeseries.Panel(), ids, title, description, grid, targets, unit,
                color=color, overrides=overrides, decimals=decimals, thresholds=thresholds,
                minv=minv)
    stacking = cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE
    return (p.axis_border_show(False).axis_centered_zero(False)
            .axis_color_mode(cm.AxisColorMode.TEXT).axis_label(axis_label)
            .axis_placement(cm.AxisPlacement.AUTO).bar_alignment(cm.BarAlignment.CENTER)
            .draw_style(cm.GraphDrawStyle.LINE).fill_opacity(25 if stack else 12)
            .gradient_mode(cm.GraphGradientMode.OPACITY).hide_from(_hide_from())
            .insert_nulls(False).line_interpolation(cm.LineInterpolation.SMOOTH)
            .line_width(2).point_size(4)
            .scale_distribution(cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LINEAR))
            .show_points(cm.VisibilityMode.NEVER).span_nulls(False)
            .stacking(cb.StackingConfig().group("A").mode(stacking))
            .thresholds_style(cb.GraphThresholdsStyleConfig()
                              .mode(cm.GraphThresholdsStyleMode(thresholds_style)))
            .legend(cb.VizLegendOptions().calcs(["mean", "max", "lastNotNull"])
                    .display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
            .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                     .sort(cm.SortOrder.DESCENDING)))


def piechart(ids, title, description, grid, targets, unit, overrides=None):
    p = _common(sdk_piechart.Panel(), ids, title, description, grid, targets, unit,
                overrides=overrides, decimals=2)
    return (p.hide_from(_hide_from())
            .display_labels([pc.PieChartLabels.PERCENT])
            .legend(sdk_piechart.PieChartLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.RIGHT).show_legend(True)
                    .values([pc.PieChartLegendValues.VALUE,
                             pc.PieChartLegendValues.PERCENT]))
            .pie_type(pc.PieChartType.DONUT)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
            .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE)
                     .sort(cm.SortOrder.NONE)))


def barchart(ids, title, description, grid, targets, unit, x_field, transformations,
             color=None, overrides=None, stacking="none", decimals=None):
    p = _common(sdk_barchart.Panel(), ids, title, description, grid, targets, unit,
                color=color, overrides=overrides, decimals=decimals, minv=0)
    return (p.axis_border_show(False).axis_centered_zero(False)
            .axis_color_mode(cm.AxisColorMode.TEXT).axis_label("")
            .axis_placement(cm.AxisPlacement.AUTO).fill_opacity(85)
            .gradient_mode(cm.GraphGradientMode.NONE).hide_from(_hide_from()).line_width(1)
            .scale_distribution(cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LINEAR))
            .thresholds_style(cb.GraphThresholdsStyleConfig()
                              .mode(cm.GraphThresholdsStyleMode.OFF))
            .bar_radius(0.1).bar_width(0.8).full_highlight(False).group_width(0.7)
            .legend(cb.VizLegendOptions().calcs([]).display_mode(cm.LegendDisplayMode.LIST)
                    .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
            .orientation(cm.VizOrientation.HORIZONTAL).show_value(cm.VisibilityMode.AUTO)
            .stacking(cm.StackingMode(stacking))
            .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                     .sort(cm.SortOrder.DESCENDING))
            .x_field(x_field).x_tick_label_rotation(0).x_tick_label_spacing(0)
            .transformations(transformations))


def bargauge(ids, title, description, grid, targets, unit, color=None, thresholds=None,
             decimals=None, minv=None, maxv=None, mappings=None):
    p = _common(sdk_bargauge.Panel(), ids, title, description, grid, targets, unit,
                color=color, thresholds=thresholds, decimals=decimals, minv=minv, maxv=maxv,
                mappings=mappings)
    return (p.display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .value_mode(cm.BarGaugeValueMode.COLOR)
            .name_placement(cm.BarGaugeNamePlacement.AUTO).show_unfilled(True)
            .sizing(cm.BarGaugeSizing.AUTO).min_viz_width(8).min_viz_height(16)
            .max_viz_height(300).orientation(cm.VizOrientation.HORIZONTAL)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
            .legend(cb.VizLegendOptions().calcs([]).display_mode(cm.LegendDisplayMode.LIST)
                    .placement(cm.LegendPlacement.BOTTOM).show_legend(False)))


def nan_map(text):
    """Shows NaN (0/0: nothing happened) and null as text instead of 'NaN'."""
    return dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
        match=dm.SpecialValueMatch.NULL_AND_NAN,
        result=dm.ValueMappingResult(text=text, index=0)))


def table(ids, title, description, grid, targets, unit, transformations, overrides=None,
          sort_by=None):
    """sort_by: display names of the columns to sort by, descending."""
    p = _common(sdk_table.Panel(), ids, title, description, grid, targets, unit,
                overrides=overrides, color=by_thresholds())
    sorting = [cb.TableSortByFieldState().display_name(name).desc(True) for name in sort_by or []]
    return (p.align(cm.FieldTextAlignment.AUTO).cell_options(cm.TableAutoCellOptions())
            .filterable(False).inspect(False)
            .cell_height(cm.TableCellHeight.SM)
            .footer(cb.TableFooterOptions().count_rows(False).fields("").reducer(["sum"])
                    .show(False))
            .show_header(True).sort_by(sorting)
            .transformations(transformations))


# --------------------------------------------------------------------------
# Dashboard shell
def _label_variable(name, label, query, description):
    return (db.QueryVariable(name).label(label).description(description).datasource(DS)
            .query({"qryType": 1, "query": query,
                    "refId": "PrometheusVariableQueryEditor-VariableQuery"})
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .hide(dm.VariableHide.DONT_HIDE).include_all(True).all_value(".*").multi(True)
            .options([]).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).regex("")
            .sort(dm.VariableSort.ALPHABETICAL_ASC))


def variables():
    return [
        db.DatasourceVariable("datasource").label("Data source")
        .description("Prometheus that scrapes usage-analytics-exporter (job usage-analytics).")
        .type("prometheus")
        .current(dm.VariableOption(selected=False, text="Prometheus (usage analytics)",
                                   value=PROVISIONED_DS_UID))
        .hide(dm.VariableHide.DONT_HIDE).include_all(False).multi(False).regex(""),
        _label_variable("provider", "Provider",
                        "label_values(ai_usage_requests_total, provider)",
                        "AI provider (openai, anthropic, perplexity, google, other, ...)."),
        _label_variable("framework", "Framework",
                        'label_values(ai_usage_requests_total{provider=~"$provider"}, framework)',
                        "Agent framework (langchain, autogen, perplexity, hybrid, ...)."),
        _label_variable("agent", "Agent",
                        'label_values(ai_usage_requests_total{provider=~"$provider", '
                        'framework=~"$framework"}, agent_id)',
                        "agent_id as recorded by track_detailed_usage()."),
    ]


def dashboard(uid, title, description, panels, other_uid, other_title):
    """The shell shared by both dashboards; panels are rows and panels in order."""
    d = (db.Dashboard(title).uid(uid).description(description).editable()
         .fiscal_year_start_month(0).tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .live_now(False).refresh("30s").tags(["ai-usage", "pg_usage_analytics", "prometheus"])
         .time("now-24h", "now").timezone("browser").version(1).week_start("")
         .annotation(db.AnnotationQuery().built_in(1).name("Annotations & Alerts")
                     .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                     .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)")
                     .type("dashboard"))
         .link(db.DashboardLink(other_title).type(dm.DashboardLinkType.LINK)
               .icon("dashboard").tooltip("").url("/d/%s" % other_uid).tags([])
               .as_dropdown(False).target_blank(False).include_vars(True).keep_time(True))
         .variables(variables()))
    for panel in panels:
        d = d.with_row(panel) if isinstance(panel, db.Row) else d.with_panel(panel)
    model = d.build()
    model.schema_version = SCHEMA_VERSION
    return model
