"""The concurrency limit sheds load with 429 and Retry-After, never probes or scrapes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mesh.process import MeshProcess


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    db = tmp_path_factory.mktemp("limits") / "mesh.db"
    with MeshProcess(f"sqlite:///{db}", env={"MESH_MAX_INFLIGHT": "1"}) as proc:
        yield proc


def _hold_a_slot(mesh: MeshProcess) -> socket.socket:
    """A request whose body never finishes: it keeps the only slot until the socket closes."""
    sock = socket.create_connection((mesh.host, mesh.port))
    sock.sendall(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    time.sleep(0.3)
    return sock


def test_over_the_limit_requests_get_429_with_retry_after(tight: MeshProcess) -> None:
    sock = _hold_a_slot(tight)
    try:
        r = httpx.get(tight.url + "/v1/agents")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"] == "overloaded"
        assert httpx.get(tight.url + "/health/ready").status_code == 200
        samples = [s for f in text_string_to_metric_families(httpx.get(tight.url + "/metrics").text)
                   for s in f.samples]
        assert any(s.name == "agentmesh_requests_rejected_total"
                   and s.labels == {"reason": "concurrency"} and s.value >= 1 for s in samples)
        assert any(s.name == "agentmesh_api_request_duration_seconds_count"
                   and s.labels == {"route": "/v1/agents", "method": "GET", "code": "429"}
                   for s in samples)
    finally:
        sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(tight.url + "/v1/agents").status_code == 429:
        assert time.monotonic() < deadline, "the slot was never released"
        time.sleep(0.05)
