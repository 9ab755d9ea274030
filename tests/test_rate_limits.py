"""GCRA rate limits: one replica's count, and the cluster-wide one in Redis shared by every
replica (falling back to each replica's own count when Redis is cut)."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest

from mesh.limits import Gcra
from mesh.process import MeshProcess
from tests.apiclient import register, signed
from tests.conftest import REDIS_URL
from tests.tcpproxy import TcpProxy


def test_a_burst_passes_then_requests_pass_at_the_rate() -> None:
    g = Gcra(per_second=2.0, burst=3)
    assert [g.wait("k", now=0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert g.wait("k", now=0.5) == 0.0  # half a second later, one more
    assert g.wait("k", now=0.5) == pytest.approx(0.5)
    assert g.wait("other", now=0.5) == 0.0  # each key has its own allowance


def test_a_refused_request_costs_nothing_of_the_allowance() -> None:
    g = Gcra(per_second=1.0, burst=1)
    assert g.wait("k", now=0.0) == 0.0
    assert all(g.wait("k", now=0.1) > 0 for _ in range(100))
    assert g.wait("k", now=1.0) == 0.0


def test_idle_keys_are_forgotten_when_the_table_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mesh.limits.MAX_KEYS", 3)
    g = Gcra(per_second=1.0, burst=1)
    for i in range(3):
        g.wait(f"k{i}", now=0.0)
    g.wait("late", now=10.0)  # the others are idle by now: dropped, not held as debt
    assert set(g._tat) == {"late"}


def _decide(client: object, key: object) -> int:
    body = {"did": key.did, "tool": "search", "action": "query"}  # type: ignore[attr-defined]
    return signed(client, key, "POST", "/v1/policy/decide", body).status_code  # type: ignore[arg-type]


@pytest.mark.redis
def test_an_agents_limit_is_shared_by_every_replica_through_redis(sqlite_url: str) -> None:
    env = {"MESH_RATE_LIMIT_PER_MINUTE": "10"}
    with MeshProcess(sqlite_url, redis=REDIS_URL, replica="0", env=env) as a, \
            MeshProcess(sqlite_url, redis=REDIS_URL, replica="1", env=env) as b, \
            a.client() as ca, b.client() as cb:
        key = register(ca)
        codes = [_decide(ca if i % 2 else cb, key) for i in range(14)]
        # Ten a minute in all, with a burst of ten: alone, each replica would allow 14.
        assert codes.count(200) == 10 and codes.count(429) == 4, codes
        assert cb.get(f"/v1/agents/{key.did}").json()["trust_score"] == 500


@pytest.mark.redis
def test_with_redis_cut_each_replica_limits_by_its_own_count(sqlite_url: str) -> None:
    parts = urlsplit(REDIS_URL)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        redis = proxy.url("redis", parts.path)
        env = {"MESH_CLIENT_RATE_PER_SECOND": "1", "MESH_CLIENT_BURST": "4"}
        with MeshProcess(sqlite_url, redis=redis, env=env) as proc, proc.client() as client:
            proxy.cut("refuse")
            started = time.monotonic()
            codes = [client.get("/v1/agents").status_code for _ in range(6)]
            assert codes == [200] * 4 + [429] * 2, codes
            assert time.monotonic() - started < 3.0, "limits waited on a dead Redis"
            body = json.loads(client.get("/v1/agents").text)
            assert body["error"] == "rate_limited"


@pytest.mark.redis
def test_limits_far_above_any_load_keep_every_request_passing_through_redis(
    sqlite_url: str,
) -> None:
    # A rate so high that a request's share of it rounds to no time at all must still be a
    # valid schedule (an expiry of 0 ms is an error in Redis, and errors open the breaker).
    env = {"MESH_CLIENT_RATE_PER_SECOND": "100000000", "MESH_CLIENT_BURST": "100000000"}
    with MeshProcess(sqlite_url, redis=REDIS_URL, env=env) as proc, proc.client() as client:
        agent = register(client)
        codes = {_decide(client, agent) for _ in range(20)}
        assert codes == {200}
        breaker = [line for line in client.get("/metrics").text.splitlines()
                   if line.startswith('agentmesh_circuit_breaker_state{dependency="redis"}')]
        assert breaker and breaker[0].endswith(" 0.0"), breaker
