"""What the clients saw across a fault (a zone's, or the data tier's primary killed), from the
stopped load's record (``load.json``).

Per second, the worst route's p99 *corrected* latency (from the intended send time, so a
stalled connection counts for every request queued behind it: no coordinated omission) and
the failed requests by kind: timeouts, refused or reset connections, 5xx answers.

Time to recover by latency runs from the fault's start to the end of the last second of the
observed failure whose p99 was above the latency limit: ``LATENCY_FACTOR`` times the worst
second of the ``BASELINE_S`` seconds before the fault, and never under ``LATENCY_FLOOR_MS``
(a few milliseconds of jitter on an idle machine are not an outage). When the last
``settle`` seconds are still above it, the clients had not recovered while the fault lasted:
that is a gray failure the front door does not route around.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

from chaos import runstate
from chaos.load import RECORD
from loadtests.record import read as read_load

__all__ = ["BASELINE_S", "LATENCY_FACTOR", "LATENCY_FLOOR_MS", "client_impact", "expected",
           "impact"]

BASELINE_S = 10
LATENCY_FACTOR = 3.0
LATENCY_FLOOR_MS = 100.0


def _p99(row: Mapping[str, Any]) -> float:
    routes = row.get("routes") or {}
    return max((float(r.get("p99_corrected_ms") or 0.0) for r in routes.values()), default=0.0)


def impact(series: Sequence[Mapping[str, Any]], fault_at: float, seconds: float,
           settle: float) -> dict[str, Any]:
    """The client-side figures of one fault (see the module's description)."""
    end = fault_at + seconds
    before = [r for r in series if fault_at - BASELINE_S <= r["t"] < int(fault_at)]
    during = [r for r in series if int(fault_at) <= r["t"] < end]
    baseline = max((_p99(r) for r in before), default=0.0)
    limit = max(LATENCY_FACTOR * baseline, LATENCY_FLOOR_MS)
    slow = [r["t"] for r in during if _p99(r) > limit]
    kinds: Counter[str] = Counter()
    for r in during:
        kinds.update(r.get("errors") or {})
    recovered = not slow or slow[-1] + 1 <= end - settle
    ttr = round(max(0.0, slow[-1] + 1 - fault_at), 1) if slow and recovered else 0.0
    p99s = sorted(_p99(r) for r in during)
    return {
        "latency_limit_ms": round(limit, 1),
        "p99_corrected_before_ms": round(baseline, 1),
        "p99_corrected_worst_second_ms": round(p99s[-1], 1) if p99s else None,
        "p99_corrected_median_second_ms": round(p99s[len(p99s) // 2], 1) if p99s else None,
        "slow_seconds": len(slow),
        "ttr_latency_seconds": ttr if recovered else None,
        "latency_recovered": recovered,
        "errors_by_kind": {k: kinds.get(k, 0) for k in ("timeout", "refused", "reset", "5xx",
                                                        "other")},
        "timeline": [{"t": r["t"], "p99_corrected_ms": round(_p99(r), 1),
                      "requests": r.get("requests", 0), "failures": r.get("failures", 0)}
                     for r in series if fault_at - BASELINE_S <= r["t"] < end + BASELINE_S],
    }


def expected(mode: str, door: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """The time to recover the front door's settings allow in ``mode`` (None: no bound, the
    fault lasts as long as it is on), and why, quoting the settings."""
    if mode == "data":
        return None, ("the PostgreSQL primary is gone in every zone at once: no write commits"
                      " until Patroni promotes a standby and the front door's PostgreSQL"
                      " frontend, checking each member's /primary, moves to it (the failover"
                      " time); the replicas' breaker then lets a call through within 1 s")
    if not door:
        return None, "the front door's settings are not known on this platform"
    c, f, fall = door["timeout_check"], door["check_fastinter"], door["fall"]
    down = round(fall * (c + f), 2)
    server, connect = door["timeout_server"], door["timeout_connect"]
    marked = (f"HAProxy marks the zone's servers down after fall={fall} failed checks, each"
              f" waiting timeout check {c:g} s, fastinter {f:g} s apart: about {down:g} s")
    if mode == "power":
        return down, (f"a killed replica refuses connections at once and HAProxy retries them"
                      f" elsewhere (retries {door['retries']}, redispatch); {marked}, and only"
                      " requests in flight at the kill fail")
    if mode == "blackhole":
        bound = round(down + server, 2)
        return bound, (f"{marked}. Until then a request on a new connection waits timeout"
                       f" connect {connect:g} s and is redispatched; one on a kept-alive"
                       f" connection waits timeout server {server:g} s, then is retried elsewhere"
                       " if safe (GET, credential verify) or answered 504. Expected time to"
                       f" recover: at most {down:g} + {server:g} = {bound:g} s")
    if mode == "partition":
        bound = round(down + server, 2)
        return bound, (f"the zone's replicas still answer the front door but no longer reach a"
                       f" store on the network (a SQLite file is not cut): their store calls"
                       f" time out, their readiness fails and {marked} after that; a request one"
                       f" of them took meanwhile fails with a 5xx or is cut at timeout server"
                       f" {server:g} s. Expected time to recover: at most {down:g} + {server:g}"
                       f" = {bound:g} s after the store calls start failing")
    return None, ("packets are lost at random: most health checks pass, so HAProxy keeps the"
                  " zone in rotation and no timeout fires; clients see retransmission delays"
                  " (200 ms and more) for as long as the fault lasts")


def client_impact(settle: float = 5.0, mode: str = "",
                  configuration: Mapping[str, Any] | None = None,
                  secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Latency and errors by kind across the fault, once the load has stopped; recorded as the
    drill's measurements, never failing it (the hypothesis and the objectives judge). The
    fault is on for the seconds the drill observed it, else (a fault only the rollback ends,
    as the data tier's) until the load stopped; ``mode`` names it when the drill notes none."""
    notes = runstate.notes(configuration)
    fault_at = (notes.get("fault") or {}).get("started_at")
    measured = notes.get("measurements") or {}
    load_dir = (notes.get("load") or {}).get("dir")
    if fault_at is None or not load_dir:
        raise ActivityFailed("no fault or load was recorded for this run")
    path = Path(load_dir) / RECORD
    if not path.exists():
        raise ActivityFailed(f"the load's record is not there yet ({path}): stop the load first")
    series = read_load(path)["series"]
    seconds = measured.get("observed_seconds")
    if seconds is None:
        if not series:
            raise ActivityFailed(f"the load recorded no requests ({path})")
        seconds = series[-1]["t"] + 1 - float(fault_at)
    result = impact(series, float(fault_at), float(seconds), float(settle))
    bound, why = expected(str(measured.get("mode") or mode or "power"), measured.get("front_door"))
    result |= {"expected_ttr_seconds": bound, "expected_ttr_explained": why}
    notes.merge("measurements", {k: v for k, v in result.items() if k != "timeline"})
    notes.merge("measurements", {"client_timeline": result["timeline"]})
    return result
