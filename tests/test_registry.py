"""The agent cache: hits skip the store, and a change made through any replica, or a restore,
reaches every replica's cache through the audit log."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from mesh.process import ADMIN_TOKEN, MeshProcess
from mesh.registry import AgentCache
from mesh.store import Store, open_store, records
from mesh.telemetry import Metrics
from meshsre.identity import AgentKey
from tests.apiclient import register, signed

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _agent(i: int) -> dict[str, object]:
    return {"did": f"did:mesh:{i:032x}", "public_key": f"key-{i}", "name": "a",
            "sponsor": "a@b.co", "capabilities": [], "policy": "standard", "trust_score": 500,
            "created_at": time.time()}


async def _replica(url: str) -> tuple[Store, AgentCache]:
    metrics = Metrics(CollectorRegistry())
    store = open_store(url, metrics)
    await store.migrate()
    cache = AgentCache(store, metrics, poll_s=0.05)
    await cache.follow_once()
    return store, cache


def _lookups(cache: AgentCache) -> tuple[float, float]:
    return cache._hit._value.get(), cache._miss._value.get()  # type: ignore[attr-defined]


def test_a_trust_change_through_another_replica_reaches_this_cache(tmp_path: Path) -> None:
    async def scenario() -> None:
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        store_a, cache_a = await _replica(url)
        store_b, _ = await _replica(url)
        agent = _agent(1)
        await store_a.call("create_agent", records.create_agent(agent, "t"), write=True)
        assert (await cache_a.get(str(agent["did"])))["trust_score"] == 500  # type: ignore[index]
        assert (await cache_a.get(str(agent["did"])))["trust_score"] == 500  # type: ignore[index]
        assert _lookups(cache_a) == (1, 1)

        change = records.change_trust(str(agent["did"]), "admin", time.time(), score=120)
        await store_b.call("change_trust", change, write=True)
        assert (await cache_a.get(str(agent["did"])))["trust_score"] == 500  # type: ignore[index]
        await cache_a.follow_once()  # what the replica's follow loop does every poll
        assert (await cache_a.get(str(agent["did"])))["trust_score"] == 120  # type: ignore[index]
        store_a.close(), store_b.close()

    asyncio.run(scenario())


def test_a_restored_store_empties_the_cache(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "shared.db"
        store, cache = await _replica(f"sqlite:///{path}")
        for i in range(3):
            await store.call("create_agent", records.create_agent(_agent(i), "t"), write=True)
        await cache.follow_once()
        did = str(_agent(2)["did"])
        assert await cache.get(did) is not None
        # A restore to a backup taken before agent 2: its row and audit entries are gone.
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM agents WHERE did = ?", (did,))
            db.execute("DELETE FROM audit WHERE seq >= 3")
        await cache.follow_once()
        assert await cache.get(did) is None
        store.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_read_that_races_with_a_drop_is_not_kept(pg_url: str) -> None:
    async def scenario() -> None:
        store, cache = await _replica(pg_url)
        agent = _agent(7)
        await store.call("create_agent", records.create_agent(agent, "t"), write=True)
        did = str(agent["did"])
        read = asyncio.create_task(cache.get(did))
        await asyncio.sleep(0)  # the read is now waiting on a PostgreSQL worker thread
        cache.drop("did:mesh:" + "f" * 32)  # any drop: the read may predate the change
        assert await read is not None
        await cache.get(did)
        assert _lookups(cache) == (0, 2)  # the raced read was not kept
        store.close()

    asyncio.run(scenario())


def test_a_trust_change_on_one_replica_steers_decisions_on_another_within_1s(
    sqlite_url: str,
) -> None:
    a, b = MeshProcess(sqlite_url, zone="a"), MeshProcess(sqlite_url, zone="b")
    try:
        a.start(), b.start()
        with httpx.Client(base_url=b.url, timeout=5) as client_b:
            key = AgentKey.generate()
            r = client_b.post("/v1/agents", json=key.registration(
                "r", "ops@example.com", ["search"], "strict"))
            assert r.status_code == 201, r.text
            httpx.put(f"{a.url}/v1/agents/{key.did}/trust", json={"score": 900},
                      headers=ADMIN).raise_for_status()
            deadline = time.monotonic() + 1.0
            decide = {"did": key.did, "tool": "search", "action": "query"}
            while signed(client_b, key, "POST", "/v1/policy/decide", decide).json()[
                    "decision"] != "allow":
                assert time.monotonic() < deadline, "trust change not seen by b within 1 s"
                time.sleep(0.01)
            for _ in range(5):  # now cached on b
                assert signed(client_b, key, "POST", "/v1/policy/decide", decide).json()[
                    "decision"] == "allow"
            httpx.put(f"{a.url}/v1/agents/{key.did}/trust", json={"score": 100},
                      headers=ADMIN).raise_for_status()
            deadline = time.monotonic() + 1.0
            while signed(client_b, key, "POST", "/v1/policy/decide", decide).json()[
                    "decision"] != "deny":
                assert time.monotonic() < deadline, "trust drop not seen by b within 1 s"
                time.sleep(0.01)
            metrics = client_b.get("/metrics").text
            assert 'agentmesh_agent_cache_total{result="hit"}' in metrics
    finally:
        a.stop(), b.stop()


def test_a_deregistered_agent_is_refused_by_every_replica_within_1s(sqlite_url: str) -> None:
    a, b = MeshProcess(sqlite_url, zone="a"), MeshProcess(sqlite_url, zone="b")
    try:
        a.start(), b.start()
        with httpx.Client(base_url=b.url, timeout=5) as client_b:
            key = register(client_b)
            decide = {"did": key.did, "tool": "search", "action": "query"}
            assert signed(client_b, key, "POST", "/v1/policy/decide", decide).status_code == 200
            httpx.delete(f"{a.url}/v1/agents/{key.did}", headers=ADMIN).raise_for_status()
            deadline = time.monotonic() + 1.0
            while signed(client_b, key, "POST", "/v1/policy/decide", decide).status_code == 200:
                assert time.monotonic() < deadline, "deregistration not seen by b within 1 s"
                time.sleep(0.01)
            assert signed(client_b, key, "POST", "/v1/policy/decide", decide).status_code == 401
    finally:
        a.stop(), b.stop()
