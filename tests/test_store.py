"""The store on its own: group commit, savepoint isolation, the audit chain it writes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mesh.audit import ChainCheck, walk
from mesh.checkpoint import LogSigner
from mesh.errors import Conflict
from mesh.store import Store, open_store, records
from mesh.telemetry import Metrics


def _agent(i: int) -> dict[str, object]:
    return {"did": f"did:mesh:{i:032x}", "public_key": f"key-{i}", "name": "a",
            "sponsor": "a@b.co", "capabilities": [], "policy": "standard", "trust_score": 500,
            "created_at": time.time()}


LOG_KEY = LogSigner(bytes(range(32)))


async def _store(url: str, signer: LogSigner | None = None) -> Store:
    sign = None if signer is None else signer.sign_entry
    store = open_store(url, Metrics(CollectorRegistry()), sign_entry=sign)
    await store.migrate()
    return store


@pytest.mark.parametrize(
    "url", ["memory://", "sqlite", pytest.param("pg", marks=pytest.mark.postgres)]
)
def test_writes_in_one_loop_turn_commit_together_and_a_duplicate_fails_alone(
    url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    elif url == "pg":
        url = request.getfixturevalue("pg_url")

    async def scenario() -> None:
        store = await _store(url, LOG_KEY)
        batch = [_agent(i) for i in range(10)] + [_agent(3)]
        results = await asyncio.gather(
            *(store.call("create_agent", records.create_agent(a, "t"), write=True)
              for a in batch),
            return_exceptions=True,
        )
        assert [type(r) for r in results].count(Conflict) == 1
        entries = await store.call("audit_after", records.audit_after(-1, 100))
        check = walk(entries)
        assert check.ok and check.length == 11  # genesis + ten registrations
        # One signature a batch, on its last entry: the duplicate that came last rolled back
        # alone, and the entry before it got the signature.
        signed_at = [e.seq for e in entries if e.signature is not None]
        assert signed_at[0] == 0 and signed_at[-1] == 10 and len(signed_at) < 11, signed_at
        signed = ChainCheck(signatures=LOG_KEY.verifier.entry_signed)
        signed.feed(entries)
        assert signed.end().ok and signed.signed_from == 0
        stats = await store.call("stats", records.stats)
        assert stats["count"] == 10
        store.close()

    asyncio.run(scenario())


def test_the_trust_score_is_clamped_and_every_change_is_audited() -> None:
    async def scenario() -> None:
        store = await _store("memory://")
        a = _agent(1)
        await store.call("create_agent", records.create_agent(a, "t"), write=True)
        did = str(a["did"])
        low = await store.call("t", records.change_trust(did, "admin", 1.0, delta=-900),
                               write=True)
        high = await store.call("t", records.change_trust(did, "admin", 2.0, score=1000),
                                write=True)
        assert (low, high) == (0, 1000)
        entries = await store.call("audit_after", records.audit_after(-1, 100))
        assert [e.action for e in entries][-2:] == ["trust.changed", "trust.changed"]
        missing = await store.call("t", records.change_trust("did:mesh:none", "admin", 3.0),
                                   write=True)
        assert missing is None
        store.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_replica_joining_a_migrated_postgresql_store_gets_ready(pg_url: str) -> None:
    # A replica's migration runs pipelined on a schema another replica created: its reads in
    # the pipeline (the genesis check, the issuer seed) must see their own results.
    async def scenario() -> None:
        first = await _store(pg_url)
        for _ in range(10):
            joining = await _store(pg_url)
            seed = await joining.call("seed", records.meta_setdefault("k", "v"), write=True)
            assert seed == "v"
            joining.close()
        first.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["sqlite", pytest.param("pg", marks=pytest.mark.postgres)])
def test_a_store_made_before_deregistered_agents_were_kept_gains_the_column(
    url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if url == "sqlite" else request.getfixturevalue("pg_url")
    old_agents = ("CREATE TABLE agents (did TEXT PRIMARY KEY, public_key TEXT NOT NULL,"
                  " name TEXT NOT NULL, sponsor TEXT NOT NULL, capabilities TEXT NOT NULL,"
                  " policy TEXT NOT NULL, trust_score INTEGER NOT NULL,"
                  " created_at DOUBLE PRECISION NOT NULL)")

    async def scenario() -> None:
        store = open_store(url, Metrics(CollectorRegistry()))
        await store.call("old", lambda cur: cur.execute(old_agents), write=True)
        await store.migrate()
        a = _agent(1)
        await store.call("create_agent", records.create_agent(a, "t"), write=True)
        did = str(a["did"])
        assert await store.call("d", records.deregister_agent(did, "t", 2.0, False),
                                write=True) == []
        assert await store.call("get", records.get_agent(did)) is None
        await store.migrate()  # again: nothing left to add
        store.close()

    asyncio.run(scenario())
