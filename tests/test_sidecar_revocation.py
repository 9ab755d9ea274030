"""Revocation at the sidecar, through the event stream and without it, and failing closed
when the mesh goes away: real NATS JetStream, a real mesh, real sidecars, a real tool."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from mesh.sidecar.process import SidecarProcess
from tests.clusterkit import wait_for
from tests.sidecarkit import ADMIN, revoke, rig, sample


def _jti(sidecar: SidecarProcess) -> str:
    r = httpx.get(sidecar.url + "/tools/echo/x", timeout=5)
    assert r.status_code == 200, r.text
    return r.headers["x-mesh-credential-jti"]


def _metrics(sidecar: SidecarProcess) -> str:
    return httpx.get(sidecar.url + "/metrics", timeout=5).text


def test_a_revoked_credential_is_dropped_by_every_sidecar_at_once(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        sidecars = [r.sidecar(instance=f"sc-{i}") for i in range(2)]
        for sidecar in sidecars:
            old = _jti(sidecar)
            began = time.monotonic()
            revoke(r.mesh, old)
            took = wait_for(lambda s=sidecar, o=old: _jti(s) != o, timeout=5)
            # On loopback the event takes milliseconds; 0.5 s leaves room for a busy machine.
            assert took < 0.5, took
            assert time.monotonic() - began < 5
            metrics = _metrics(sidecar)
            assert sample(metrics, "agentmesh_sidecar_events_received_total",
                          kind="credential.revoked") == 1
            assert sample(metrics, "agentmesh_sidecar_revocation_enforcement_seconds_count",
                          channel="jetstream") == 1
            # The tool now sees the fresh credential, and the mesh says the old one is revoked.
            fresh = httpx.get(sidecar.url + "/tools/echo/x").json()["credential_jti"]
            assert fresh not in (None, old)


def test_with_the_event_stream_down_sidecars_poll_and_still_enforce_revocations(
    tmp_path: Path,
) -> None:
    with rig(tmp_path) as r:
        sidecar = r.sidecar(env={"MESH_SIDECAR_FALLBACK_POLL_SECONDS": "0.5"})
        with sidecar.client() as c:
            c.get("/tools/echo/x")
            r.nats.kill()  # the event stream stops: no reset, no goodbye
            wait_for(lambda: sample(_metrics(sidecar), "agentmesh_sidecar_event_stream_up") == 0,
                     timeout=5)
            assert c.get("/health/ready").json()["event_stream"] == "fallback"
            # The decisions held are dropped: nothing would say they stopped holding.
            assert c.get("/tools/echo/x").headers["x-mesh-decision"] == "decided"
            old = _jti(sidecar)
            revoke(r.mesh, old)
            took = wait_for(lambda: _jti(sidecar) != old, timeout=5)
            assert took < 2.0, took  # one poll interval, and a busy machine's slack
            r.nats.start()  # the same port and store: the durable consumer resumes
            wait_for(lambda: sample(_metrics(sidecar), "agentmesh_sidecar_event_stream_up") == 1,
                     timeout=10)
            c.get("/tools/echo/x")
            assert c.get("/tools/echo/x").headers["x-mesh-decision"] == "cached"


def test_with_the_event_stream_down_a_trust_drop_is_enforced_within_a_poll_interval(
    tmp_path: Path,
) -> None:
    with rig(tmp_path) as r:
        sidecar = r.sidecar(env={"MESH_SIDECAR_FALLBACK_POLL_SECONDS": "0.5"})
        with sidecar.client() as c:
            r.nats.kill()
            wait_for(lambda: sample(_metrics(sidecar), "agentmesh_sidecar_event_stream_up") == 0,
                     timeout=5)
            calls = [c.get("/tools/echo/x").headers["x-mesh-decision"] for _ in range(20)]
            assert calls[0] == "decided" and "cached" in calls  # reused, for one interval
            httpx.put(f"{r.mesh.url}/v1/agents/{sidecar.did}/trust", headers=ADMIN,
                      json={"score": 100}).raise_for_status()
            took = wait_for(lambda: c.get("/tools/echo/x").status_code == 403, timeout=5)
        assert took < 1.5, took


def test_the_sidecar_serves_held_decisions_in_the_grace_period_then_fails_closed(
    tmp_path: Path,
) -> None:
    with rig(tmp_path) as r:
        sidecar = r.sidecar(env={"MESH_SIDECAR_GRACE_SECONDS": "2"})
        with sidecar.client() as c:
            assert c.get("/tools/echo/x").status_code == 200
            r.mesh.kill()
            within = c.get("/tools/echo/x")
            assert within.status_code == 200
            assert within.headers["x-mesh-decision"] in ("cached", "stale")
            undecided = c.post("/tools/echo/x")  # write: no decision held for it
            assert undecided.status_code == 503
            assert undecided.json()["error"] == "mesh_unreachable"
            wait_for(lambda: c.get("/health/ready").status_code == 503, timeout=10)
            closed = c.get("/tools/echo/x")
            status = c.get("/health/ready").json()
            metrics = c.get("/metrics").text
        assert closed.status_code == 503 and "fail closed" in closed.json()["message"]
        assert status["fail_closed"] is True and status["mesh_reachable"] is False
        assert sample(metrics, "agentmesh_sidecar_fail_closed") == 1
        assert sample(metrics, "agentmesh_sidecar_mesh_reachable") == 0
        assert sample(metrics, "agentmesh_sidecar_request_duration_seconds_count",
                      outcome="unreachable") >= 2
