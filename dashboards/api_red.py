"""API RED: request rate, errors and duration of the mesh HTTP API, by route and by zone."""

from __future__ import annotations

from grafanalib.core import Dashboard

from dashboards.layout import Grid, dashboard
from dashboards.panels import (
    MESH,
    RATE,
    mesh_variables,
    query_variable,
    stat,
    steps,
    timeseries,
)

__all__ = ["UID", "build"]

UID = "meshsre-api-red"

_REQ = f'{MESH}, route=~"$route"'
_COUNT = "agentmesh_api_request_duration_seconds_count"
_BUCKET = "agentmesh_api_request_duration_seconds_bucket"
_5XX = 'code=~"5.."'
_QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def _rate(by: str = "", matchers: str = "") -> str:
    sel = f"{_REQ}, {matchers}" if matchers else _REQ
    agg = f"sum by ({by})" if by else "sum"
    return f"{agg} (rate({_COUNT}{{{sel}}}[{RATE}]))"


def _error_ratio(by: str = "") -> str:
    # `or 0 * all` turns "no 5xx series yet" into 0 instead of no data, and the denominator
    # is filtered to > 0 so a window without traffic shows no data rather than NaN.
    return f"({_rate(by, _5XX)} or 0 * {_rate(by)}) / ({_rate(by)} > 0)"


def _quantile(q: float, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({_BUCKET}{{{_REQ}}}[{RATE}])))"


def _overview(g: Grid) -> None:
    g.row("Overview")
    g.add(stat("Request rate", "Requests per second over the selected routes and zones.",
               [(_rate(), "req/s")], "reqps"), 6, 5)
    g.add(stat("Error ratio (5xx)", "Share of requests answered with a 5xx status.",
               [(_error_ratio(), "5xx")], "percentunit",
               thresholds=steps("green", (0.001, "orange"), (0.01, "red"))), 6, 5)
    g.add(stat("Latency p99", "99th percentile request duration over the selected routes.",
               [(_quantile(0.99), "p99")], "s",
               thresholds=steps("green", (0.1, "orange"), (0.5, "red"))), 6, 5)
    g.add(stat("Requests in flight", "Requests being served right now, summed over replicas "
               "(the concurrency limit applies per replica).",
               [(f"sum(agentmesh_http_requests_in_flight{{{MESH}}})", "in flight")], "short"),
          6, 5)


def _rates(g: Grid) -> None:
    g.row("Rate")
    g.add(timeseries("Requests by route", "Requests per second by route template.",
                     [(_rate("route"), "{{route}}")], "reqps", stack=True), 8, 8)
    g.add(timeseries("Requests by zone", "Requests per second by zone (scrape target label).",
                     [(_rate("zone"), "{{zone}}")], "reqps", stack=True), 8, 8)
    g.add(timeseries("Requests by status code", "Requests per second by HTTP status code.",
                     [(_rate("code"), "{{code}}")], "reqps", stack=True), 8, 8)


def _errors(g: Grid) -> None:
    g.row("Errors")
    g.add(timeseries("5xx ratio by route", "Share of each route's requests answered with 5xx.",
                     [(_error_ratio("route"), "{{route}}")], "percentunit", min_value=0,
                     thresholds=steps("green", (0.001, "red"))), 8, 8)
    g.add(timeseries("5xx ratio by zone", "Share of each zone's requests answered with 5xx.",
                     [(_error_ratio("zone"), "{{zone}}")], "percentunit", min_value=0,
                     thresholds=steps("green", (0.001, "red"))), 8, 8)
    g.add(timeseries("4xx by route and code", "Client errors per second: 401/403 are "
                     "signature or admin failures, 409 duplicates, 429 load shedding.",
                     [(_rate("route, code", 'code=~"4.."'), "{{route}} {{code}}")], "reqps",
                     stack=True), 8, 8)


def _durations(g: Grid) -> None:
    g.row("Duration")
    for by in ("route", "zone"):
        for name, q in _QUANTILES:
            g.add(timeseries(f"Latency {name} by {by}",
                             f"{name} request duration by {by}, from the histogram buckets.",
                             [(_quantile(q, by), f"{{{{{by}}}}}")], "s"), 8, 8)


def build() -> Dashboard:
    g = Grid()
    _overview(g)
    _rates(g)
    _errors(g)
    _durations(g)
    route = query_variable("route", "Route",
                           f'label_values({_COUNT}{{job=~"$job"}}, route)', all_value=".*")
    return dashboard(UID, "meshsre / API RED",
                     "Rate, errors and duration of the mesh HTTP API by route and zone.", g,
                     variables=[*mesh_variables(), route], module="dashboards/api_red.py")
