"""The limits that keep one client from locking out the others, on real mesh processes: the
concurrency limit (429) taken only once a body is whole, body and head time limits (408), the
head size limit (431), the client rate limit (429 with Retry-After), and a hang-up recorded as
499, never as a server error."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mesh.process import MeshProcess
from meshsre.identity import AgentKey
from tests.tcpproxy import TcpProxy

SLOW = {
    "MESH_MAX_INFLIGHT": "1",
    "MESH_BODY_TIMEOUT_SECONDS": "1",
    "MESH_HEADER_TIMEOUT_SECONDS": "1",
    "MESH_MAX_HEADER_BYTES": "4096",
}


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    db = tmp_path_factory.mktemp("limits") / "mesh.db"
    with MeshProcess(f"sqlite:///{db}", env=SLOW) as proc:
        yield proc


def _samples(mesh: MeshProcess, name: str) -> list[tuple[dict[str, str], float]]:
    families = text_string_to_metric_families(httpx.get(mesh.url + "/metrics").text)
    return [(s.labels, s.value) for f in families for s in f.samples if s.name == name]


def _count(mesh: MeshProcess, name: str, **labels: str) -> float:
    return sum(v for got, v in _samples(mesh, name) if labels.items() <= got.items())


def _slow_body(mesh: MeshProcess) -> socket.socket:
    """A registration whose head arrived and whose body never will."""
    sock = socket.create_connection((mesh.host, mesh.port))
    sock.sendall(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    return sock


def _answer(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_slow_bodies_hold_no_slot_and_get_408_when_their_time_is_up(tight: MeshProcess) -> None:
    socks = [_slow_body(tight) for _ in range(5)]
    try:
        time.sleep(0.2)
        # Five bodies trickle in, and the single slot is free for a whole request.
        key = AgentKey.generate()
        r = httpx.post(tight.url + "/v1/agents", json=key.registration("a", "ops@example.com"))
        assert r.status_code == 201, r.text
        answers = [_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error"] == "body_timeout"
    assert _count(tight, "agentmesh_requests_rejected_total", reason="body_timeout") >= 5
    assert _count(tight, "agentmesh_api_request_duration_seconds_count",
                  route="/v1/agents", code="408") >= 5


def test_a_head_that_never_ends_gets_408_and_one_too_large_gets_431(tight: MeshProcess) -> None:
    slow = socket.create_connection((tight.host, tight.port))
    big = socket.create_connection((tight.host, tight.port))
    try:
        slow.sendall(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n")
        big.sendall(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 8192)
        started = time.monotonic()
        slow_answer, big_answer = _answer(slow), _answer(big)
        waited = time.monotonic() - started
    finally:
        slow.close()
        big.close()
    assert slow_answer.startswith(b"HTTP/1.1 408"), slow_answer
    assert json.loads(slow_answer.partition(b"\r\n\r\n")[2])["error"] == "header_timeout"
    assert 0.5 < waited < 3.0
    assert big_answer.startswith(b"HTTP/1.1 431"), big_answer
    assert _count(tight, "agentmesh_requests_rejected_total", reason="header_timeout") >= 1
    assert _count(tight, "agentmesh_requests_rejected_total", reason="header_too_large") >= 1


def test_an_idle_connection_is_closed_without_an_answer_after_the_head_timeout(
    tight: MeshProcess,
) -> None:
    with socket.create_connection((tight.host, tight.port)) as sock:
        started = time.monotonic()
        answer = _answer(sock)
        waited = time.monotonic() - started
    assert answer == b"" and 0.5 < waited < 3.0, (answer, waited)


def test_a_client_that_hangs_up_mid_body_is_a_499_not_a_server_error(tight: MeshProcess) -> None:
    before = _count(tight, "agentmesh_api_request_duration_seconds_count", code="499")
    sock = _slow_body(tight)
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 3
    while _count(tight, "agentmesh_api_request_duration_seconds_count", code="499") == before:
        assert time.monotonic() < deadline, "the hang-up was never recorded as 499"
        time.sleep(0.05)
    assert _count(tight, "agentmesh_api_request_duration_seconds_count",
                  route="/v1/agents", code="500") == 0
    assert "unhandled error" not in tight.output()


@pytest.mark.postgres
def test_requests_over_the_concurrency_limit_get_429_while_a_stalled_store_holds_the_slot(
    pg_url: str,
) -> None:
    # The slot is held by a request waiting on its store (a partitioned PostgreSQL), which is
    # what the concurrency limit is for; probes and scrapes are never shed.
    with TcpProxy(urlsplit(pg_url).hostname or "127.0.0.1", urlsplit(pg_url).port or 5432) as proxy:
        storage = proxy.url("postgresql", urlsplit(pg_url).path + "?user=postgres")
        env = {"MESH_MAX_INFLIGHT": "1", "MESH_STORAGE_TIMEOUT_SECONDS": "3"}
        with MeshProcess(storage, env=env) as proc, httpx.Client(timeout=10) as client, \
                ThreadPoolExecutor(max_workers=1) as pool:
            proxy.cut("blackhole")
            try:
                held = pool.submit(client.get, proc.url + "/v1/agents")
                time.sleep(0.5)
                r = client.get(proc.url + "/v1/agents/did:mesh:" + "0" * 32)
                assert r.status_code == 429, r.text
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"] == "overloaded"
                assert client.get(proc.url + "/metrics").status_code == 200
                assert held.result(timeout=10).status_code == 503
            finally:
                proxy.restore()
            assert _count(proc, "agentmesh_requests_rejected_total", reason="concurrency") >= 1


def test_a_client_over_its_rate_limit_gets_429_with_retry_after(sqlite_url: str) -> None:
    env = {"MESH_CLIENT_RATE_PER_SECOND": "2", "MESH_CLIENT_BURST": "5"}
    with MeshProcess(sqlite_url, env=env) as proc, proc.client() as client:
        codes = [client.get("/v1/agents").status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3, codes
        r = client.get("/v1/agents")
        assert r.status_code == 429 and r.json()["error"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1
        # Probes and scrapes are never limited.
        assert client.get("/health/ready").status_code == 200
        assert _count(proc, "agentmesh_requests_rejected_total", reason="client_rate") >= 4
        time.sleep(1.1)
        assert client.get("/v1/agents").status_code == 200
