"""Chaos experiments and drills as the report shows them, from ``chaos-<drill>.json`` records
(schema ``meshsre.chaos/v1``, documented in ``chaos/record.py``).

The AZ failure is an *experiment* (a hypothesis held before, during and after a fault); the
backup-restore and revocation runs are *drills* (objectives such as RTO and RPO). A figure a
record does not hold shows as "not recorded", never as a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reports.records import RunRecords

__all__ = ["DISASTERS", "EXPERIMENTS", "Fault", "disasters", "drill_delays",
           "drill_propagation", "drills", "experiments", "faults", "is_experiment"]

EXPERIMENTS = frozenset({"az-failure"})  # the other drills have objectives, not a fault


def is_experiment(drill: str) -> bool:
    """An AZ failure in any mode: az-failure (power), az-failure-blackhole, ..."""
    return any(drill == e or drill.startswith(e + "-") for e in EXPERIMENTS)
# Drills that stop every write on purpose: the store destroyed (backup-restore), or the one
# PostgreSQL primary killed (data-failover: no write commits until a standby is promoted, about
# 10 s, whichever zone the client is in). The outage they cause is judged by their own
# objectives (RTO and RPO; failover time, writes lost, clients recovered), not charged to the
# SLOs: in a night of minutes those 10 s alone would exceed the availability SLOs' budget of a
# month. A zone failure is not one of them: the mesh must keep its SLOs through it. Their
# pages fall inside a fault window all the same.
DISASTERS = frozenset({"backup-restore", "data-failover"})


@dataclass(frozen=True)
class Fault:
    start: float
    end: float | None  # None: never recovered (the rollback failed)
    recovered_at: float | None  # when the clients were back under the SLO limit (TTR)
    label: str


def _m(rec: dict[str, Any]) -> dict[str, Any]:
    return rec.get("measurements") or {}


def faults(run: RunRecords) -> list[Fault]:
    """Every injected fault, for phases and chart bands."""
    out = []
    for rec in run.chaos:
        fault = rec.get("fault") or {}
        if not (is_experiment(rec["drill"]) or rec["drill"] in DISASTERS) or \
                not isinstance(fault.get("started_at"), int | float):
            continue  # the revocation drill revokes credentials: load, not a fault
        start = float(fault["started_at"])
        m = _m(rec)
        ttr = m.get("ttr_seconds", m.get("mesh_recovered_seconds"))
        zone, mode, primary = m.get("zone"), m.get("mode") or "power", m.get("failed_primary")
        how = "down" if mode == "power" else mode
        what = f"zone {zone} {how}" if zone else f"primary {primary} killed" if primary \
            else "store destroyed" if rec["drill"] in DISASTERS \
            else str(fault.get("activity") or "fault")
        out.append(Fault(start, fault.get("ended_at"),
                         start + float(ttr) if isinstance(ttr, int | float) else None,
                         f"{rec['drill']}: {what}"))
    return sorted(out, key=lambda f: f.start)


def disasters(run: RunRecords) -> list[tuple[float, float, str]]:
    """(start, end, drill) of every run of a disaster drill, as its record spans it."""
    return sorted((float(rec["started_at"]), float(rec["ended_at"]), str(rec["drill"]))
                  for rec in run.chaos if rec["drill"] in DISASTERS
                  and isinstance(rec.get("started_at"), int | float)
                  and isinstance(rec.get("ended_at"), int | float))


def _objectives(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": oid, "objective": o.get("target"), "observed": o.get("measured"),
             "passed": o.get("met")} for oid, o in sorted((rec.get("objectives") or {}).items())]


def _hypothesis(node: dict[str, Any] | None) -> dict[str, Any] | None:
    if node is None:
        return None
    probes = node.get("probes") or []
    unmet = [p["name"] for p in probes if not p.get("tolerance_met")]
    detail = (f"{len(probes) - len(unmet)} of {len(probes)} probes within tolerance"
              + (f"; not: {', '.join(unmet)}" if unmet else ""))
    return {"met": node.get("met"), "detail": detail,
            "probes": [{"name": p["name"], "met": p.get("tolerance_met")} for p in probes]}


def _during(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The hypothesis while the fault was on: the clients' error ratio during the failure,
    against the same limit as the steady state."""
    objective = (rec.get("objectives") or {}).get("client-errors-during-failure")
    if objective is None:
        return None
    return {"met": objective.get("met"),
            "detail": f"client error ratio {objective.get('measured')}"
                      f" (limit {objective.get('target')})", "probes": []}


def _common(rec: dict[str, Any]) -> dict[str, Any]:
    return {"name": rec["drill"], "title": rec.get("title"), "path": rec["_path"],
            "status": rec.get("status"), "passed": bool(rec.get("passed")),
            "failures": list(rec.get("failures") or []), "started_at": rec.get("started_at"),
            "ended_at": rec.get("ended_at"), "objectives": _objectives(rec)}


