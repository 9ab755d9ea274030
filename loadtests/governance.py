"""The governance job: agents calling a tool through their sidecars under load, with
revocations made throughout; what governance costs a call and how fast each sidecar enforces
a revocation. Writes ``reports/out/<run-id>/<name>/governance.json`` beside Locust's
``load.json``.

``governance.json`` (schema ``meshsre.governance/v1``; all fields always present):
- ``schema``, ``schema_version``, ``kind`` ("governance"), ``run_id``, ``name``,
  ``started_at``, ``ended_at``, ``duration_s``, ``parameters`` (sidecars, upstream, replicas,
  users, rate, duration, revoke_every)
- ``overhead``: over the quiet first part of the run (no revocations yet), per path
  (``via_sidecar``, ``direct``) requests, failures, p50/p99 ms, and ``p99_overhead_ms``
  (sidecar p99 minus direct p99), ``p50_overhead_ms``, ``p99_ratio`` (sidecar p99 over direct
  p99), ``objective`` (the catalog's ``GOVERNANCE_OVERHEAD``: id, max_p99_ms, met, and the
  bench's goal_p99_ms, goal_met);
  ``overhead_while_revoking``: the same figures over the rest, shown, not judged (a
  revocation costs the next call a fresh decision, at a rate no agent sees)
- ``sidecars``: one row each: url, revocations (samples, p50_s, p99_s, max_s, unenforced,
  delays, channels), governance_p99_ms (time inside the sidecar, from its own histogram),
  outcomes (calls by outcome, from its metrics)
- ``revocation``: over every sidecar: samples, p50_s, p99_s, max_s, unenforced, objective
  (the PRD's 5 s), goal (1 s), met
- ``load``: the load record's path, relative to this one; ``probe_errors``; ``passed``
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from alerts.catalog import GOVERNANCE_OVERHEAD
from loadtests import record
from loadtests.revocation import Enforcement, ProbeError, SidecarProbe
from loadtests.run import LoadRun, parse_duration, run
from loadtests.sli import Snapshot, scrape
from meshsre import runrecord

__all__ = [
    "DIRECT",
    "GOAL_S",
    "PRD_LIMIT_S",
    "REVOKING",
    "SCHEMA",
    "VIA_SIDECAR",
    "GovernanceRun",
    "histogram_quantile",
    "nearest_rank",
    "overhead",
    "read",
    "run_governance",
    "table",
]

SCHEMA, SCHEMA_VERSION = "meshsre.governance/v1", 1
RECORD_NAME = "governance.json"
FIELDS = ("schema", "schema_version", "kind", "run_id", "name", "started_at", "ended_at",
          "duration_s", "parameters", "overhead", "overhead_while_revoking", "sidecars",
          "revocation", "load",
          "probe_errors", "passed")
# The two rows of the sidecar workload (loadtests/sidecar_locustfile.py).
VIA_SIDECAR, DIRECT, REVOKING = "via sidecar", "direct", " while revoking"
LOCUST_START_S = 3.0  # Locust's own clock starts this much after ours, at most
PRD_LIMIT_S = 5.0  # the upstream PRD: "revoke in < 5 s"
GOAL_S = 1.0
_GOVERNANCE = "agentmesh_sidecar_governance_duration_seconds"
_OUTCOMES = "agentmesh_sidecar_request_duration_seconds_count"


@dataclass(frozen=True)
class GovernanceRun:
    sidecars: tuple[str, ...]
    upstream: str
    replicas: tuple[str, ...]
    admin_token: str
    users: int = 16
    rate: float = 200.0
    duration: str = "30s"
    revoke_every: float = 2.0  # seconds between rounds of revocations (0: none)
    quiet_share: float = 0.5  # the first part of the run, without revocations
    tool: str = "echo"
    run_id: str = ""
    name: str = "governance"
    out_dir: Path = Path("reports/out")
    env: dict[str, str] = field(default_factory=dict)


def nearest_rank(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarise(delays: Sequence[float | None]) -> dict[str, Any]:
    known = [d for d in delays if d is not None]
    return {"samples": len(known), "unenforced": len(delays) - len(known),
            "p50_s": round(nearest_rank(known, 50), 4) if known else None,
            "p99_s": round(nearest_rank(known, 99), 4) if known else None,
            "max_s": round(max(known), 4) if known else None}


def histogram_quantile(before: Snapshot | None, after: Snapshot, name: str,
                       q: float) -> float | None:
    """The q-quantile of a histogram's increase, interpolated in its bucket as Prometheus
    does; None without observations."""
    def cumulative(snap: Snapshot | None) -> dict[float, float]:
        out: dict[float, float] = {}
        for sample, labels, value in (snap.samples if snap else ()):
            if sample == f"{name}_bucket":
                le = float(dict(labels)["le"])
                out[le] = out.get(le, 0.0) + value
        return out

    start, end = cumulative(before), cumulative(after)
    buckets = sorted((le, end[le] - start.get(le, 0.0)) for le in end)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def _probe(spec: GovernanceRun, stop: threading.Event, found: list[Enforcement],
           errors: list[str]) -> None:
    probe = SidecarProbe(spec.sidecars, spec.replicas, spec.admin_token, spec.tool)
    index = 0
    try:
        stop.wait(quiet_seconds(spec) + LOCUST_START_S)  # the quiet part first
        while not stop.is_set():
            try:
                found.extend(probe.run_once(index))
            except ProbeError as exc:
                errors.append(str(exc))
            index += 1
            stop.wait(spec.revoke_every)
    finally:
        probe.close()


def quiet_seconds(spec: GovernanceRun) -> float:
    return parse_duration(spec.duration) * spec.quiet_share if spec.revoke_every > 0 else 0.0


def _path(routes: dict[str, Any], name: str) -> dict[str, Any]:
    cell = routes.get(f"GET {name}") or {}
    ms = cell.get("service_ms") or {}
    return {"requests": cell.get("requests", 0), "failures": cell.get("failures", 0),
            "p50_ms": ms.get("p50"), "p99_ms": ms.get("p99")}


def overhead(load: dict[str, Any], suffix: str = "") -> dict[str, Any]:
    routes = load["totals"]["routes"]
    via, direct = _path(routes, VIA_SIDECAR + suffix), _path(routes, DIRECT + suffix)
    both = via["p99_ms"] is not None and direct["p99_ms"] is not None
    p99 = round(via["p99_ms"] - direct["p99_ms"], 3) if both else None
    p50 = (round(via["p50_ms"] - direct["p50_ms"], 3)
           if via["p50_ms"] is not None and direct["p50_ms"] is not None else None)
    ratio = round(via["p99_ms"] / direct["p99_ms"], 3) if both and direct["p99_ms"] else None
    return {"via_sidecar": via, "direct": direct, "p99_overhead_ms": p99,
            "p50_overhead_ms": p50, "p99_ratio": ratio,
            "objective": {"id": GOVERNANCE_OVERHEAD.id,
                          "max_p99_ms": GOVERNANCE_OVERHEAD.max_p99_ms,
                          "met": GOVERNANCE_OVERHEAD.met(p99),
                          "goal_p99_ms": GOVERNANCE_OVERHEAD.goal_p99_ms,
                          "goal_met": GOVERNANCE_OVERHEAD.goal_met(p99)}}


def _sidecar_rows(spec: GovernanceRun, found: list[Enforcement],
                  before: dict[str, Snapshot] | None,
                  after: dict[str, Snapshot] | None) -> list[dict[str, Any]]:
    rows = []
    for url in spec.sidecars:
        mine = [e for e in found if e.sidecar == url.rstrip("/")]
        start, end = (before or {}).get(url), (after or {}).get(url)
        inside = histogram_quantile(start, end, _GOVERNANCE, 0.99) if end else None
        outcomes = {}
        for sample, labels, value in (end.samples if end else ()):
            if sample == _OUTCOMES:
                was = start.total(f'{_OUTCOMES}{{outcome="{dict(labels)["outcome"]}"}}') \
                    if start else 0.0
                outcomes[dict(labels)["outcome"]] = round(value - was)
        rows.append({"url": url, "revocations": {
            **summarise([e.seconds for e in mine]),
            "delays": [e.as_json()["seconds"] for e in mine],
            "channels": sorted({e.channel for e in mine})},
            "governance_p99_ms": None if inside is None else round(inside * 1000, 3),
            "outcomes": outcomes})
    return rows


def _warm(spec: GovernanceRun) -> None:
    """One call through each sidecar first: its first decision is start-up, not overhead."""
    with httpx.Client(timeout=5, trust_env=False) as client:
        for url in spec.sidecars:
            with contextlib.suppress(httpx.HTTPError):
                client.get(f"{url}/tools/{spec.tool}/call")


def run_governance(spec: GovernanceRun, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the load and the probe together; write and return the record."""
    run_id = spec.run_id or record.default_run_id().replace("-load", "-governance")
    found: list[Enforcement] = []
    errors: list[str] = []
    stop = threading.Event()
    _warm(spec)
    before = scrape(spec.sidecars)
    prober = threading.Thread(target=_probe, args=(spec, stop, found, errors), daemon=True)
    began = time.time()
    if spec.revoke_every > 0:
        prober.start()
    try:
        result = run(LoadRun(host=spec.upstream, users=spec.users, rate=spec.rate,
                             duration=spec.duration, workload="sidecar", run_id=spec.name,
                             out_dir=spec.out_dir / run_id, revocation_every=0, quiet=True,
                             log_to_file=True, env=spec.env,
                             extra_args=("--sidecars", ",".join(spec.sidecars),
                                         "--tool", spec.tool, "--revoking-after",
                                         repr(quiet_seconds(spec)))), echo=echo)
    finally:
        stop.set()
        if prober.is_alive():
            prober.join(timeout=30)
    ended = time.time()
    after = scrape(spec.sidecars)
    every = summarise([e.seconds for e in found])
    cost = overhead(result.record)
    revocation = {**every, "objective_s": PRD_LIMIT_S, "goal_s": GOAL_S,
                  "met": every["unenforced"] == 0 and (every["p99_s"] or 0.0) <= PRD_LIMIT_S,
                  "goal_met": every["unenforced"] == 0 and (every["p99_s"] or 0.0) <= GOAL_S}
    out = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": "governance",
        "run_id": run_id, "name": spec.name, "started_at": round(began, 3),
        "ended_at": round(ended, 3), "duration_s": round(ended - began, 3),
        "parameters": {"sidecars": list(spec.sidecars), "upstream": spec.upstream,
                       "replicas": list(spec.replicas), "users": spec.users,
                       "rate": spec.rate, "duration": spec.duration,
                       "revoke_every": spec.revoke_every, "tool": spec.tool,
                       "quiet_seconds": quiet_seconds(spec)},
        "overhead": cost, "overhead_while_revoking": overhead(result.record, REVOKING),
        "sidecars": _sidecar_rows(spec, found, before, after),
        "revocation": revocation, "load": f"{record.RECORD_NAME}",
        "probe_errors": errors[:20],
        "passed": bool(cost["objective"]["met"]) and (revocation["met"] or not found),
    }
    runrecord.write(result.record_path.parent / RECORD_NAME, out)
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def table(rec: dict[str, Any]) -> str:
    o, p = rec["overhead"], rec["parameters"]
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    met, goal = verdict[o["objective"]["met"]], verdict[o["objective"]["goal_met"]]
    lines = [
        f"governance overhead ({p['users']} users, {p['rate']:g} req/s offered,"
        f" {len(p['sidecars'])} sidecars, the first {p['quiet_seconds']:g} s of"
        f" {p['duration']}):",
        f"  direct tool call       p50 {_ms(o['direct']['p50_ms'])}  p99"
        f" {_ms(o['direct']['p99_ms'])}  ({o['direct']['requests']} calls)",
        f"  through a sidecar      p50 {_ms(o['via_sidecar']['p50_ms'])}  p99"
        f" {_ms(o['via_sidecar']['p99_ms'])}  ({o['via_sidecar']['requests']} calls)",
        f"  sidecar overhead p99   {_ms(o['p99_overhead_ms'])}   SLO <"
        f" {GOVERNANCE_OVERHEAD.max_p99_ms:g} ms: {met}; bench goal <"
        f" {GOVERNANCE_OVERHEAD.goal_p99_ms:g} ms: {goal}",
        f"  ratio to a direct call (p99)  {o['p99_ratio']}",
    ]
    r = rec["overhead_while_revoking"]
    if r["via_sidecar"]["requests"]:
        lines.append(f"  while revoking every {p['revoke_every']:g} s: overhead p99"
                     f" {_ms(r['p99_overhead_ms'])}, ratio {r['p99_ratio']} (shown, not judged)")
    for row in rec["sidecars"]:
        r = row["revocations"]
        lines.append(f"  {row['url']}: inside the sidecar p99 {_ms(row['governance_p99_ms'])};"
                     f" revocation to enforcement p50 {r['p50_s']} s, p99 {r['p99_s']} s,"
                     f" max {r['max_s']} s ({r['samples']} revocations,"
                     f" {r['unenforced']} never enforced, via {', '.join(r['channels'])})")
    return "\n".join(lines)


def read(path: Path) -> dict[str, Any]:
    return runrecord.read(path, SCHEMA, SCHEMA_VERSION, FIELDS)
