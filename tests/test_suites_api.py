"""The api and telemetry suites run as users run them (`pytest suites --target URL`, JUnit XML
out) against a real mesh process: they pass, leave no agents behind, skip with their reason
when a target is missing, and fail against a server that only looks like the mesh."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from mesh.process import ADMIN_TOKEN, MeshProcess
from suites.agents import SPONSOR
from suites.runner import Run, run

# The variables the suites read as defaults: a test names every target itself.
_TARGET_VARS = ("MESH_URL", "PROMETHEUS_URL", "ALERTMANAGER_URL", "MESH_ADMIN_TOKEN")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _TARGET_VARS}


def suites(tmp_path: Path, *args: str) -> Run:
    return run(list(args), tmp_path / "junit.xml", env=clean_env())


def test_the_api_and_telemetry_suites_pass_against_a_real_mesh(mesh: MeshProcess,
                                                               tmp_path: Path) -> None:
    result = suites(tmp_path, "suites/test_api.py", "suites/test_telemetry.py",
                    "--target", mesh.url, "--admin-token", ADMIN_TOKEN)
    assert result.returncode == 0, result.output
    outcomes = result.outcomes()
    assert set(outcomes.values()) == {"passed"}, outcomes
    assert len(result.outcomes("test_api")) >= 10 and len(result.outcomes("test_telemetry")) == 5
    assert result.properties["target.mesh"] == mesh.url


def test_the_suites_leave_no_agent_behind(mesh: MeshProcess, tmp_path: Path) -> None:
    result = suites(tmp_path, "suites/test_api.py", "--target", mesh.url)
    assert result.returncode == 0, result.output
    ours, cursor = [], None
    with mesh.client() as client:
        while True:
            params: dict[str, str | int] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/agents", params=params).json()
            ours += [a["did"] for a in page["items"] if a["sponsor"] == SPONSOR]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert ours == []


def test_without_an_admin_token_only_the_audit_check_is_skipped(mesh: MeshProcess,
                                                                tmp_path: Path) -> None:
    result = suites(tmp_path, "suites/test_api.py", "--target", mesh.url)
    skipped = {c.name: c.message for c in result.cases if c.outcome == "skipped"}
    assert list(skipped) == ["test_the_audit_chain_verifies_end_to_end"]
    assert "--admin-token" in next(iter(skipped.values()))


def test_without_targets_every_suite_is_skipped_with_its_reason(tmp_path: Path) -> None:
    result = suites(tmp_path, "suites")
    assert result.returncode == 0, result.output
    reasons = {c.suite: c.message for c in result.cases}
    assert {c.outcome for c in result.cases} == {"skipped"}
    assert "--target" in reasons["test_api"] and "--target" in reasons["test_telemetry"]
    assert "--prometheus" in reasons["test_prometheus"]
    assert "--alertmanager" in reasons["test_alertmanager"]
    assert "--namespace" in reasons["test_kubernetes"]


def test_targets_default_to_what_meshsre_status_env_exports(mesh: MeshProcess,
                                                            tmp_path: Path) -> None:
    env = {**clean_env(), "MESH_URL": mesh.url, "MESH_ADMIN_TOKEN": ADMIN_TOKEN}
    result = run(["suites/test_api.py"], tmp_path / "junit.xml", env=env)
    assert result.returncode == 0, result.output
    assert set(result.outcomes().values()) == {"passed"}


class _LookAlike(BaseHTTPRequestHandler):
    """Answers like a careless imitation of the mesh: 200 with JSON to everything, and a
    /metrics with one metric, typed wrong and labelled per agent."""

    def _answer(self) -> None:
        if self.path == "/metrics":
            body = (b"# HELP agentmesh_registry_size Agents.\n"
                    b"# TYPE agentmesh_registry_size counter\n"
                    b'agentmesh_registry_size_total{did="did:mesh:0123"} 1\n')
            kind = "text/plain; version=0.0.4"
        else:
            body = json.dumps({"status": "ok", "paths": {}}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def look_alike() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LookAlike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_suites_fail_against_a_server_that_only_looks_like_the_mesh(
    look_alike: str, tmp_path: Path
) -> None:
    assert httpx.get(look_alike + "/health/live").json()["status"] == "ok"
    result = suites(tmp_path, "suites/test_api.py", "suites/test_telemetry.py",
                    "--target", look_alike)
    assert result.returncode == 1
    failed = {c.name for c in result.cases if c.outcome in ("failed", "error")}
    assert {"test_writes_without_credentials_are_rejected_with_401",
            "test_forged_writes_are_rejected",
            "test_the_openapi_document_lists_every_api_route"} <= failed
    telemetry = {c.name: c for c in result.cases if c.suite == "test_telemetry"}
    typed = telemetry["test_every_contract_metric_is_exposed_with_its_type"]
    assert typed.outcome == "failed"
    assert "agentmesh_handshake: not exposed" in typed.message
    assert "agentmesh_registry_size: exposed as counter, the contract says gauge" in typed.message
    per_agent = telemetry["test_no_series_is_labelled_per_agent"]
    assert per_agent.outcome == "failed" and "holds an agent DID" in per_agent.message
