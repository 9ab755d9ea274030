"""Static checks of generated dashboards: every query names only what the mesh (or our rules)
expose, and every panel is import-ready for current Grafana.

Queries are parsed with promql-parser after Grafana's variables are replaced, so a renamed
metric, a misspelt label or a counter plotted without ``rate()`` fails here, not in front of
an on-call engineer.

>>> check_query('sum(rate(agentmesh_handshake_total[$__rate_interval]))')
[]
>>> check_query('agentmesh_handshake_total')
['counter agentmesh_handshake_total is not wrapped in rate(), irate() or increase()']
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import promql_parser as pp

from alerts.catalog import LINKS, sli_windows
from alerts.datatier import SERIES as DATA_TIER_SERIES
from dashboards.layout import SCHEMA_VERSION
from dashboards.panels import DATASOURCE, RATE
from mesh.telemetry import CONTRACT

__all__ = ["KNOWN_SERIES", "check_query", "lint_dashboard", "metric_names", "queries"]

_TARGET_LABELS = frozenset({"job", "instance", "zone", "replica"})
_SLOTH_LABELS = frozenset({"sloth_id", "sloth_service", "sloth_slo", "sloth_window"})
# name -> (labels it may be matched on, or None for any; is it a counter?)
KNOWN_SERIES: dict[str, tuple[frozenset[str] | None, bool]] = {}
for _m in CONTRACT:
    for _sample in _m.samples:
        _bucket = _sample.endswith("_bucket")
        _counter = _m.kind == "counter" or _m.kind == "histogram"
        KNOWN_SERIES[_sample] = (
            frozenset(_m.labels) | _TARGET_LABELS | ({"le"} if _bucket else set()), _counter)
KNOWN_SERIES["up"] = (_TARGET_LABELS, False)
KNOWN_SERIES["scrape_duration_seconds"] = (_TARGET_LABELS, False)  # Prometheus's, per target
KNOWN_SERIES["ALERTS"] = (None, False)  # alert labels vary by rule
for _name in DATA_TIER_SERIES:  # Patroni's and etcd's own, scraped per member
    KNOWN_SERIES[_name] = (_TARGET_LABELS | {"member"}, False)
for _rule in (*(f"slo:sli_error:ratio_rate{w}" for w in sli_windows()), "slo:objective:ratio",
              "slo:error_budget:ratio", "slo:current_burn_rate:ratio",
              "slo:period_error_budget_remaining:ratio", "sloth_slo_info"):
    KNOWN_SERIES[_rule] = (None if _rule == "sloth_slo_info" else _SLOTH_LABELS, False)

_RATE_FUNCS = frozenset({"rate", "irate", "increase"})
# A range no hand-written query would use: after substitution it marks $__rate_interval.
_SENTINEL = timedelta(seconds=4321)
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_COLUMNS = 24


def _parse(expr: str) -> Any:
    """Parse a query as Grafana would send it: the rate interval becomes the sentinel range,
    other variables a match-anything regex (they only appear in label matchers)."""
    return pp.parse(_VARIABLE.sub(".*", expr.replace(RATE, f"{int(_SENTINEL.total_seconds())}s")))


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a query."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, pp.VectorSelector) and node.name:
            names.add(node.name)

    pp.walk(_parse(expr), visit)
    return names


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query of a dashboard: panels, annotations, variables."""
    for p in _panels(board):
        for t in p.get("targets") or []:
            yield f"panel {p.get('title')!r} query {t.get('refId')}", t.get("expr", "")
    for a in board.get("annotations", {}).get("list", []):
        yield f"annotation {a.get('name')!r}", a.get("expr", "")
    for v in board.get("templating", {}).get("list", []):
        match = _LABEL_VALUES.match(str(v.get("query", ""))) if v.get("type") == "query" else None
        if match:
            yield f"variable {v.get('name')}", match.group("selector")


def _series(name: str) -> tuple[frozenset[str] | None, bool] | None:
    if name.startswith("haproxy_"):  # the front door's own exporter
        return None, name.endswith("_total")
    return KNOWN_SERIES.get(name)


def check_query(expr: str, *, rates: bool = True) -> list[str]:
    """Problems with one PromQL query as Grafana would send it (variables substituted).

    ``rates=False`` skips the counter rule, for label_values() selectors of variables.
    """
    try:
        tree = _parse(expr)
    except ValueError as exc:
        return [f"cannot parse {expr!r}: {exc}"]
    problems: list[str] = []
    stack: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, pp.MatrixSelector) and node.range != _SENTINEL:
            problems.append(f"fixed range [{pp.display_duration(node.range)}] in {expr!r}: "
                            f"use [{RATE}]")
        if isinstance(node, pp.VectorSelector):
            problems.extend(_check_selector(node, stack, rates))
        stack.append(node)

    def leave(_node: Any) -> None:
        stack.pop()

    pp.walk(tree, visit, leave)
    return problems


