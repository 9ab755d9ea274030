"""Panel, target and variable builders on top of grafanalib, shaped for current Grafana.

grafanalib 0.7.1 predates Grafana 8.3: it writes datasource names as strings, legacy target
fields (``step``, ``intervalFactor: 2``) and the pre-8 bar gauge layout. These helpers set the
``{type, uid}`` datasource reference, thresholds as step lists and units everywhere, so each
dashboard module only says what to plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grafanalib.core import (
    Panel,
    RowPanel,
    Stat,
    StateTimeline,
    Target,
    Template,
    TimeSeries,
)

from alerts.catalog import LINKS

__all__ = [
    "DATASOURCE",
    "MESH",
    "RATE",
    "BarGauge",
    "PromTarget",
    "bar_gauge",
    "datasource_variable",
    "mesh_variables",
    "query_variable",
    "row",
    "runbook_link",
    "stat",
    "state_timeline",
    "steps",
    "timeseries",
    "value_text",
]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana widens this to at least four scrape intervals, so rates never come out empty.
RATE = "$__rate_interval"

Query = tuple[str, str]  # (PromQL, legend format)
Steps = list[dict[str, Any]]


class PromTarget(Target):  # type: ignore[misc]
    """A Prometheus query in the shape Grafana 10+ saves, without grafanalib's legacy fields.

    No new attributes, so no ``@attr.s``: it keeps ``Target``'s constructor.
    """

    def to_json_data(self) -> dict[str, Any]:
        return {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "legendFormat": self.legendFormat,
            "range": not self.instant,
            "refId": self.refId,
        }


class BarGauge(Panel):  # type: ignore[misc]
    """The bar gauge as Grafana 8+ stores it (grafanalib's own writes the Grafana 6 layout).

    Like ``StateTimeline``, it takes its unit through ``extraJson``.
    """

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.panel_json({
            "fieldConfig": {
                "defaults": {"min": 0, "thresholds": {
                    "mode": "absolute", "steps": self.thresholds,
                }},
                "overrides": [],
            },
            "options": {
                "displayMode": "gradient",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
            "type": "bargauge",
        })
        return data


def steps(base: str = "green", *levels: tuple[float, str]) -> Steps:
    """Threshold steps: a base colour, then (value, colour) pairs in increasing order."""
    return [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in levels]


def runbook_link(alert: str) -> dict[str, Any]:
    return {"targetBlank": True, "title": f"Runbook: {alert}", "url": LINKS.runbook_url(alert)}


def _targets(queries: Sequence[Query], *, instant: bool = False, fmt: str = "time_series"
             ) -> list[PromTarget]:
    return [
        PromTarget(expr=expr, legendFormat=legend, refId=chr(ord("A") + i), instant=instant,
                   format=fmt)
        for i, (expr, legend) in enumerate(queries)
    ]


def _links(alerts: Sequence[str]) -> list[dict[str, Any]]:
    return [runbook_link(a) for a in alerts]


def timeseries(title: str, description: str, queries: Sequence[Query], unit: str, *,
               stack: bool = False, thresholds: Steps | None = None, alerts: Sequence[str] = (),
               min_value: float | None = None, max_value: float | None = None) -> TimeSeries:
    return TimeSeries(
        title=title, description=description, dataSource=DATASOURCE, targets=_targets(queries),
        unit=unit, links=_links(alerts), valueMin=min_value, valueMax=max_value,
        thresholds=thresholds or steps(),
        # A dashed line shows where the alert or SLO threshold sits, when there is one.
        thresholdsStyleMode="dashed" if thresholds else "off",
        stacking={"mode": "normal" if stack else "none", "group": "A"},
        fillOpacity=30 if stack else 10, showPoints="never", legendDisplayMode="list",
        tooltipMode="multi", tooltipSort="desc",
        # grafanalib caps panels at 100 points; null lets Grafana size the step to the width.
        maxDataPoints=None,
    )


def stat(title: str, description: str, queries: Sequence[Query], unit: str, *,
         thresholds: Steps | None = None, mappings: Sequence[dict[str, Any]] = (),
         alerts: Sequence[str] = (), no_value: str = "no data") -> Stat:
    return Stat(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_targets(queries, instant=True), format=unit, links=_links(alerts),
        thresholds=thresholds or steps(), mappings=list(mappings), reduceCalc="lastNotNull",
        colorMode="background" if thresholds else "value", graphMode="none", noValue=no_value,
        color={"mode": "thresholds"}, maxDataPoints=None,
    )


def state_timeline(title: str, description: str, queries: Sequence[Query], unit: str, *,
                   mappings: Sequence[dict[str, Any]], thresholds: Steps,
                   alerts: Sequence[str] = ()) -> StateTimeline:
    return StateTimeline(
        title=title, description=description, dataSource=DATASOURCE, targets=_targets(queries),
        links=_links(alerts), mappings=list(mappings), thresholds=thresholds,
        mergeValues=True, showValue="never", fillOpacity=80, maxDataPoints=None,
        extraJson={"fieldConfig": {"defaults": {"unit": unit}}},
    )


def bar_gauge(title: str, description: str, queries: Sequence[Query], unit: str, *,
              fmt: str = "time_series", thresholds: Steps | None = None) -> BarGauge:
    return BarGauge(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_targets(queries, instant=True, fmt=fmt), thresholds=thresholds or steps(),
        maxDataPoints=None, extraJson={"fieldConfig": {"defaults": {"unit": unit}}},
    )


def value_text(mapping: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """A value mapping {value: (text, colour)} in Grafana 8+ form."""
    return {"type": "value", "options": {
        str(v): {"text": text, "color": colour, "index": i}
        for i, (v, (text, colour)) in enumerate(sorted(mapping.items()))
    }}


def row(title: str) -> RowPanel:
    return RowPanel(title=title)


def datasource_variable() -> Template:
    # "default" resolves to the Grafana instance's default Prometheus data source on import.
    return Template(name="datasource", label="Data source", type="datasource",
                    query="prometheus", default="default", hide=0)


def query_variable(name: str, label: str, query: str, *, all_value: str | None = None
                   ) -> Template:
    variable = Template(name=name, label=label, type="query", query=query,
                        dataSource=DATASOURCE, includeAll=True, multi=True, allValue=all_value,
                        refresh=2, sort=1)
    # grafanalib writes `current` as one string; a multi-value variable holds lists, and "All"
    # is the selection a dashboard should open with.
    variable._current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return variable


# Every mesh query is scoped by these two variables. zone is a scrape target label; the job
# list comes from agentmesh_build_info so only mesh targets are offered.
MESH = 'job=~"$job", zone=~"$zone"'


def mesh_variables() -> list[Template]:
    return [
        query_variable("job", "Job", "label_values(agentmesh_build_info, job)"),
        # ".*" rather than the list of known zones: a zone whose replicas are all down drops
        # out of label_values, and it is exactly the zone the reader needs to see.
        query_variable("zone", "Zone", 'label_values(agentmesh_build_info{job=~"$job"}, zone)',
                       all_value=".*"),
    ]
