"""Revocation fan-out: every replica keeps the revoked credential ids in memory and learns of
new ones by push (PostgreSQL LISTEN/NOTIFY, Redis pub/sub) and by polling the store.

Polling is the floor that always runs (every 0.1 s on SQLite, where there is no push; every
second as a safety net when a push channel is live), so a lost notification or a dead Redis
delays enforcement but never prevents it. Each replica records, once per credential, the delay
from the revoking commit to its own enforcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from typing import Any

from mesh.breaker import CircuitBreaker
from mesh.errors import StoreUnavailable
from mesh.store import Store, records
from mesh.telemetry import Metrics

__all__ = ["CHANNEL", "RevocationBook"]

CHANNEL = "mesh_revocations"
log = logging.getLogger("mesh.revocation")


class RevocationBook:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        poll_s: float,
        redis_url: str | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.revoked: set[str] = set()
        self._seq = 0
        self._poll_s = poll_s
        self._redis_url = redis_url
        self._redis: Any = None
        self._subscriber: Any = None
        self.breaker = breaker
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = threading.Event()
        self._loaded = False

    def learn(self, jti: str, revoked_at: float, channel: str | None) -> None:
        if jti in self.revoked:
            return
        self.revoked.add(jti)
        if channel is not None and self._loaded:
            self.metrics.propagation.labels(channel).observe(max(0.0, time.time() - revoked_at))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self._poll_loop()))
        if self.store.backend == "postgresql":
            threading.Thread(
                target=self._listen_pg, args=(loop,), daemon=True, name="pg-listen"
            ).start()
        if self._redis_url:
            import redis.asyncio as aioredis

            # Publishing must fail fast; the subscriber waits on its socket by design.
            self._redis = aioredis.from_url(
                self._redis_url, socket_timeout=0.25, socket_connect_timeout=0.25
            )
            self._subscriber = aioredis.from_url(
                self._redis_url, socket_connect_timeout=0.25, health_check_interval=5
            )
            self._tasks.append(asyncio.create_task(self._redis_loop()))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in (self._redis, self._subscriber):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def publish(self, jti: str, revoked_at: float) -> None:
        """Tells the other replicas through Redis; a dead Redis only costs the push."""
        self.learn(jti, revoked_at, None)
        if self._redis is None or self.breaker is None or not self.breaker.allow():
            return
        payload = json.dumps({"jti": jti, "revoked_at": revoked_at})
        with contextlib.suppress(Exception):
            await self.breaker.call(lambda: self._redis.publish(CHANNEL, payload))

    async def catch_up(self, channel: str | None) -> None:
        rows = await self.store.call("revocations_after", records.revocations_after(self._seq))
        for seq, jti, revoked_at in rows:
            self.learn(jti, revoked_at, channel)
            self._seq = max(self._seq, seq)

    def _push_live(self) -> bool:
        return self.store.backend == "postgresql"

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.catch_up("poll" if self._loaded else None)
                self._loaded = True
            except StoreUnavailable:
                pass
            await asyncio.sleep(1.0 if self._push_live() else self._poll_s)

    def _listen_pg(self, loop: asyncio.AbstractEventLoop) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                url = self.store.driver.url  # type: ignore[attr-defined]
                with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            msg = json.loads(note.payload)
                            loop.call_soon_threadsafe(
                                self.learn, msg["jti"], float(msg["revoked_at"]), "postgres"
                            )
            except (psycopg.Error, OSError, RuntimeError):
                self._stop.wait(1.0)

    async def _redis_loop(self) -> None:
        assert self.breaker is not None
        while True:
            if not self.breaker.allow():
                await asyncio.sleep(1.0)
                continue
            try:
                async with self._subscriber.pubsub() as pubsub:
                    await self._listen_redis(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis subscription lost: %s", exc)
                self.breaker.failure()
                await asyncio.sleep(0.5)

    async def _listen_redis(self, pubsub: Any) -> None:
        assert self.breaker is not None
        await asyncio.wait_for(pubsub.subscribe(CHANNEL), 1.0)
        heard = time.monotonic()
        while True:
            # A partition sends no reset: probe, and give up after 2 s of silence.
            silent = time.monotonic() - heard
            if silent > 2.0:
                raise TimeoutError(f"no answer from redis for {silent:.1f} s")
            if silent > 0.5:
                await asyncio.wait_for(pubsub.ping(), 1.0)
            msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=0.5)
            if msg is None:
                continue
            heard = time.monotonic()
            if msg["type"] == "subscribe":
                self.breaker.success()
            elif msg["type"] == "message":
                body = json.loads(msg["data"])
                self.learn(body["jti"], float(body["revoked_at"]), "redis")
