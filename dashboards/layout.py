"""Explicit grid layout, the dashboard envelope every meshsre dashboard shares, and rendering.

grafanalib writes ``"gridPos": null`` for panels without a ``GridPos``, which current Grafana
and grafana-foundation-sdk reject, so every panel is placed here before it is rendered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attr
from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
    Annotations,
    Dashboard,
    DashboardLink,
    GridPos,
    Panel,
    Template,
    Templating,
    Time,
)

from dashboards.panels import DATASOURCE, datasource_variable, row

__all__ = ["SCHEMA_VERSION", "TAG", "Grid", "dashboard", "render"]

# Grafana 10.4/11 save dashboards with schemaVersion 39; older numbers make Grafana migrate
# (and rewrite) the JSON on every import.
SCHEMA_VERSION = 39
TAG = "meshsre"
_COLUMNS = 24


class Grid:
    """Places panels left to right on Grafana's 24-column grid, wrapping to a new line.

    >>> g = Grid(); g.add(Panel(title="a"), 12, 8); g.add(Panel(title="b"), 16, 8)
    >>> [(p.gridPos.x, p.gridPos.y) for p in g.panels]
    [(0, 0), (0, 8)]
    """

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self._x = 0
        self._y = 0
        self._line_height = 0

    def _new_line(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def row(self, title: str) -> None:
        self._new_line()
        header = row(title)
        self.panels.append(attr.evolve(header, gridPos=GridPos(h=1, w=_COLUMNS, x=0, y=self._y)))
        self._y += 1

    def add(self, panel: Panel, w: int, h: int) -> None:
        if not 0 < w <= _COLUMNS:
            raise ValueError(f"panel {panel.title!r}: width {w} outside 1..{_COLUMNS}")
        if self._x + w > _COLUMNS:
            self._new_line()
        self.panels.append(attr.evolve(panel, gridPos=GridPos(h=h, w=w, x=self._x, y=self._y)))
        self._x += w
        self._line_height = max(self._line_height, h)


_FIRING_ALERTS = {
    "datasource": DATASOURCE,
    "enable": True,
    "expr": 'ALERTS{alertstate="firing"}',
    "iconColor": "red",
    "name": "Firing alerts",
    "step": "1m",
    "tagKeys": "severity,slo,zone",
    "titleFormat": "{{alertname}}",
    "useValueForTime": False,
}


def dashboard(uid: str, title: str, description: str, grid: Grid, *,
              variables: Sequence[Template] = (), module: str) -> Dashboard:
    return Dashboard(
        uid=uid, id=None, title=title, schemaVersion=SCHEMA_VERSION, tags=[TAG],
        description=f"{description} Generated from {module} by `python -m dashboards`: "
        "DO NOT EDIT the JSON.",
        panels=grid.panels,
        templating=Templating(list=[datasource_variable(), *variables]),
        annotations=Annotations(list=[_FIRING_ALERTS]),
        links=[DashboardLink(type="dashboards", tags=[TAG], asDropdown=True, title="meshsre",
                             includeVars=True, keepTime=True)],
        time=Time("now-3h", "now"), refresh="30s", timezone="utc", editable=True,
        graphTooltip=GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
    ).auto_panel_ids()


def render(board: Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data, the form Grafana imports."""
    data: dict[str, Any] = json.loads(json.dumps(board.to_json_data(), cls=DashboardEncoder))
    # Dashboards are provisioned by uid; a numeric id from another Grafana would clash.
    data["id"] = None
    # grafanalib emits the pre-5.0 `rows` list next to `panels`; Grafana ignores it at this
    # schemaVersion, so drop it rather than ship two layouts.
    data.pop("rows", None)
    # Unset legacy fields (span, height, cacheTimeout, ...) come out as null, and a null where
    # Grafana expects an object (a row's datasource) breaks typed loaders: omit them.
    data["panels"] = [_without_nulls(p) for p in data["panels"]]
    data["templating"]["list"] = [_without_nulls(v) for v in data["templating"]["list"]]
    return data


def _without_nulls(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}
