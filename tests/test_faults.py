"""Dependency faults on real mesh processes: Redis or PostgreSQL made unreachable through a
loopback proxy (`tests.tcpproxy`), then restored, without restarting the mesh."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre.identity import AgentKey
from tests.apiclient import register, signed
from tests.conftest import REDIS_URL
from tests.tcpproxy import CutMode, TcpProxy

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BREAKER = "agentmesh_circuit_breaker_state"
CLOSED, OPEN = 0.0, 2.0
# The mesh's breaker lets a trial call through 5 s after opening; allow for that and a retry.
BREAKER_RECOVERY_S = 10.0
POLL_S = 1.0  # revocation polling on SQLite: slow enough that a Redis push is distinguishable


def _samples(client: httpx.Client, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = float(sample.value)
    return out


def _metric(client: httpx.Client, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` matching ``labels`` (0 when none exists yet)."""
    return sum(v for k, v in _samples(client, name).items() if set(labels.items()) <= set(k))


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _proxy_for(url: str) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 0)


# -- Redis ------------------------------------------------------------------------------


@pytest.fixture
def redis_pair(sqlite_url: str) -> Iterator[tuple[TcpProxy, MeshProcess, MeshProcess]]:
    """Two replicas sharing one SQLite store, both reaching Redis through one proxy."""
    with _proxy_for(REDIS_URL) as proxy:
        redis = proxy.url("redis", urlsplit(REDIS_URL).path)
        env = {"MESH_REVOCATION_POLL_SECONDS": str(POLL_S)}
        with MeshProcess(sqlite_url, redis=redis, replica="0", env=env) as a, \
                MeshProcess(sqlite_url, redis=redis, replica="1", env=env) as b:
            yield proxy, a, b


