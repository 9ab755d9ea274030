"""The governance sidecar against a real mesh, a real NATS JetStream and a real tool: what it
forwards, what it refuses and how, caching, streaming, timeouts, its metrics and its settings."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mesh.process import MESHSRE
from mesh.sidecar.process import SidecarProcess
from mesh.telemetry import SIDECAR_CONTRACT
from tests.sidecarkit import ADMIN, Rig, rig, sample

TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, SidecarProcess]]:
    with rig(tmp_path_factory.mktemp("sidecar")) as r:
        yield r, r.sidecar(instance="sidecar-main")


def test_an_allowed_call_reaches_the_tool_with_the_agent_its_credential_and_its_trace(
    governed: tuple[Rig, SidecarProcess],
) -> None:
    _, sidecar = governed
    with sidecar.client() as c:
        r = c.get("/tools/echo/items/7?q=x",
                  headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"})
        ready = c.get("/health/ready").json()
    assert r.status_code == 200, r.text
    seen = r.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/items/7", {"q": ["x"]})
    assert seen["agent"] == sidecar.did
    assert seen["credential_jti"] == r.headers["x-mesh-credential-jti"] == ready["credential_jti"]
    # The tool's span is a child of the sidecar's, in the agent's trace.
    assert seen["traceparent"].split("-")[1] == TRACE
    assert seen["traceparent"].split("-")[2] != "b7ad6b7169203331"


def test_a_repeated_call_is_allowed_from_the_cached_decision(
    governed: tuple[Rig, SidecarProcess],
) -> None:
    _, sidecar = governed
    with sidecar.client() as c:
        first = c.post("/tools/echo/notes", json={"a": 1}).headers["x-mesh-decision"]
        again = [c.post("/tools/echo/notes", json={"a": 1}).headers["x-mesh-decision"]
                 for _ in range(3)]
    assert first in ("decided", "cached") and again == ["cached"] * 3


def test_a_denied_call_is_refused_with_a_json_body_naming_the_rule(
    governed: tuple[Rig, SidecarProcess],
) -> None:
    _, sidecar = governed
    with sidecar.client() as c:
        r = c.post("/tools/shell/run", headers={"X-Mesh-Action": "exec"}, content=b"rm -rf /")
        metrics = c.get("/metrics").text
    assert r.status_code == 403
    assert r.json() | {"message": ""} == {"error": "denied", "rule": "standard.denylist",
                                          "tool": "shell", "action": "exec", "message": ""}
    assert "denylist" in r.json()["message"]
    assert sample(metrics, "agentmesh_tool_call_total", policy="standard", decision="deny") >= 1


@pytest.mark.parametrize(("path", "headers", "status", "field"), [
    ("/tools/nope/x", {}, 404, "path.tool"),
    ("/tools/echo/x", {"X-Mesh-Action": "Exec Now"}, 400, "header.x-mesh-action"),
    ("/elsewhere", {}, 404, "path"),
])
def test_bad_calls_get_a_json_error_naming_the_field(
    governed: tuple[Rig, SidecarProcess], path: str, headers: dict[str, str], status: int,
    field: str,
) -> None:
    with governed[1].client() as c:
        r = c.get(path, headers=headers)
    assert r.status_code == status and r.json()["field"] == field, r.text


def test_an_answer_streams_through_chunk_by_chunk(governed: tuple[Rig, SidecarProcess]) -> None:
    arrivals = []
    with governed[1].client() as c, c.stream("GET", "/tools/echo/stream?chunks=3&interval=0.3") \
            as r:
        began = time.monotonic()
        for line in r.iter_lines():
            arrivals.append((line, time.monotonic() - began))
    assert [line for line, _ in arrivals] == ["chunk 0", "chunk 1", "chunk 2"]
    assert arrivals[0][1] < 0.25 < arrivals[1][1]  # the first line came before the tool's last


def test_a_silent_tool_fails_with_504_after_the_upstream_timeout(governed: tuple[Rig,
                                                                           SidecarProcess],
                                                                  ) -> None:
    r_, _ = governed
    sidecar = r_.sidecar(instance="sidecar-timeout", env={
        "MESH_SIDECAR_UPSTREAM_TIMEOUT_SECONDS": "0.5"})
    with sidecar.client() as c:
        began = time.monotonic()
        r = c.get("/tools/echo/slow?seconds=3")
        took = time.monotonic() - began
        metrics = c.get("/metrics").text
    assert r.status_code == 504 and r.json()["error"] == "upstream_timeout", r.text
    assert 0.4 < took < 2.5
    assert sample(metrics, "agentmesh_sidecar_request_duration_seconds_count",
                  outcome="upstream_timeout") == 1


def test_every_metric_of_the_sidecar_contract_is_exposed(governed: tuple[Rig,
                                                                        SidecarProcess]) -> None:
    with governed[1].client() as c:
        c.get("/tools/echo/x")
        text = c.get("/metrics").text
    for metric in SIDECAR_CONTRACT:
        assert f"# TYPE {metric.samples[0].removesuffix('_total').removesuffix('_bucket')}" \
            in text or f"# TYPE {metric.name}" in text, metric.name
    assert sample(text, "agentmesh_sidecar_event_stream_up") == 1
    assert sample(text, "agentmesh_sidecar_mesh_reachable") == 1
    assert sample(text, "agentmesh_sidecar_fail_closed") == 0


def test_a_trust_drop_ends_the_cached_allows_at_once(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        sidecar = r.sidecar()
        with sidecar.client() as c:
            assert c.get("/tools/echo/x").status_code == 200
            assert c.get("/tools/echo/x").headers["x-mesh-decision"] == "cached"
            put = httpx.put(f"{r.mesh.url}/v1/agents/{sidecar.did}/trust", headers=ADMIN,
                            json={"score": 100, "reason": "compromised"})
            assert put.status_code == 200
            time.sleep(0.2)  # the event's way: well under this on loopback
            refused = c.get("/tools/echo/x")
        assert refused.status_code == 403 and refused.json()["rule"] == "standard.min_trust"


def test_the_cli_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    cases = [
        (["--mesh", "http://127.0.0.1:1"], "no agent key"),
        (["--mesh", "ftp://x", "--key-file", str(tmp_path / "k")], "MESH_SIDECAR_MESH_URL"),
        (["--mesh", "http://127.0.0.1:1", "--tool", "search"], "use NAME=URL"),
    ]
    (tmp_path / "k").write_text("bm90IGEga2V5\n")
    cases.append((["--mesh", "http://127.0.0.1:1", "--key-file", str(tmp_path / "k")],
                  "base64 Ed25519 seed of 32 bytes"))
    for args, expected in cases:
        done = subprocess.run([MESHSRE, "sidecar", *args], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