def _check_selector(node: Any, stack: list[Any], rates: bool) -> Iterator[str]:
    name = node.name
    if not name:
        yield "selector without a literal metric name"
        return
    known = _series(name)
    if known is None:
        yield f"unknown metric {name}: not in mesh.telemetry, up, scrape_duration_seconds,"
        " ALERTS or the slo:* rules"
        return
    labels, counter = known
    for matcher in node.matchers.matchers:
        if labels is not None and matcher.name not in labels:
            yield f"metric {name} has no label {matcher.name!r}"
    if not rates:
        return
    in_range_func = (len(stack) >= 2 and isinstance(stack[-1], pp.MatrixSelector)
                     and isinstance(stack[-2], pp.Call) and stack[-2].func.name in _RATE_FUNCS)
    if counter and not in_range_func:
        yield f"counter {name} is not wrapped in rate(), irate() or increase()"
    if not counter and in_range_func:
        yield f"{stack[-2].func.name}() of {name}, which is not a counter"


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def _check_panel(p: dict[str, Any]) -> Iterator[str]:
    pos = p.get("gridPos")
    if not (isinstance(pos, dict) and all(isinstance(pos.get(k), int) for k in "hwxy")):
        yield "no explicit gridPos"
    elif pos["w"] <= 0 or pos["h"] <= 0 or pos["x"] < 0 or pos["x"] + pos["w"] > _COLUMNS:
        yield f"gridPos {pos} does not fit the {_COLUMNS}-column grid"
    if p.get("type") == "row":
        return
    if p.get("datasource") != DATASOURCE:
        yield f"datasource {p.get('datasource')!r} is not {DATASOURCE}"
    if not p.get("description"):
        yield "no description"
    if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
        yield "no unit"
    targets = p.get("targets") or []
    if not targets:
        yield "no queries"
    ref_ids = [t.get("refId") for t in targets]
    if len(set(ref_ids)) != len(ref_ids):
        yield f"duplicate refIds {ref_ids}"
    for t in targets:
        if t.get("datasource") != DATASOURCE:
            yield f"query {t.get('refId')}: datasource {t.get('datasource')!r} is not {DATASOURCE}"
        yield from check_query(t.get("expr", ""))
    for link in p.get("links", []):
        url = link.get("url", "")
        if link.get("title", "").startswith("Runbook") and LINKS.alert_of(url) is None:
            yield f"runbook link {url!r} does not fit the catalog's pattern {LINKS.runbook}"


def _overlaps(panels: list[dict[str, Any]]) -> Iterator[str]:
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        pos = p.get("gridPos") or {}
        if not all(isinstance(pos.get(k), int) for k in "hwxy"):
            continue
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                if (x, y) in cells:
                    yield f"panel {p.get('title')!r} overlaps {cells[(x, y)]!r}"
                    return
                cells[(x, y)] = str(p.get("title"))


def _check_variables(board: dict[str, Any]) -> Iterator[str]:
    variables = board.get("templating", {}).get("list", [])
    if not any(v.get("name") == "datasource" and v.get("type") == "datasource"
               and v.get("query") == "prometheus" for v in variables):
        yield "no `datasource` variable of type datasource (prometheus)"
    for v in variables:
        if v.get("type") != "query":
            continue
        if v.get("datasource") != DATASOURCE:
            yield f"variable {v.get('name')}: datasource is not {DATASOURCE}"
        match = _LABEL_VALUES.match(str(v.get("query", "")))
        if match is None:
            yield f"variable {v.get('name')}: query is not label_values(selector, label)"
        else:
            yield from (f"variable {v.get('name')}: {p}"
                        for p in check_query(match.group("selector"), rates=False))


def lint_dashboard(board: dict[str, Any]) -> list[str]:
    """Every problem found, each prefixed with the dashboard uid and panel title."""
    uid = board.get("uid")
    where = f"dashboard {uid}"
    problems = []
    if not isinstance(uid, str) or not _UID.match(uid):
        problems.append(f"{where}: uid must be 1-40 of [A-Za-z0-9_-]")
    if board.get("id") is not None:
        problems.append(f"{where}: id must be null so Grafana matches on uid")
    if board.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"{where}: schemaVersion {board.get('schemaVersion')} "
                        f"is not {SCHEMA_VERSION}")
    problems += [f"{where}: {p}" for p in _check_variables(board)]
    for a in board.get("annotations", {}).get("list", []):
        if a.get("datasource") != DATASOURCE:
            problems.append(f"{where}: annotation {a.get('name')!r}: datasource is not "
                            f"{DATASOURCE}")
        problems += [f"{where}: annotation {a.get('name')!r}: {p}"
                     for p in check_query(a.get("expr", ""))]
    panels = list(_panels(board))
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"{where}: panel ids must be unique and set, got {ids}")
    for p in panels:
        problems += [f"{where}: panel {p.get('title')!r}: {msg}" for msg in _check_panel(p)]
    problems += [f"{where}: {msg}" for msg in _overlaps(panels)]
    return problems
