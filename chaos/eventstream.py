"""Governance sidecars in the drills: revocation to enforcement on every sidecar, and the
event stream stopped under them (they must fall back to polling the mesh, and the drill
records what revocation latency became).

The sidecars come from the platform (``meshsre up --sidecars-per-zone N`` locally; pods
labelled ``mesh.agentmesh.ai/governed=true`` on Kubernetes). Each phase's figures land in the
record's ``measurements.sidecars``: ``phases`` (summary per phase) and ``per_sidecar`` (one
row per sidecar and phase), and an objective per phase: p99 within the PRD's 5 s, none left
unenforced.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed

from chaos import runstate
from loadtests.governance import PRD_LIMIT_S, summarise
from loadtests.revocation import Enforcement, ProbeError, SidecarProbe
from mesh.platforms import get_platform

__all__ = ["measure_sidecars", "restore_event_stream", "sidecar_revocations", "sidecars_follow",
           "stop_event_stream"]


def _channels(sidecars: list[str]) -> dict[str, str]:
    out = {}
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        for url in sidecars:
            try:
                out[url] = str(client.get(url + "/health/ready").json().get("event_stream"))
            except (httpx.HTTPError, ValueError):
                out[url] = "unreachable"
    return out


def sidecars_follow(channel: str = "jetstream", timeout: float = 30.0,
                    configuration: Mapping[str, Any] | None = None,
                    secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Wait until every sidecar reports ``channel`` (jetstream, or fallback while polling)."""
    sidecars = get_platform().sidecars()
    if not sidecars:
        raise ActivityFailed("no governance sidecars to watch (meshsre up --sidecars-per-zone 1)")
    began = time.monotonic()
    while True:
        seen = _channels(sidecars)
        if all(c == channel for c in seen.values()):
            return {"channel": channel, "sidecars": seen,
                    "seconds": round(time.monotonic() - began, 3)}
        if time.monotonic() - began > float(timeout):
            raise ActivityFailed(f"sidecars not on {channel} after {timeout} s: {seen}")
        time.sleep(0.1)


def stop_event_stream(configuration: Mapping[str, Any] | None = None,
                      secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return get_platform().stop_event_stream()


def restore_event_stream(timeout: float = 60.0, configuration: Mapping[str, Any] | None = None,
                         secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return get_platform().restore_event_stream(float(timeout))


def _record(configuration: Mapping[str, Any] | None, phase: str, found: list[Enforcement],
            ) -> dict[str, Any]:
    every = summarise([e.seconds for e in found])
    rows = []
    for url in dict.fromkeys(e.sidecar for e in found):
        mine = [e for e in found if e.sidecar == url]
        rows.append({"sidecar": url.removeprefix("http://"), "phase": phase,
                     "channels": sorted({e.channel for e in mine}),
                     **summarise([e.seconds for e in mine])})
    notes = runstate.notes(configuration)
    kept = (notes.get("measurements") or {}).get("sidecars") or {"phases": {},
                                                                 "per_sidecar": []}
    kept["phases"][phase] = {**every, "channels": sorted({e.channel for e in found})}
    kept["per_sidecar"] += rows
    notes.merge("measurements", {"sidecars": kept})
    met = every["unenforced"] == 0 and (every["p99_s"] or 0.0) <= PRD_LIMIT_S
    notes.merge("objectives", {f"sidecar-revocation-{phase.replace(' ', '-')}": {
        "target": f"<= {PRD_LIMIT_S:g} s, every sidecar", "measured": every["p99_s"],
        "met": met}})
    return {"phase": phase, **every, "per_sidecar": rows, "met": met,
            "sidecar_delays": [e.as_json()["seconds"] for e in found]}


def measure_sidecars(phase: str, rounds: int, configuration: Mapping[str, Any] | None,
                     secrets: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``rounds`` revocations of every sidecar's credential; None when there is no sidecar."""
    platform = get_platform()
    sidecars = platform.sidecars()
    if not sidecars:
        return None
    replicas = [r.url for r in platform.replicas() if r.ready]
    if not replicas:
        raise ActivityFailed("no ready replica to revoke through")
    token = runstate.required_admin_token(secrets, "revoking sidecars' credentials")
    probe = SidecarProbe(sidecars, replicas, token, timeout=PRD_LIMIT_S * 2)
    found: list[Enforcement] = []
    try:
        for i in range(int(rounds)):
            found += probe.run_once(i)
    except ProbeError as exc:
        raise ActivityFailed(f"sidecar revocation probe: {exc}") from exc
    finally:
        probe.close()
    return _record(configuration, phase, found)


def sidecar_revocations(phase: str, rounds: int = 5,
                        configuration: Mapping[str, Any] | None = None,
                        secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Revocation to enforcement on every sidecar, as a drill's probe: fails when a sidecar
    kept presenting a revoked credential or the p99 is over the PRD's 5 s."""
    result = measure_sidecars(phase, rounds, configuration, secrets)
    if result is None:
        raise ActivityFailed("no governance sidecars (meshsre up --sidecars-per-zone 1)")
    if not result["met"]:
        raise ActivityFailed(f"sidecars {phase}: p99 {result['p99_s']} s,"
                             f" {result['unenforced']} never enforced")
    return result
