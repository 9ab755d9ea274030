"""Signed checkpoints (C2SP signed note) and the witness, on a real Redis: a checkpoint that
extends the witnessed one is taken; one that lost or changed witnessed entries is refused,
by any replica's witness, and the shared one in Redis never goes backwards."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis.asyncio as aioredis

from mesh.checkpoint import CheckpointError, LogSigner, LogVerifier
from mesh.merkle import Tree, leaf_hash
from mesh.witness import Refused, Witness
from tests.conftest import REDIS_URL

SIGNER = LogSigner(os.urandom(32))


def _tree(n: int, salt: bytes = b"") -> Tree:
    return Tree([leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)])


def test_a_signed_checkpoint_verifies_and_reads_back_as_signed() -> None:
    tree = _tree(7)
    cp = SIGNER.sign(7, tree.root(), 1765000000)
    lines = cp.note.split("\n")
    assert lines[:4] == [SIGNER.origin, "7", lines[2], "time 1765000000"]
    assert lines[4] == "" and lines[5].startswith(f"\u2014 {SIGNER.origin} ")
    read = LogVerifier.from_vkey(SIGNER.verifier.vkey).verify(cp.note)
    assert (read.size, read.root, read.timestamp) == (7, tree.root(), 1765000000)


@pytest.mark.parametrize("edit", [
    lambda n: n.replace("\n7\n", "\n8\n"),
    lambda n: n.replace("time 1765000000", "time 1765000001"),
    lambda n: n.replace("\n\n", "\nextra\n\n"),
])
def test_any_edit_of_a_signed_note_fails(edit: object) -> None:
    cp = SIGNER.sign(7, _tree(7).root(), 1765000000)
    with pytest.raises(CheckpointError, match="does not verify"):
        SIGNER.verifier.verify(edit(cp.note))  # type: ignore[operator]


def test_another_keys_note_is_not_taken_for_this_logs() -> None:
    other = LogSigner(os.urandom(32))
    with pytest.raises(CheckpointError, match="no signature by"):
        SIGNER.verifier.verify(other.sign(3, _tree(3).root(), 1).note)
    with pytest.raises(CheckpointError):
        LogVerifier.from_vkey(SIGNER.verifier.vkey.replace("+", "+0", 1))


def test_the_witness_takes_extensions_and_refuses_truncation_and_rewrites() -> None:
    async def run() -> None:
        client = aioredis.from_url(REDIS_URL)
        signer = LogSigner(os.urandom(32))  # a log of its own: its own key in Redis
        first, second = Witness(signer.verifier, client), Witness(signer.verifier, client)
        good, forged = _tree(20), _tree(20, b"forged")
        try:
            now = int(time.time()) - 100

            async def offer(w: Witness, tree: Tree, size: int, at: int) -> bool:
                cp = signer.sign(size, tree.root(size), at)
                return await w.offer(cp, lambda old: tree.consistency_proof(old, size), at + 10)

            assert await offer(first, good, 10, now)
            # The other replica's witness reads the shared one: it holds this log to it too.
            assert await offer(second, good, 15, now + 1)
            with pytest.raises(Refused, match="truncated at index 12"):
                await offer(first, good, 12, now + 2)
            with pytest.raises(Refused, match="rewritten"):
                await offer(first, forged, 18, now + 3)
            with pytest.raises(Refused, match="rewritten"):
                await offer(Witness(signer.verifier, client), forged, 18, now + 3)
            held = signer.verifier.verify((await client.get(first.key)).decode())
            assert held.size == 15  # never backwards, never the forged history
            assert await offer(first, good, 20, now + 4)
        finally:
            await client.delete(first.key)
            await client.aclose()

    asyncio.run(run())


def test_a_checkpoint_signed_while_the_replica_walked_is_not_a_truncation() -> None:
    async def run() -> None:
        client = aioredis.from_url(REDIS_URL)
        signer = LogSigner(os.urandom(32))
        w = Witness(signer.verifier, client)
        tree = _tree(9)
        try:
            now = int(time.time())
            ahead = signer.sign(9, tree.root(9), now)
            assert await Witness(signer.verifier, client).offer(
                ahead, lambda old: tree.consistency_proof(old, 9), now)
            behind = signer.sign(5, tree.root(5), now)
            # It walked the log before the newer one was signed: not taken, not refused.
            assert not await w.offer(behind, lambda old: [], walked_since=now - 0.5)
            with pytest.raises(Refused, match="truncated"):
                await w.offer(behind, lambda old: [], walked_since=now + 5)
        finally:
            await client.delete(w.key)
            await client.aclose()

    asyncio.run(run())


def test_without_redis_each_witness_holds_alone() -> None:
    async def run() -> None:
        w = Witness(SIGNER.verifier, aioredis.from_url("redis://127.0.0.1:1/0",
                                                        socket_connect_timeout=0.2))
        tree = _tree(6)
        now = int(time.time()) - 50
        assert await w.offer(SIGNER.sign(6, tree.root(), now), lambda old: [], now + 10)
        with pytest.raises(Refused, match="truncated at index 4"):
            await w.offer(SIGNER.sign(4, tree.root(4), now + 1), lambda old: [], now + 10)

    asyncio.run(run())
