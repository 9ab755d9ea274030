"""Steady-state probes, with tolerances taken from the SLO catalog rather than typed in.

"Steady" means nobody would be paged: an SLO's error ratio over the last minute stays under its
error budget times the fastest page's burn-rate factor (14.4 for a 30-day SLO, from
``alerts.windows``). At 99.9% that allows 1.44% errors in a minute; a stricter bound would
flap on one error at a drill's request rates, a looser one would hide an outage.

Each probe returns the numbers and a ``within`` flag, and the experiments hold them to it with
the ``within_limit`` tolerance, so the journal shows what was measured, not only whether it
passed. (A jsonpath tolerance would do the same but needs the optional ``jsonpath2``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests import RequestException

from alerts.catalog import CATALOG, SLO, burn_rate_windows
from chaos import load, runstate
from mesh.platforms import get_platform

__all__ = ["client_within", "front_door_ready", "limit_of", "page_factor", "query",
           "replicas_ready", "slo", "slo_within", "within_limit"]


def within_limit(value: Mapping[str, Any] | None = None) -> bool:
    """Tolerance of every steady-state probe here: Chaos Toolkit passes the probe's output."""
    return bool((value or {}).get("within"))


def slo(slo_id: str) -> SLO:
    for candidate in CATALOG:
        if candidate.id == slo_id:
            return candidate
    raise ActivityFailed(f"no SLO {slo_id!r} in the catalog: {', '.join(s.id for s in CATALOG)}")


def page_factor(objective: SLO) -> float:
    """The burn-rate factor of the SLO's fastest paging alert."""
    return burn_rate_windows(objective.window)[0].factor


def limit_of(objective: SLO, factor: float | None = None) -> float:
    return round(min(1.0, objective.error_budget * (factor or page_factor(objective))), 10)


def query(configuration: Mapping[str, Any] | None, promql: str) -> float | None:
    url = runstate.cluster_setting(configuration, "prometheus_url", "PROMETHEUS_URL")
    if not url:
        raise ActivityFailed("no Prometheus to ask: set PROMETHEUS_URL")
    try:
        result = PrometheusConnect(url=url, disable_ssl=True).custom_query(promql)
    except (PrometheusApiClientException, RequestException) as exc:
        raise ActivityFailed(f"Prometheus at {url}: {exc}") from exc
    return float(result[0]["value"][1]) if result else None


def slo_within(slo_id: str, window: str = "1m", factor: float | None = None,
               configuration: Mapping[str, Any] | None = None,
               secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The SLO's error ratio over the window, from the mesh's own metrics in Prometheus."""
    objective = slo(slo_id)
    limit = limit_of(objective, factor)
    ratio = query(configuration, objective.sli.error_ratio(window))
    events = query(configuration, f"sum(increase({objective.sli.total}[{window}]))") or 0.0
    # No events is not steady: the load runs throughout, so silence means the metrics are lost.
    within = ratio is not None and ratio <= limit
    return {"slo": slo_id, "window": window, "error_ratio": ratio, "events": round(events, 1),
            "limit": limit, "factor": factor or page_factor(objective), "within": within}


def client_within(window: float = 30.0, factor: float | None = None,
                  configuration: Mapping[str, Any] | None = None,
                  secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The load's own view of the last ``window`` seconds it ran: every failed request counts
    (5xx, the front door's 503s, transport errors, wrong answers), against the API
    availability SLO's limit."""
    noted = runstate.notes(configuration).get("load")
    if not noted:
        raise ActivityFailed("no load was started for this run (is the chaos.load control on?)")
    # `--var` values arrive as text
    view = load.client_view(load.history(Path(noted["dir"])), float(window))
    limit = limit_of(slo("api-availability"), factor)
    ratio = view.error_ratio
    return {**view.as_json(), "limit": limit, "within": ratio is not None and ratio <= limit}


def front_door_ready(configuration: Mapping[str, Any] | None = None,
                     secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The front door answers ready (a replica behind it reaches the store)."""
    with runstate.mesh_client(configuration, secrets) as client:
        try:
            status = client.get("/health/ready").status_code
        except httpx.HTTPError as exc:
            return {"status": None, "error": f"{type(exc).__name__}: {exc}", "within": False}
    return {"status": status, "within": status == 200}


def replicas_ready(require_all: bool = False, configuration: Mapping[str, Any] | None = None,
                   secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every replica the platform knows, with its zone and readiness; within when at least one
    (or, with require_all, every one) is ready."""
    replicas = get_platform().replicas()
    ready = [r for r in replicas if r.ready]
    zones = sorted({r.zone for r in ready})
    return {"total": len(replicas), "ready": len(ready), "zones_ready": zones,
            "all_ready": bool(replicas) and len(ready) == len(replicas),
            "replicas": [r.to_dict() for r in replicas],
            "within": len(ready) == len(replicas) > 0 if require_all else bool(ready)}