def _revoke_and_time(a: httpx.Client, b: httpx.Client, did: str) -> float:
    """Issues a credential on replica a, revokes it there, returns how long b took to enforce."""
    cred = a.post("/v1/credentials", json={"did": did, "ttl_seconds": 60}, headers=ADMIN).json()
    assert b.post("/v1/credentials/verify", json={"token": cred["token"]}).json()["valid"]
    r = a.post(f"/v1/credentials/{cred['jti']}/revoke", json={"reason": "key_compromise"},
               headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.elapsed.total_seconds() < 1.0, "a revocation waited on a dead Redis"
    return _until(
        lambda: not b.post("/v1/credentials/verify", json={"token": cred["token"]}).json()["valid"],
        POLL_S + 2.0, "replica b enforcing the revocation",
    )


def _pushed_by_redis(a: httpx.Client, b: httpx.Client, did: str, tries: int = 3) -> bool:
    """True when b learns of a revocation through Redis; a poll can win a race, so retry."""
    for _ in range(tries):
        before = _metric(b, "agentmesh_revocation_propagation_seconds_count", channel="redis")
        _revoke_and_time(a, b, did)
        time.sleep(0.2)
        if _metric(b, "agentmesh_revocation_propagation_seconds_count",
                   channel="redis") > before:
            return True
    return False


@pytest.mark.redis
@pytest.mark.slow
def test_with_redis_cut_the_mesh_serves_and_revocations_reach_the_other_replica_by_polling(
    redis_pair: tuple[TcpProxy, MeshProcess, MeshProcess],
) -> None:
    # Everything but signed requests: their nonces live in Redis, and a replay check that
    # cannot be made is refused (503), never skipped. They resume with Redis.
    proxy, proc_a, proc_b = redis_pair
    with proc_a.client() as a, proc_b.client() as b:
        agent = register(a)
        assert _metric(a, BREAKER, dependency="redis") == CLOSED
        assert _pushed_by_redis(a, b, agent.did), "Redis never carried a revocation: bad setup"

        proxy.cut("refuse")
        for client in (a, b):
            _until(lambda c=client: _metric(c, BREAKER, dependency="redis") == OPEN,
                   5.0, "breaker opening on a dead Redis")

        newcomer = AgentKey.generate()
        r = a.post("/v1/agents", json=newcomer.registration("n", "ops@example.com"))
        assert r.status_code == 201, r.text
        decision = {"did": newcomer.did, "tool": "search", "action": "query"}
        r = signed(a, newcomer, "POST", "/v1/policy/decide", decision)
        assert (r.status_code, r.json()["error"]) == (503, "storage_unavailable"), r.text
        assert r.headers["retry-after"] == "1" and "redis" in r.json()["message"]
        assert r.elapsed.total_seconds() < 1.0, "a signed request waited on a dead Redis"
        polled = _metric(b, "agentmesh_revocation_propagation_seconds_count", channel="poll")
        pushed = _metric(b, "agentmesh_revocation_propagation_seconds_count", channel="redis")
        _revoke_and_time(a, b, newcomer.did)
        assert _metric(b, "agentmesh_revocation_propagation_seconds_count",
                       channel="poll") == polled + 1
        assert _metric(b, "agentmesh_revocation_propagation_seconds_count",
                       channel="redis") == pushed

        proxy.restore()
        for client in (a, b):
            _until(lambda c=client: _metric(c, BREAKER, dependency="redis") == CLOSED,
                   BREAKER_RECOVERY_S, "breaker closing once Redis is back")
        assert _pushed_by_redis(a, b, agent.did), "Redis push did not resume after restore"
        r = signed(b, newcomer, "POST", "/v1/policy/decide", decision)
        assert (r.status_code, r.json()["decision"]) == (200, "allow")


@pytest.mark.redis
@pytest.mark.slow
def test_a_partitioned_redis_opens_the_breaker_on_every_replica(
    redis_pair: tuple[TcpProxy, MeshProcess, MeshProcess],
) -> None:
    # A partition sends no reset: only the mesh's own timeouts can tell Redis is gone.
    # Replica a keeps revoking (its publishes time out); replica b only subscribes.
    proxy, proc_a, proc_b = redis_pair
    with proc_a.client() as a, proc_b.client() as b:
        agent = register(a)
        proxy.cut("blackhole")
        deadline = time.monotonic() + BREAKER_RECOVERY_S
        while time.monotonic() < deadline:
            _revoke_and_time(a, b, agent.did)
            states = (_metric(a, BREAKER, dependency="redis"),
                      _metric(b, BREAKER, dependency="redis"))
            if states == (OPEN, OPEN):
                break
            time.sleep(0.5)
        assert states == (OPEN, OPEN), (
            f"breaker states (a, b) = {states} after {BREAKER_RECOVERY_S:g} s of partition")


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture
def pg_behind_proxy(pg_url: str) -> Iterator[tuple[TcpProxy, MeshProcess]]:
    with _proxy_for(pg_url) as proxy:
        storage = proxy.url("postgresql", urlsplit(pg_url).path + "?user=postgres")
        env = {"MESH_STORAGE_TIMEOUT_SECONDS": "1"}
        with MeshProcess(storage, env=env) as proc:
            yield proxy, proc


class _Writer(threading.Thread):
    """Registers agents back to back and remembers every attempt and its status."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.attempts: list[tuple[str, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.halt.is_set():
                key = AgentKey.generate()
                try:
                    code = client.post("/v1/agents", json=key.registration(
                        "w", "ops@example.com")).status_code
                except httpx.TransportError:
                    code = 0
                self.attempts.append((key.did, code))


def _audited_subjects(client: httpx.Client, action: str) -> list[str]:
    subjects, after = [], -1
    while True:
        page = client.get("/v1/audit", params={"after": after, "limit": 1000},
                          headers=ADMIN).json()
        subjects += [e["subject"] for e in page["entries"] if e["action"] == action]
        if page["next_after"] is None:
            return subjects
        after = page["next_after"]


def _assert_storage_unavailable(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 503, r.text
    body = dict(r.json())
    assert body["error"] == "storage_unavailable"
    assert "postgresql" in body["message"] or "storage" in body["message"], body
    assert r.headers.get("retry-after") == "1"
    return body


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_with_postgresql_cut_writes_answer_503_and_the_process_recovers_when_it_returns(
    pg_behind_proxy: tuple[TcpProxy, MeshProcess], mode: CutMode,
) -> None:
    proxy, proc = pg_behind_proxy
    with proc.client() as client:
        agent = register(client)
        assert client.get("/health/ready").status_code == 200
        errors_before = _metric(client, "agentmesh_storage_errors_total")
        writer = _Writer(proc.url)
        writer.start()
        _until(lambda: len(writer.attempts) >= 5, 5.0, "writes before the cut")

        proxy.cut(mode)
        _until(lambda: client.get("/health/ready").status_code == 503, 3.0, "ready turning 503")
        assert client.get("/health/live").status_code == 200
        lost = AgentKey.generate()
        _assert_storage_unavailable(
            client.post("/v1/agents", json=lost.registration("lost", "ops@example.com")))
        _assert_storage_unavailable(signed(client, agent, "POST", "/v1/policy/decide",
                                           {"did": agent.did, "tool": "t", "action": "a"}))
        _assert_storage_unavailable(client.post(
            "/v1/credentials", json={"did": agent.did}, headers=ADMIN))
        assert _metric(client, "agentmesh_storage_errors_total") > errors_before

        proxy.restore()
        _until(lambda: client.get("/health/ready").status_code == 200, 15.0,
               "ready again after PostgreSQL returned")
        time.sleep(0.3)
        writer.halt.set()
        writer.join(timeout=10)
        assert proc.proc is not None and proc.proc.poll() is None, "the mesh restarted"

        # No partial write: every attempted registration is either absent, or present
        # together with its audit entry; the chain is whole.
        assert client.get(f"/v1/agents/{lost.did}").status_code == 404
        audited = _audited_subjects(client, "agent.registered")
        assert len(audited) == len(set(audited))
        for did, code in writer.attempts:
            present = client.get(f"/v1/agents/{did}").status_code == 200
            assert present == (did in audited), f"{did} (answered {code}) is half written"
            if code == 201:
                assert present
            if code == 503:  # the promise a 503 makes (mesh.outcome): nothing was written
                assert not present, f"{did} answered 503 but was written"
        codes = {code for _, code in writer.attempts}
        assert 503 in codes and 201 in codes, codes
        assert codes <= {201, 503, 504}, codes  # 504: a write was in flight when it was cut
        verdict = client.get("/v1/audit/verify", headers=ADMIN).json()
        assert verdict["ok"] is True, verdict

        r = client.post("/v1/agents", json=lost.registration("lost", "ops@example.com"))
        assert r.status_code == 201, r.text
        assert signed(client, agent, "POST", "/v1/policy/decide",
                      {"did": agent.did, "tool": "t", "action": "a"}).status_code == 200


@pytest.mark.postgres
def test_a_mesh_started_while_postgresql_is_unreachable_becomes_ready_when_it_returns(
    pg_url: str,
) -> None:
    with _proxy_for(pg_url) as proxy:
        proxy.cut("refuse")
        storage = proxy.url("postgresql", urlsplit(pg_url).path + "?user=postgres")
        proc = MeshProcess(storage, env={"MESH_STORAGE_TIMEOUT_SECONDS": "1"})
        try:
            proc.start(wait_ready=False)
            proc.wait(path="/health/live")
            with proc.client() as client:
                time.sleep(1.0)
                r = client.get("/health/ready")
                assert r.status_code == 503 and r.json()["status"] == "unavailable"
                _assert_storage_unavailable(client.post(
                    "/v1/agents", json=AgentKey.generate().registration("e", "ops@example.com")))
                proxy.restore()
                proc.wait(timeout=10.0)
                register(client)
        finally:
            proc.stop()


@pytest.mark.postgres
def test_a_partitioned_postgresql_opens_the_store_breaker_which_answers_at_once_and_closes(
    pg_behind_proxy: tuple[TcpProxy, MeshProcess],
) -> None:
    proxy, proc = pg_behind_proxy
    with proc.client() as client:
        agent = register(client)
        assert _metric(client, BREAKER, dependency="postgres") == CLOSED
        proxy.cut("blackhole")  # every call waits out its 1 s timeout until the breaker opens
        _until(lambda: client.get(f"/v1/agents/{agent.did}").status_code == 503
               and _metric(client, BREAKER, dependency="postgres") == OPEN, 15.0,
               "the store breaker opening on a silent PostgreSQL")
        started = time.monotonic()
        body = _assert_storage_unavailable(client.get(f"/v1/agents/{agent.did}"))
        assert time.monotonic() - started < 0.5, "an open breaker still waited on the database"
        assert "breaker open" in body["message"], body
        assert _metric(client, "agentmesh_storage_errors_total", kind="breaker_open") > 0
        proxy.restore()
        _until(lambda: client.get(f"/v1/agents/{agent.did}").status_code == 200, 10.0,
               "reads again once PostgreSQL is back")
        assert _metric(client, BREAKER, dependency="postgres") == CLOSED
        register(client)


@pytest.mark.postgres
def test_a_silent_postgresql_is_seen_by_the_heartbeat_and_a_write_cut_mid_flight_says_504(
    pg_behind_proxy: tuple[TcpProxy, MeshProcess],
) -> None:
    """The heartbeat opens the breaker and turns readiness 503 well within the 1 s storage
    deadline; a registration already sent when the store went silent answers 504 (it may have
    been applied), one that arrives after answers 503 at once (nothing was sent)."""
    proxy, proc = pg_behind_proxy
    with proc.client() as client, ThreadPoolExecutor(1) as pool:
        register(client)
        key = AgentKey.generate()
        proxy.cut("blackhole")
        cut_at = time.monotonic()
        in_flight = pool.submit(client.post, "/v1/agents",
                                json=key.registration("in-flight", "ops@example.com"))
        _until(lambda: client.get("/health/ready").status_code == 503, 2.0, "ready turning 503")
        seen = time.monotonic() - cut_at
        print(f"\nMEASURED heartbeat: readiness 503 {seen:.2f} s after PostgreSQL went silent")
        assert _metric(client, BREAKER, dependency="postgres") == OPEN
        r = in_flight.result(timeout=10)
        assert r.status_code == 504 and r.json()["error"] == "storage_unavailable", r.text
        assert "may apply" in r.json()["message"]
        started = time.monotonic()
        late = client.post("/v1/agents", json=AgentKey.generate().registration(
            "late", "ops@example.com"))
        _assert_storage_unavailable(late)
        assert time.monotonic() - started < 0.5
        proxy.restore()
        _until(lambda: client.get("/health/ready").status_code == 200, 10.0, "ready again")
        assert _metric(client, BREAKER, dependency="postgres") == CLOSED