def experiments(run: RunRecords) -> list[dict[str, Any]]:
    out = []
    for rec in run.chaos:
        if not is_experiment(rec["drill"]):
            continue
        m, hyp = _m(rec), rec.get("hypothesis") or {}
        out.append({
            **_common(rec), "fault": rec.get("fault"), "zone": m.get("zone"),
            "mode": m.get("mode") or "power",
            "hypothesis": {"before": _hypothesis(hyp.get("before")), "during": _during(rec),
                           "after": _hypothesis(hyp.get("after"))},
            "ttd_s": m.get("ttd_seconds"), "ttd_alert": m.get("ttd_alert"),
            "ttr_s": m.get("ttr_seconds"),
            "errors_during_failure": m.get("errors_during_failure"),
            "requests_during_failure": m.get("requests_during_failure"),
            "writes_lost": m.get("writes_lost"), "writes_checked": m.get("writes_acknowledged"),
            "zone_restore_s": m.get("zone_restore_seconds"),
            # What the clients saw (chaos.impact): by latency, by kind, and the bound the front
            # door's timeouts allow, with why.
            "ttr_latency_s": m.get("ttr_latency_seconds"),
            "latency_recovered": m.get("latency_recovered"),
            "p99_before_ms": m.get("p99_corrected_before_ms"),
            "p99_worst_ms": m.get("p99_corrected_worst_second_ms"),
            "errors_by_kind": m.get("errors_by_kind"),
            "expected_ttr_s": m.get("expected_ttr_seconds"),
            "expected_ttr_explained": m.get("expected_ttr_explained"),
            "client_timeline": m.get("client_timeline") or [],
            # The Patroni tier across the zone's fault (chaos.datazone); None without one.
            "data": None if "data_role" not in m else {
                k: m.get(k) for k in ("data_role", "data_member", "replication",
                                      "failed_primary", "new_primary", "failover_seconds",
                                      "sql_writes_paused_seconds", "sql_writes_acked",
                                      "sql_writes_lost", "rpo_seconds", "lag_bytes_before",
                                      "lag_bytes_during", "data_tier_whole_again")},
        })
    return out


def drills(run: RunRecords) -> list[dict[str, Any]]:
    out = []
    for rec in run.chaos:
        if is_experiment(rec["drill"]):
            continue
        m = _m(rec)
        out.append({
            **_common(rec), "backend": m.get("backend"),
            "rto_s": m.get("rto_seconds"), "rto_phases": m.get("rto_phases") or {},
            "rpo_s": m.get("rpo_seconds"), "writes_lost": m.get("writes_lost"),
            "writes_lost_before_backup": m.get("writes_lost_before_backup"),
            "writes_checked": m.get("writes_acknowledged"),
            "records_verified": m.get("manifest_match"), "audit_chain_ok": m.get("chain_ok"),
            "audit_length": m.get("chain_length"), "smoke_write": m.get("smoke_write"),
            "failover": None if "failover_seconds" not in m else {
                k: m.get(k) for k in ("replication", "failed_primary", "new_primary",
                                      "failover_seconds", "sql_writes_acked", "writes_lost",
                                      "rpo_seconds", "mesh_writes_lost", "lag_bytes_before",
                                      "lag_bytes_during", "audit_chain_ok", "ttd_seconds",
                                      "ttd_alert", "mesh_recovered_seconds",
                                      "ttr_latency_seconds", "errors_by_kind",
                                      "p99_corrected_worst_second_ms")},
            # What the clients saw across a drill's own fault (chaos.impact), when it has one.
            "fault": rec.get("fault"), "mode": "data" if "failover_seconds" in m else None,
            "client_timeline": m.get("client_timeline") or [],
            "propagation": None if "p99_seconds" not in m else {
                k: m.get(k) for k in ("rounds", "samples", "p50_seconds", "p99_seconds",
                                      "max_seconds", "unpropagated", "goal_seconds",
                                      "goal_met", "prd_limit_seconds", "server_p99_seconds")},
        })
    return out


def drill_propagation(run: RunRecords, le_seconds: float) -> tuple[int, int]:
    """(late, checked) revocation checks of the drills that report only a summary. Late are
    those never enforced; a drill whose worst delay is over ``le_seconds`` cannot say how
    many were late and is left to its own objectives."""
    late = checked = 0
    for rec in run.chaos:
        m = _m(rec)
        samples, worst = m.get("samples"), m.get("max_seconds")
        if not isinstance(samples, int) or not isinstance(worst, int | float) \
                or worst > le_seconds or _delays(rec) is not None:
            continue
        unpropagated = int(m.get("unpropagated") or 0)
        late += unpropagated
        checked += samples + unpropagated
    return late, checked


def _delays(rec: dict[str, Any]) -> list[float | None] | None:
    for activity in rec.get("method") or []:
        output = activity.get("output")
        if isinstance(output, dict) and isinstance(output.get("delays"), list):
            return [None if d is None else float(d) for d in output["delays"]]
    return None


def drill_delays(run: RunRecords) -> list[float | None]:
    """Revocation propagation delays a drill listed one by one (seconds; None: never
    enforced), from the output of its method activities."""
    return [d for rec in run.chaos for d in (_delays(rec) or [])]
