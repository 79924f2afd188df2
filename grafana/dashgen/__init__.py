"""Sources of grafana/dashboards/*.json, written with grafana-foundation-sdk.

panels.py holds the palette, filtered selectors and panel helpers shared by both
dashboards; overview.py and agents.py hold one dashboard each. Run
`make dashboards` (python3 grafana/build_dashboards.py) after editing.
"""
