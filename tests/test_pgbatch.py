"""PostgreSQL batches: INSERTs gathered per table, and batches that run on the event loop."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mesh.audit import walk
from mesh.errors import Conflict, StoreUnavailable
from mesh.store import Store, open_store, records
from mesh.store.pgbatch import DeferredCursor, NeedsResult, Statements
from mesh.telemetry import Metrics

AGENT = "INSERT INTO agents (did, name) VALUES (?, ?)"
AUDIT = "INSERT INTO audit (seq, hash) VALUES (?, ?)"


def test_single_row_inserts_are_gathered_per_table_until_another_statement() -> None:
    s = Statements()
    assert s.add(AGENT, ("d1", "a")) and s.add(AUDIT, (1, "h1")) and s.add(AGENT, ("d2", "b"))
    assert not s.add("DELETE FROM challenges WHERE expires_at < ?", (5.0,))
    assert s.add(AUDIT, (2, "h2"))
    out = s.drain()
    assert [q.split(" (")[0] for q, _ in out] == [
        "INSERT INTO agents", "INSERT INTO audit", "DELETE FROM challenges WHERE expires_at < %s",
        "INSERT INTO audit"]
    assert "json_populate_recordset(NULL::agents, %s)" in out[0][0]
    assert json.loads(out[0][1][0]) == [{"did": "d1", "name": "a"}, {"did": "d2", "name": "b"}]
    assert json.loads(out[3][1][0]) == [{"seq": 2, "hash": "h2"}]
    assert s.drain() == []


@pytest.mark.parametrize("sql", [
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
    "INSERT INTO revocations (jti, reason, revoked_at) VALUES (?, ?, ?) RETURNING seq",
    "INSERT INTO meta (key, value) VALUES (?, 'fixed')",
    "UPDATE agents SET trust_score = ? WHERE did = ?",
])
def test_statements_with_a_result_or_literals_go_out_as_they_came(sql: str) -> None:
    s = Statements()
    assert not s.add(sql, (1, 2))
    assert s.drain() == [(sql.replace("?", "%s"), (1, 2))]


def test_a_row_json_cannot_carry_exactly_goes_row_by_row() -> None:
    s = Statements()
    s.add(AGENT, ("d1", "a"))
    s.add(AGENT, ("d2", math.inf))
    assert s.drain() == [("INSERT INTO agents (did, name) VALUES (%s, %s)", ("d1", "a")),
                         ("INSERT INTO agents (did, name) VALUES (%s, %s)", ("d2", math.inf))]


def test_asking_for_a_gathered_inserts_result_sends_it_alone() -> None:
    s = Statements()
    s.add(AGENT, ("d1", "a"))
    s.add(AGENT, ("d2", "b"))
    assert s.ungather_latest() and not s.ungather_latest()
    out = s.drain()
    assert json.loads(out[0][1][0]) == [{"did": "d1", "name": "a"}]
    assert out[1] == ("INSERT INTO agents (did, name) VALUES (%s, %s)", ("d2", "b"))


def test_a_deferred_cursor_refuses_to_give_a_result() -> None:
    cur = DeferredCursor((4, "h4"))
    cur.execute(AGENT, ("d1", "a"))
    for ask in (cur.fetchone, cur.fetchall, lambda: cur.rowcount):
        with pytest.raises(NeedsResult):
            ask()


def _agent(i: int) -> dict[str, Any]:
    return {"did": f"did:mesh:{i:032x}", "public_key": f"key-{i}", "name": f"a{i}",
            "sponsor": "a@b.co", "capabilities": ["x", "é"], "policy": "standard",
            "trust_score": 500, "created_at": time.time() + i / 7}


async def _store(url: str) -> Store:
    store = open_store(url, Metrics(CollectorRegistry()))
    await store.migrate()
    return store


@pytest.mark.postgres
def test_registrations_commit_on_the_loop_and_read_back_exactly(pg_url: str) -> None:
    async def scenario() -> None:
        store = await _store(pg_url)
        threaded: list[int] = []
        run = store.driver._write  # type: ignore[attr-defined]

        def spy(works: list[Any]) -> Any:
            threaded.append(len(works))
            return run(works)

        store.driver._write = spy  # type: ignore[attr-defined]
        agents = [_agent(i) for i in range(40)]
        await asyncio.gather(*(store.call("create_agent", records.create_agent(a, "t"),
                                          write=True) for a in agents))
        assert threaded == []  # no batch needed a worker thread
        for a in agents:
            assert await store.call("get", records.get_agent(a["did"])) == a
        check = walk(await store.call("audit", records.audit_after(-1, 100)))
        assert check.ok and check.length == 41  # the timestamps hash as they were written
        store.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_writes_that_need_a_result_or_values_json_cannot_carry_still_commit(pg_url: str) -> None:
    def counted_insert(cur: Any) -> int:
        cur.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("k", "v"))
        return int(cur.rowcount)

    async def scenario() -> None:
        store = await _store(pg_url)
        forever = records.insert_credential("j1", "did:mesh:x", 1.5, math.inf, "t")
        await store.call("cred", forever, write=True)  # alone: on the loop
        results = list(await asyncio.gather(  # in a worker thread, for the rowcount
            store.call("count", counted_insert, write=True),
            store.call("cred", records.insert_credential("j2", "d", 1.0, -math.inf, "t"),
                       write=True),
        ))
        assert results == [1, None]
        dup = records.insert_credential("j1", "did:mesh:x", 1.5, 2.5, "t")
        with pytest.raises(Conflict):
            await store.call("cred", dup, write=True)
        assert await store.call("get", records.get_credential("j1")) == (
            "did:mesh:x", 1.5, math.inf)
        assert await store.call("get", records.get_credential("j2")) == ("d", 1.0, -math.inf)
        check = walk(await store.call("audit", records.audit_after(-1, 100)))
        assert check.ok and check.length == 3
        store.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_write_connection_that_died_idle_is_replaced_without_losing_the_batch(
    pg_url: str,
) -> None:
    import psycopg

    async def scenario() -> None:
        store = await _store(pg_url)
        await store.call("create_agent", records.create_agent(_agent(1), "t"), write=True)
        writer = store.driver._idle[0]  # type: ignore[attr-defined]
        pid = writer.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as admin:  # as a restart or restore would
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                time.sleep(0.01)  # gone: dead while idle, not as the batch goes out
        await store.call("create_agent", records.create_agent(_agent(2), "t"), write=True)
        assert writer not in store.driver._idle  # type: ignore[attr-defined]
        check = walk(await store.call("audit", records.audit_after(-1, 100)))
        assert check.ok and check.length == 3
        store.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_batch_whose_expected_audit_head_moved_reads_it_again(pg_url: str) -> None:
    """A batch is computed from the head its driver's last batch left. Another replica's
    writes, or a restore that rewound the log, move it: the batch must see that, under the
    lock, and chain onto the head that is really there."""
    import psycopg

    async def scenario() -> None:
        mine, other = await _store(pg_url), await _store(pg_url)
        for i in range(3):
            await mine.call("create", records.create_agent(_agent(2 * i), "t"), write=True)
            await other.call("create", records.create_agent(_agent(2 * i + 1), "t"), write=True)
        with psycopg.connect(pg_url, autocommit=True) as admin:  # a restore to an older backup
            admin.execute("DELETE FROM audit WHERE seq > 4")
        await mine.call("create", records.create_agent(_agent(9), "t"), write=True)
        check = walk(await mine.call("audit", records.audit_after(-1, 100)))
        assert check.ok and check.length == 6, check
        mine.close()
        other.close()

    asyncio.run(scenario())


def _in_flight_spy(store: Store) -> list[int]:
    """Records, each time a batch starts on the loop, how many are running."""
    driver: Any = store.driver
    running, seen = [0], []
    on_loop = driver._on_loop

    async def spy(conn: Any, works: list[Any]) -> Any:
        running[0] += 1
        seen.append(running[0])
        try:
            return await on_loop(conn, works)
        finally:
            running[0] -= 1

    driver._on_loop = spy
    return seen


@pytest.mark.postgres
def test_two_batches_in_flight_chain_onto_each_other(pg_url: str) -> None:
    async def scenario() -> None:
        store = await _store(pg_url)
        seen = _in_flight_spy(store)
        agents = [_agent(i) for i in range(120)]
        for wave in range(0, 120, 40):
            await asyncio.gather(*(store.call("create", records.create_agent(a, "t"), write=True)
                                   for a in agents[wave:wave + 40]))
        assert max(seen) == 2  # the second batch went out before the first had committed
        check = walk(await store.call("audit", records.audit_after(-1, 200)))
        assert check.ok and check.length == 121
        assert [await store.call("get", records.get_agent(a["did"])) for a in agents] == agents
        store.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_failed_batch_fails_the_head_check_of_the_batch_chained_onto_it(pg_url: str) -> None:
    """The first of two batches in flight holds a duplicate, so it rolls back (and reruns in
    the threads); the second, computed from the head the first would have left, must not
    commit onto a head that never was."""
    async def scenario() -> None:
        store = await _store(pg_url)
        seen = _in_flight_spy(store)
        try:
            # The first wave opens the connections; a later one, each led by a duplicate,
            # has two batches in flight (how soon depends on the machine: up to 5 tries).
            for n in range(6):
                seen.clear()
                agents = [_agent(0), *(_agent(i) for i in range(20 * n + 1, 20 * n + 20))]
                results = await asyncio.gather(
                    *(store.call("create", records.create_agent(a, "t"), write=True)
                      for a in agents), return_exceptions=True)
                assert not any(isinstance(r, BaseException) for r in results[1:])
                assert isinstance(results[0], Conflict) == (n > 0)
                if n and max(seen) == 2:
                    break
            assert max(seen) == 2, "never two batches in flight"
            check = walk(await store.call("audit", records.audit_after(-1, 200)))
            assert check.ok and check.length == 1 + 20 + 19 * n
        finally:
            store.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_only_batches_that_append_to_the_audit_log_wait_for_the_write_lock(pg_url: str) -> None:
    """Replay nonces append nothing: they commit while another session holds the lock,
    from a head known or not; a registration waits for it, and chains on once it is free."""
    import psycopg

    from mesh.store.postgres import WRITE_LOCK_SQL

    async def scenario() -> None:
        store = open_store(pg_url, Metrics(CollectorRegistry()), timeout_s=1.0)
        await store.migrate()
        with psycopg.connect(pg_url) as holder:
            holder.execute(WRITE_LOCK_SQL)  # held until this transaction ends
            for i in range(2):  # the head unknown, then known
                await asyncio.gather(*(store.call("nonce", records.claim_nonce(
                    f"n{i}-{j}", time.time() + 60), write=True) for j in range(5)))
            with pytest.raises(StoreUnavailable, match="timed out"):
                await store.call("create", records.create_agent(_agent(1), "t"), write=True)
        await store.call("create", records.create_agent(_agent(2), "t"), write=True)
        check = walk(await store.call("audit", records.audit_after(-1, 100)))
        assert check.ok and [e.subject for e in (await store.call(
            "audit", records.audit_after(0, 100)))] == [_agent(2)["did"]]
        store.close()

    asyncio.run(scenario())
