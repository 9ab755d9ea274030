"""The Alertmanager webhook receiver, behind a real Alertmanager with the generated config."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mesh.local.cluster import Cluster
from mesh.local.render import render_all
from mesh.local.spec import ClusterSpec, plan
from mesh.local.state import Component, StateDir
from mesh.local.webhook import lines_for, read_alerts


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """A real Alertmanager routing to our receiver (no mesh, no Prometheus)."""
    paths = StateDir(tmp_path_factory.mktemp("alerting"))
    paths.create()
    state = plan(ClusterSpec(zones=("a",), replicas_per_zone=1, base_port=0,
                             without=frozenset({"prometheus", "haproxy"})), paths)
    render_all(state, paths)
    cluster = Cluster(paths)
    started = [c for c in state.components if c.kind in ("webhook", "alertmanager")]
    paths.save(state)
    try:
        cluster.start(state, started, timeout=15)
        yield cluster, paths.alerts_file
    finally:
        cluster.down()


def _component(cluster: Cluster, name: str) -> Component:
    found = cluster.load().component(name)
    assert found is not None
    return found


def _wait_for(path: Path, name: str, status: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in read_alerts(path):
            if record["name"] == name and record["status"] == status:
                return record
        time.sleep(0.1)
    raise AssertionError(f"no {status} {name} in {path} after {timeout}s: {read_alerts(path)}")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def test_an_alert_sent_to_alertmanager_is_appended_firing_then_resolved(alerting) -> None:
    cluster, alerts_file = alerting
    am = _component(cluster, "alertmanager")
    alert = {"labels": {"alertname": "MeshsreTestAlert", "zone": "a", "severity": "page"},
             "annotations": {"summary": "test"}}
    sent = time.time()
    r = httpx.post(f"{am.url}/api/v2/alerts", json=[{**alert, "startsAt": _iso(sent)}],
                   trust_env=False)
    assert r.status_code == 200, r.text
    firing = _wait_for(alerts_file, "MeshsreTestAlert", "firing", timeout=10)
    assert firing["labels"]["zone"] == "a" and firing["annotations"] == {"summary": "test"}
    assert firing["receiver"] == "meshsre-webhook"
    # group_wait is 1s: time to detect must measure the mesh, not a minute of tooling delay.
    assert sent <= firing["received_at"] < sent + 5
    httpx.post(f"{am.url}/api/v2/alerts", trust_env=False, json=[
        {**alert, "startsAt": _iso(sent), "endsAt": _iso(time.time())}])
    resolved = _wait_for(alerts_file, "MeshsreTestAlert", "resolved", timeout=15)
    assert resolved["received_at"] > firing["received_at"]


def test_the_receiver_rejects_what_is_not_a_notification_and_appends_nothing(alerting) -> None:
    cluster, alerts_file = alerting
    hook = _component(cluster, "webhook")
    before = read_alerts(alerts_file)
    for body in (b"not json", b"[1, 2]"):
        r = httpx.post(f"{hook.url}/alerts", content=body, trust_env=False)
        assert r.status_code == 400
    assert httpx.get(f"{hook.url}/health", trust_env=False).status_code == 200
    assert read_alerts(alerts_file) == before


def test_each_alert_of_a_grouped_notification_becomes_one_line() -> None:
    notification = {"receiver": "r", "status": "firing", "groupKey": "g", "alerts": [
        {"status": "firing", "labels": {"alertname": "A"}, "startsAt": "t0"},
        {"status": "resolved", "labels": {"alertname": "B"}, "endsAt": "t1"},
    ]}
    lines = lines_for(notification, received_at=12.5)
    assert [(x["name"], x["status"], x["received_at"]) for x in lines] == [
        ("A", "firing", 12.5), ("B", "resolved", 12.5)]
    assert read_alerts(Path("/nonexistent/alerts.jsonl")) == []
