"""One row per SLO: the objective, the load generator's view, the server's view, budget spent,
peak burn rate, and the verdict.

The server view is the catalog's SLI from Prometheus over the judged part of the run; the
client view is what the load generator (and the revocation probes) measured while it ran.
Each can see failures the other cannot (a replica never counts the requests that never
reached it; a client sees nothing it did not send), so an SLO is met only when every view
that has data meets it. The two are compared over the same windows (the load tests' spans),
and a gap of more than one percentage point is a disagreement: one measurement is wrong.

A latency SLI is timed inside the server; the client cannot measure it (its times include
HTTP and the network), so for latency SLOs the client's figures are shown, never judged.
The judged part of the run leaves out disaster drills (``reports.chaos.DISASTERS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alerts.catalog import CATALOG, SLO
from loadtests.thresholds import OVERHEAD_ROUTE, threshold_for
from reports.client import client_counts
from reports.records import LoadRecord
from reports.server import Counts, ServerView

__all__ = ["DISAGREEMENT_POINTS", "slo_rows"]

DISAGREEMENT_POINTS = 1.0  # percentage points between the client and server SLIs
_BASIS = {"client": "load generator", "probe": "revocation probes",
          "server": "the mesh's /metrics, read by the load test"}
Windows = Sequence[tuple[float, float]]


def _view(counts: Counts | None, basis: str = "") -> dict[str, Any] | None:
    if counts is None or counts.total <= 0:
        return None
    ratio = counts.good_ratio
    return {"good_ratio": None if ratio is None else round(ratio, 6),
            "bad": round(counts.bad, 3), "total": round(counts.total, 3),
            **({"basis": _BASIS.get(basis, basis)} if basis else {})}


def _met(view: Mapping[str, Any] | None, slo: SLO) -> bool | None:
    if view is None or view["good_ratio"] is None:
        return None
    return bool(view["good_ratio"] >= slo.ratio)


def _latency_note(loads: Sequence[LoadRecord]) -> str:
    cells = [r for ld in loads if (r := ld.data["totals"]["routes"].get("POST /v1/policy/decide"))]
    if not cells:
        return ""
    worst = max(cells, key=lambda r: r["service_ms"]["p99"])
    note = (f"load generator: p99 {worst['service_ms']['p99']:.2f} ms service time,"
            f" {worst['corrected_ms']['p99']:.2f} ms from the intended send time (HTTP and"
            " network included: shown, not judged)")
    idle = [r for ld in loads if (r := ld.data["totals"]["routes"].get(OVERHEAD_ROUTE))]
    if idle:
        worst = max(idle, key=lambda r: r["service_ms"]["p99"])
        note += (f"; the client's own overhead ({OVERHEAD_ROUTE}, no work in the server)"
                 f" p99 {worst['service_ms']['p99']:.2f} ms")
    return note


def _client(slo: SLO, loads: Sequence[LoadRecord], extra: Counts | None) -> dict[str, Any] | None:
    found = client_counts(loads, slo.id)
    counts = Counts(found[0], found[1]) if found else None
    if extra is not None and extra.total:
        counts = extra if counts is None else counts + extra
    return _view(counts, found[2] if found else "probe")


def _row(slo: SLO, loads: Sequence[LoadRecord], server: ServerView | None, judged: Windows,
         burns: Mapping[str, list[tuple[float, float]]], extra: Counts | None) -> dict[str, Any]:
    threshold = threshold_for(slo)
    latency = threshold is not None and threshold.kind == "latency"
    client = None if latency else _client(slo, loads, extra)
    whole = same = None
    if server is not None:
        whole = _view(server.counts_over(slo, judged))
        if loads:
            same = _view(server.counts_over(slo, [(ld.started, ld.ended) for ld in loads]))
    elif latency and (found := client_counts(loads, slo.id, only="server")):
        # No Prometheus: the load tests' own reading of the mesh's histogram is the server's.
        whole = _view(Counts(found[0], found[1]), "server")
    delta = None
    if client and same and client["good_ratio"] is not None and same["good_ratio"] is not None:
        delta = round((client["good_ratio"] - same["good_ratio"]) * 100, 3)
    views = {"client": _met(client, slo), "server": _met(whole, slo)}
    judged_views = [v for v in views.values() if v is not None]
    verdict = "no data" if not judged_views else "met" if all(judged_views) else "breached"
    spent_on = whole or client
    consumed = None
    if spent_on is not None and spent_on["good_ratio"] is not None:
        consumed = round((1 - spent_on["good_ratio"]) / slo.error_budget, 4)
    burn = [v for _, v in burns.get(slo.id) or []]
    return {
        "id": slo.id, "title": slo.title, "description": slo.description,
        "objective": slo.objective, "error_budget": slo.error_budget, "window": slo.window,
        "client": client, "server": whole, "server_same_windows": same,
        "delta_points": delta,
        "disagree": delta is not None and abs(delta) > DISAGREEMENT_POINTS,
        "budget_consumed": consumed,
        "peak_burn_rate": round(max(burn), 3) if burn else None,
        "breached_by": sorted(k for k, v in views.items() if v is False),
        "verdict": verdict, "note": _latency_note(loads) if latency else "",
    }


def slo_rows(loads: Sequence[LoadRecord], server: ServerView | None, judged: Windows,
             burns: Mapping[str, list[tuple[float, float]]],
             propagation: Counts | None = None,
             catalog: Sequence[SLO] = CATALOG) -> list[dict[str, Any]]:
    """Every SLO of the catalog over the ``judged`` windows; ``loads`` are the load tests
    inside them and ``burns`` the burn rates measured there. Revocation checks made by drills
    (``propagation``) join the probes'."""
    rows = []
    for slo in catalog:
        threshold = threshold_for(slo)
        extra = propagation if threshold is not None and threshold.kind == "propagation" \
            else None
        rows.append(_row(slo, loads, server, judged, burns, extra))
    return rows
