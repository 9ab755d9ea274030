"""Several real replicas sharing one store: one audit chain, and revocations enforced
everywhere within a second."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre.identity import AgentKey

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _register_many(url: str, n: int) -> list[str]:
    dids = []
    with httpx.Client(base_url=url, timeout=10) as c:
        for _ in range(n):
            key = AgentKey.generate()
            r = c.post("/v1/agents", json=key.registration("r", "ops@example.com"))
            assert r.status_code == 201, r.text
            dids.append(key.did)
    return dids


def _concurrent_writes_form_one_chain(storage: str) -> None:
    replicas = [MeshProcess(storage, zone=z, replica="0") for z in "abc"]
    try:
        for r in replicas:
            r.start()
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(_register_many, r.url, 25) for r in replicas for _ in (0, 1)]
            dids = [d for f in futures for d in f.result()]
        check = httpx.get(replicas[0].url + "/v1/audit/verify", headers=ADMIN).json()
        assert check["ok"], check
        assert check["length"] == 1 + len(dids)  # genesis + one entry per registration
        for did in dids[::10]:
            assert httpx.get(f"{replicas[2].url}/v1/agents/{did}").status_code == 200
    finally:
        for r in replicas:
            r.stop()


def test_three_replicas_writing_at_once_on_sqlite_form_one_valid_chain(sqlite_url: str) -> None:
    _concurrent_writes_form_one_chain(sqlite_url)


@pytest.mark.postgres
def test_three_replicas_writing_at_once_on_postgresql_form_one_valid_chain(pg_url: str) -> None:
    _concurrent_writes_form_one_chain(pg_url)


def _revocation_delays(storage: str, redis: str | None, samples: int) -> list[float]:
    a = MeshProcess(storage, zone="a", redis=redis)
    b = MeshProcess(storage, zone="b", redis=redis)
    delays = []
    try:
        a.start(), b.start()
        with httpx.Client(timeout=5) as c:
            key = AgentKey.generate()
            c.post(a.url + "/v1/agents", json=key.registration("r", "ops@example.com"))
            for _ in range(samples):
                cred = c.post(a.url + "/v1/credentials", json={"did": key.did,
                                                               "ttl_seconds": 60},
                              headers=ADMIN).json()
                assert c.post(b.url + "/v1/credentials/verify",
                              json={"token": cred["token"]}).json()["valid"]
                c.post(f"{a.url}/v1/credentials/{cred['jti']}/revoke",
                       json={"reason": "key_compromise"}, headers=ADMIN)
                start = time.perf_counter()
                while c.post(b.url + "/v1/credentials/verify",
                             json={"token": cred["token"]}).json()["valid"]:
                    assert time.perf_counter() - start < 5, "revocation not enforced in 5 s"
                    time.sleep(0.005)
                delays.append(time.perf_counter() - start)
        metrics = httpx.get(b.url + "/metrics").text
        assert "agentmesh_revocation_propagation_seconds_count" in metrics
    finally:
        a.stop(), b.stop()
    return delays


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def test_a_revocation_on_one_sqlite_replica_is_enforced_by_another_within_1s(
    sqlite_url: str,
) -> None:
    delays = _revocation_delays(sqlite_url, None, 30)
    assert _p99(delays) < 1.0, delays


@pytest.mark.postgres
def test_a_revocation_on_one_postgresql_replica_is_enforced_by_another_within_1s(
    pg_url: str,
) -> None:
    delays = _revocation_delays(pg_url, None, 30)
    assert _p99(delays) < 1.0, delays


@pytest.mark.redis
def test_redis_pubsub_carries_revocations_too(sqlite_url: str) -> None:
    from tests.conftest import REDIS_URL

    delays = _revocation_delays(sqlite_url, REDIS_URL, 10)
    assert _p99(delays) < 1.0, delays
