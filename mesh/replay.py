"""Replay protection: a signed request's nonce is claimed once, in a store every replica
shares, and remembered until the request's timestamp leaves the acceptance window (after
which the request is refused as too old anyway).

The store is Redis when one is configured (``SET NX`` with an expiry), else the database (a
row per nonce, swept once expired). With Redis configured but unreachable, a signed request
is refused with 503 rather than checked somewhere else: a replica that fell back to its
database alone would accept what the other replicas recorded in Redis. Each replica also
remembers the nonces it has seen, so a flood of one replayed request costs no store call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from mesh import outcome
from mesh.breaker import BreakerOpen
from mesh.errors import Conflict, Replayed, StoreUnavailable
from mesh.redisbatch import RedisBatch
from mesh.store import Store, records

__all__ = ["ReplayGuard"]

SEEN_MAX = 200_000  # nonces a replica remembers itself; beyond, the oldest go first
SWEEP_SECONDS = 60.0


class ReplayGuard:
    def __init__(self, store: Store, redis: RedisBatch | None = None) -> None:
        self.store = store
        self.redis = redis
        self._seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def claim(self, did: str, nonce: str, expires_at: float) -> None:
        """Records the nonce as used until ``expires_at``; Replayed when it already was,
        StoreUnavailable when that cannot be known."""
        key = f"{did}:{nonce}"
        seen = self._seen.get(key)
        if seen is not None and seen > time.time():
            raise _replayed()
        if self.redis is not None:
            fresh = await self._claim_redis(key, expires_at)
        else:
            try:
                await self.store.call(
                    "claim_nonce", records.claim_nonce(key, expires_at), write=True
                )
                fresh = True
            except Conflict:
                fresh = False
        if len(self._seen) >= SEEN_MAX:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = expires_at
        if not fresh:
            raise _replayed()

    async def _claim_redis(self, key: str, expires_at: float) -> bool:
        assert self.redis is not None
        at = int(expires_at * 1000)
        unreachable = (
            "redis is unreachable, so this replica cannot check that the signed request"
            " is new: retry with a new signature"
        )
        try:
            answer = await self.redis.run(
                lambda pipe: pipe.set(f"mesh:nonce:{key}", b"1", nx=True, pxat=at)
            )
        except BreakerOpen as exc:  # Redis failed just before: nothing was sent
            raise StoreUnavailable(unreachable) from exc
        except Exception as exc:
            outcome.wrote()  # sent: the nonce may be claimed
            raise StoreUnavailable(unreachable) from exc
        outcome.wrote()
        return bool(answer)

    async def start(self) -> None:
        if self.redis is None:  # Redis expires its keys itself
            self._task = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            with contextlib.suppress(StoreUnavailable):
                await self.store.call("sweep_nonces", records.sweep_nonces(time.time()), write=True)
            now = time.time()
            self._seen = {k: t for k, t in self._seen.items() if t > now}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _replayed() -> Replayed:
    return Replayed(
        "this signed request was already accepted once (its nonce is spent): sign every"
        " request anew, with a fresh nonce",
        field="header.x-mesh-nonce",
    )
