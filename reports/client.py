"""The load generator's view of a run, from its load records: phases, SLIs, generator health.

A load record keeps exact whole-run latency summaries, but per second only each route's p50,
p95, p99 and corrected p99 (coordinated omission corrected: from the intended send time). A
phase (baseline, fault, recovery) is a span of seconds, so its percentiles are *estimated*:
each (second, route) cell stands for its requests as weighted points at its own quantiles
(half at p50, 45% at p95, 5% at p99), and the phase quantile is the weighted quantile of all
points. It lands within the spread of the cells' own quantiles; the worst second's p99 is
exact. The corrected view uses the same points with the top 5% at the corrected p99.

>>> weighted_quantile([(1.0, 1), (2.0, 1), (10.0, 2)], 0.5)
2.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reports.chaos import Fault
from reports.records import LoadRecord

__all__ = ["Window", "client_counts", "generator_health", "phase_stats", "phases",
           "probe_delays", "second_quantile", "weighted_quantile"]

_POINTS = ((0.50, "p50_ms"), (0.45, "p95_ms"), (0.05, "p99_ms"))


@dataclass(frozen=True)
class Window:
    name: str  # baseline, fault, recovery; "whole run" when no fault happened during the load
    start: float
    end: float


def weighted_quantile(points: Iterable[tuple[float, float]], q: float) -> float | None:
    """Nearest-rank quantile of (value, weight) points; None when there is no weight."""
    ordered = sorted(p for p in points if p[1] > 0)
    total = sum(w for _, w in ordered)
    if not total:
        return None
    rank, seen = q * total, 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= rank - 1e-9:
            return value
    return ordered[-1][0]


def _points(cells: Iterable[dict[str, Any]], corrected: bool) -> list[tuple[float, float]]:
    out = []
    for cell in cells:
        n = cell["requests"]
        for share, key in _POINTS:
            if corrected and key == "p99_ms":
                key = "p99_corrected_ms"
            out.append((float(cell[key]), share * n))
    return out


def _cells(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [cell for row in rows for cell in row["routes"].values() if cell["requests"]]


def second_quantile(row: dict[str, Any], q: float, corrected: bool = False) -> float | None:
    """One second's estimated quantile over all its routes (ms)."""
    return weighted_quantile(_points(_cells([row]), corrected), q)


def _rows(load: LoadRecord, start: float, end: float) -> list[dict[str, Any]]:
    return [r for r in load.data["series"] if start <= r["t"] < end]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def phase_stats(load: LoadRecord, window: Window) -> dict[str, Any]:
    rows = _rows(load, window.start, window.end)
    cells = _cells(rows)
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["server_errors"] for r in rows)
    offered = sum(r["offered"] for r in rows)
    seconds = max(len(rows), 1)
    worst = [q for r in rows if (q := second_quantile(r, 0.99)) is not None]
    worst_corrected = [q for r in rows if (q := second_quantile(r, 0.99, True)) is not None]
    return {
        "phase": window.name, "load": load.name, "start": window.start, "end": window.end,
        "seconds": len(rows), "requests": requests, "server_errors": errors,
        "error_ratio": round(errors / requests, 6) if requests else None,
        "rps": round(requests / seconds, 2), "offered": offered,
        "late": sum(r["late"] for r in rows), "dropped": sum(r["dropped"] for r in rows),
        "service_ms": {"p50": _round(weighted_quantile(_points(cells, False), 0.5)),
                       "p99": _round(weighted_quantile(_points(cells, False), 0.99)),
                       "p99_worst_second": _round(max(worst, default=None))},
        "corrected_ms": {"p99": _round(weighted_quantile(_points(cells, True), 0.99)),
                         "p99_worst_second": _round(max(worst_corrected, default=None))},
    }


def phases(load: LoadRecord, faults: Sequence[Fault]) -> list[Window]:
    """Baseline, fault and recovery around the first fault inside the load's span; one
    "whole run" window when no fault happened while it ran. The fault phase ends when the
    clients recovered (time to recover), else when the fault was undone: what follows is
    recovery, even while the failed zone is still down."""
    start, end = math.floor(load.started), math.ceil(load.ended) + 1
    inside = [f for f in faults if f.start < end and (f.end is None or f.end > start)]
    if not inside:
        return [Window("whole run", start, end)]
    fault = inside[0]
    f_start = math.floor(fault.start)
    over = fault.recovered_at if fault.recovered_at is not None else fault.end
    f_end = end if over is None else min(end, max(math.ceil(over), f_start + 1))
    out = [Window("baseline", start, f_start), Window("fault", f_start, f_end),
           Window("recovery", f_end, end)]
    return [w for w in out if w.end > w.start]


def client_counts(loads: Sequence[LoadRecord], slo_id: str,
                  only: str = "") -> tuple[float, float, str] | None:
    """(bad, total, basis) of one SLO over every load record that judged it (on the basis
    ``only``, when given: "server" is the mesh's /metrics as the load test read them)."""
    bad = total = 0.0
    basis = ""
    for load in loads:
        for t in load.data["thresholds"]:
            if t["id"] != slo_id or not t["events"] or t["observed"] is None:
                continue
            if only and t.get("basis", "client") != only:
                continue
            events, observed = float(t["events"]), float(t["observed"])
            bad += round(observed * events) if t["kind"] == "error_ratio" else \
                round((1 - observed) * events)
            total += events
            basis = t.get("basis", "client")
    return (bad, total, basis) if total else None


def probe_delays(loads: Sequence[LoadRecord]) -> list[float | None]:
    return [c["seconds"] for load in loads for c in load.data["revocation"]["checks"]]


def generator_health(load: LoadRecord) -> dict[str, Any]:
    gen, totals = load.data["generator"], load.data["totals"]
    processes = gen.get("processes", {})
    return {
        "load": load.name,
        "cpu_percent_max": max((p["cpu_percent_max"] for p in processes.values()), default=0),
        "cpu_percent_mean": max((p["cpu_percent_mean"] for p in processes.values()),
                                default=0),
        "saturated": bool(gen.get("saturated")),
        "requests_per_cpu_second": gen.get("requests_per_cpu_second"),
        "offered": totals["offered"], "late": totals["late"], "dropped": totals["dropped"],
        "late_ratio": round(totals["late"] / totals["requests"], 6) if totals["requests"] else 0,
        "dropped_ratio": totals["dropped_ratio"],
        "workers": gen.get("workers", {}),
        "warnings": list(load.data["verdict"].get("warnings", [])),
        "valid": bool(load.data["verdict"].get("valid", True)),
    }
