"""The governance sidecars as the report shows them, from ``governance.json`` records
(``loadtests.governance``) and the sidecar figures of the revocation drills.

Two objectives: the catalog's governance overhead (sidecar p99 minus direct p99, over the
quiet part of the run) and revocation to enforcement on every sidecar within the PRD's 5 s.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from alerts.catalog import GOVERNANCE_OVERHEAD
from reports.records import RunRecords

__all__ = ["breaches", "section"]


def _name(url: str) -> str:
    return urlsplit(url).netloc or url


def section(run: RunRecords) -> dict[str, Any]:
    jobs = []
    for rec in run.governance:
        jobs.append({
            "name": rec["name"], "path": rec["_path"], "started_at": rec["started_at"],
            "ended_at": rec["ended_at"], "parameters": rec["parameters"],
            "overhead": rec["overhead"], "while_revoking": rec["overhead_while_revoking"],
            "revocation": rec["revocation"], "passed": rec["passed"],
            "probe_errors": rec["probe_errors"],
            "sidecars": [{**row, "name": _name(row["url"])} for row in rec["sidecars"]]})
    drills = []
    for rec in run.chaos:
        sidecars = (rec.get("measurements") or {}).get("sidecars")
        if isinstance(sidecars, dict):
            rows = sidecars.get("per_sidecar") or []
            # In the order they ran (the record's keys are sorted): with, without, restored.
            order = list(dict.fromkeys(r["phase"] for r in rows))
            phases = [{"phase": p, **sidecars["phases"][p]} for p in order
                      if p in sidecars.get("phases", {})]
            drills.append({"drill": rec["drill"], "phases": phases, "per_sidecar": rows})
    return {"objective": {"id": GOVERNANCE_OVERHEAD.id, "title": GOVERNANCE_OVERHEAD.title,
                          "description": GOVERNANCE_OVERHEAD.description,
                          "max_p99_ms": GOVERNANCE_OVERHEAD.max_p99_ms,
                          "goal_p99_ms": GOVERNANCE_OVERHEAD.goal_p99_ms},
            "jobs": jobs, "drills": drills}


def breaches(governance: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for job in governance["jobs"]:
        o, r = job["overhead"], job["revocation"]
        if o["objective"]["met"] is False:
            out.append({"kind": "slo", "id": GOVERNANCE_OVERHEAD.id,
                        "detail": f"{job['name']}: sidecar p99 {o['via_sidecar']['p99_ms']} ms"
                                  f" minus direct p99 {o['direct']['p99_ms']} ms ="
                                  f" {o['p99_overhead_ms']} ms, over"
                                  f" {GOVERNANCE_OVERHEAD.max_p99_ms:g} ms"})
        if r["samples"] + r["unenforced"] and not r["met"]:
            out.append({"kind": "drill", "id": "sidecar-revocation",
                        "detail": f"{job['name']}: p99 {r['p99_s']} s, {r['unenforced']} never"
                                  f" enforced (objective {r['objective_s']:g} s)"})
    return out
