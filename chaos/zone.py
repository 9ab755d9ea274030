"""The AZ-failure drill: fail a zone, watch the clients, wait for the page, restore the zone.

Time to detect runs from the moment the control saw the fault begin to the first firing alert
notification that reached the receiver (the local cluster's webhook file, else Alertmanager's
API). Time to recover runs from the same moment to the end of the last second in which the
clients' error ratio was above the SLO limit: with a working front door that is the failover,
well before the zone itself comes back.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed

from chaos import datazone, load, runstate, steady
from mesh import faults
from mesh.local.webhook import read_alerts
from mesh.platforms import get_platform

__all__ = [
    "fail_zone", "observe_failure", "recovery", "restore_zone", "time_to_detect", "zone_quiet",
]

FLUSH_WAIT_S = 15.0  # Locust flushes its history every 5 s; allow for a slow machine


def _zone(configuration: Mapping[str, Any] | None, zone: str) -> str:
    """The zone to fail; ``primary``: the one holding the PostgreSQL primary when the fault
    began (resolved once, then read back from the run's notes)."""
    zone = zone or str(runstate.setting(configuration, "zone", "MESHSRE_CHAOS_ZONE", "a"))
    if zone != datazone.PRIMARY:
        return zone
    return str(runstate.notes(configuration).get("measurements", {}).get("zone")
               or datazone.primary_zone())


def _fault_at(configuration: Mapping[str, Any] | None) -> float:
    started = runstate.notes(configuration).get("fault", {}).get("started_at")
    if started is None:
        raise ActivityFailed("no fault start was recorded (is the chaos.control control on?)")
    return float(started)


def _mode(configuration: Mapping[str, Any] | None, mode: str) -> str:
    text = mode or str(runstate.setting(configuration, "mode", "MESHSRE_CHAOS_MODE", "power"))
    try:
        return str(faults.parse(text))
    except faults.FaultModeError as exc:
        raise ActivityFailed(str(exc)) from exc


def fail_zone(zone: str = "", mode: str = "", configuration: Mapping[str, Any] | None = None,
              secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fail the zone in ``mode`` (mesh/faults.py; power by default); refuses when no other zone
    is serving."""
    zone, mode = _zone(configuration, zone), _mode(configuration, mode)
    platform = get_platform()
    others = [r for r in platform.replicas() if r.zone != zone and r.ready]
    if not others:
        raise ActivityFailed(f"refusing to fail zone {zone}: no replica elsewhere is ready")
    datazone.watch(zone, configuration)
    result = platform.fail_zone(zone, mode)
    runstate.notes(configuration).merge("measurements", {
        "zone": zone, "mode": mode, "platform": platform.name,
        "network": result.get("network"), "front_door": result.get("front_door")})
    return result


def zone_quiet(zone: str = "", alerts: Sequence[str] = ("MeshZoneDown", "MeshZoneSlow"),
               timeout: float = 240.0, configuration: Mapping[str, Any] | None = None,
               secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Waits until none of ``alerts`` is firing for the zone: an alert still firing from an
    earlier fault (MeshZoneSlow averages two minutes) never sends the new notification time
    to detect waits for. Fails after ``timeout``."""
    zone = _zone(configuration, zone)
    names = "|".join(alerts)
    promql = f'count(ALERTS{{alertstate="firing",alertname=~"{names}",zone="{zone}"}})'
    began = time.monotonic()
    while steady.query(configuration, promql):
        if time.monotonic() - began > float(timeout):
            raise ActivityFailed(f"{names} still firing for zone {zone} after {timeout} s")
        time.sleep(2.0)
    waited = round(time.monotonic() - began, 1)
    runstate.notes(configuration).merge("measurements", {"quiet_wait_seconds": waited})
    return {"zone": zone, "waited_seconds": waited}


def restore_zone(zone: str = "", timeout: float = 60.0,
                 configuration: Mapping[str, Any] | None = None,
                 secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Bring the zone back and wait until its replicas are ready (idempotent: a rollback)."""
    zone = _zone(configuration, zone)
    result = get_platform().restore_zone(zone, timeout=float(timeout))
    runstate.notes(configuration).merge("measurements", {
        "zone_restore_seconds": result.get("duration_seconds")})
    return result


def recovery(rows: Sequence[load.Row], fault_at: float, end: float, limit: float,
             settle: float) -> tuple[list[int], float | None, bool]:
    """The seconds whose client error ratio was above ``limit``, the time to recover (fault
    start to the end of the last such second; None when the last ``settle`` seconds before
    ``end`` still had one), and whether the clients recovered."""
    bad = [b.t for a, b in itertools.pairwise(rows)
           if b.t > fault_at and b.requests > a.requests
           and (b.failures - a.failures) / (b.requests - a.requests) > limit]
    recovered = not bad or bad[-1] <= end - settle
    if not recovered:
        return bad, None, False
    return bad, round(max(0.0, bad[-1] - fault_at), 1) if bad else 0.0, True


def observe_failure(seconds: float = 20.0, settle: float = 5.0, factor: float | None = None,
                    configuration: Mapping[str, Any] | None = None,
                    secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Watch the clients for ``seconds`` from the fault's start: errors, error ratio, and time
    to recover. Fails when the ratio over the whole failure exceeds the SLO limit, or when the
    last ``settle`` seconds still had errors above it."""
    seconds, settle = float(seconds), float(settle)  # `--var` values arrive as text
    fault_at = _fault_at(configuration)
    end = fault_at + seconds
    time.sleep(max(0.0, end - time.time()))
    noted = runstate.notes(configuration).get("load") or {}
    if not noted:
        raise ActivityFailed("no load was started for this run (is the chaos.load control on?)")
    load_dir = Path(noted["dir"])
    deadline = time.monotonic() + FLUSH_WAIT_S
    rows = load.history(load_dir)
    while (not rows or rows[-1].t < end) and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = load.history(load_dir)
    limit = steady.limit_of(steady.slo("api-availability"), factor)
    during = [r for r in rows if fault_at - 1 <= r.t <= end]
    view = load.client_view(during, seconds + 1)
    ratio = view.error_ratio
    bad, ttr, recovered = recovery(during, fault_at, end, limit, settle)
    result = {"fault_at": fault_at, "observed_s": seconds, "requests": view.requests,
              "failures": view.failures, "error_ratio": None if ratio is None else round(ratio, 6),
              "limit": limit, "bad_seconds": len(bad), "ttr_seconds": ttr, "recovered": recovered}
    notes = runstate.notes(configuration)
    notes.merge("measurements", {
        "requests_during_failure": view.requests, "errors_during_failure": view.failures,
        "error_ratio_during_failure": result["error_ratio"], "ttr_seconds": result["ttr_seconds"],
        "observed_seconds": seconds})
    notes.merge("objectives", {"client-errors-during-failure": {
        "target": f"<= {limit:g}", "measured": result["error_ratio"],
        "met": ratio is not None and ratio <= limit}})
    if not view.requests:
        raise ActivityFailed(f"the load sent nothing during the failure ({load_dir})")
    if ratio is not None and ratio > limit:
        raise ActivityFailed(f"clients saw {view.failures} failures in {view.requests} requests"
                             f" during the zone failure: ratio {ratio:.4f} > limit {limit:g}")
    if not recovered:
        raise ActivityFailed(f"clients still saw errors above {limit:g} in the last {settle:g} s"
                             f" of {seconds:g} s: not recovered")
    return result


def _from_alertmanager(url: str, names: Sequence[str]) -> list[dict[str, Any]]:
    r = httpx.get(url.rstrip("/") + "/api/v2/alerts", params={"active": "true"}, timeout=5,
                  trust_env=False)
    r.raise_for_status()
    now = time.time()
    return [{"name": a["labels"].get("alertname", ""), "status": "firing", "received_at": now,
             "labels": a["labels"]} for a in r.json() if a["labels"].get("alertname") in names]


def time_to_detect(alerts: Sequence[str] = ("MeshZoneDown",), timeout: float = 120.0,
                   zone: str = "", configuration: Mapping[str, Any] | None = None,
                   secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Seconds from the fault's start to the first notification of one of ``alerts`` (for
    the failed zone, when the alert has a zone label) that fired after it."""
    fault_at, timeout = _fault_at(configuration), float(timeout)
    zone = _zone(configuration, zone)
    alerts_file = runstate.cluster_setting(configuration, "alerts_file", "MESHSRE_ALERTS_FILE")
    am_url = runstate.cluster_setting(configuration, "alertmanager_url", "ALERTMANAGER_URL")
    if not alerts_file and not am_url:
        raise ActivityFailed("nowhere to see alerts: set MESHSRE_ALERTS_FILE or ALERTMANAGER_URL")
    source = "webhook" if alerts_file else "alertmanager-api"
    deadline = fault_at + timeout
    notes = runstate.notes(configuration)
    # The alerts this drill must be caught by: the report's live recall counts a miss too.
    notes.merge("measurements", {"designated_alerts": list(alerts)})
    while True:
        seen = read_alerts(alerts_file) if alerts_file else _from_alertmanager(am_url, alerts)
        for a in seen:
            if (a["name"] in alerts and a["status"] == "firing" and a["received_at"] >= fault_at
                    and a["labels"].get("zone", zone) == zone):
                ttd = round(a["received_at"] - fault_at, 2)
                notes.merge("measurements", {"ttd_seconds": ttd, "ttd_alert": a["name"]})
                notes.merge("objectives", {"time-to-detect": {
                    "target": f"<= {timeout:g} s", "measured": ttd, "met": True}})
                return {"alert": a["name"], "labels": a["labels"], "source": source,
                        "received_at": a["received_at"], "ttd_seconds": ttd}
        if time.time() > deadline:
            notes.merge("measurements", {"ttd_seconds": None, "ttd_alert": None})
            notes.merge("objectives", {"time-to-detect": {
                "target": f"<= {timeout:g} s", "measured": None, "met": False}})
            raise ActivityFailed(f"no {' or '.join(alerts)} notification within {timeout:g} s"
                                 f" of the fault ({source})")
        time.sleep(0.5)
