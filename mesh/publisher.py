"""Publishes the mesh's events (``mesh.events``) to JetStream, after the change is committed.

Handlers call ``publish(event)``, which never waits: events queue in memory and one task sends
them in order, each acknowledged by JetStream (a ``PubAck`` means the event is stored). A
failed publish is retried, with the same message id, until it succeeds: at least once, stored
once. While NATS is away the queue holds up to ``max_queue`` events, then drops the oldest
(counted): the store stays the truth, and sidecars poll it while their stream is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from mesh.events import Event
from mesh.stream import connect, ensure_stream
from mesh.telemetry import Metrics

__all__ = ["EventPublisher"]

log = logging.getLogger("mesh.events")
RETRY_S = 0.25
ACK_TIMEOUT_S = 1.0


class EventPublisher:
    def __init__(
        self,
        url: str | None,
        metrics: Metrics,
        name: str,
        replicas: int = 1,
        max_queue: int = 10_000,
    ) -> None:
        self.url = url
        self.metrics = metrics
        self.name = name
        self.replicas = replicas
        self.max_queue = max_queue
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nc: Any = None
        metrics.event_stream_up.set(0)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def publish(self, event: Event) -> None:
        if self.url is None:
            return
        if len(self._queue) >= self.max_queue:
            lost = self._queue.popleft()
            self.metrics.events_published.labels(lost.kind, "dropped").inc()
        self._queue.append(event)
        self._wake.set()

    async def start(self) -> None:
        if self.url is not None:
            self._task = asyncio.create_task(self._run())

    async def stop(self, flush_s: float = 1.0) -> None:
        """Give queued events a moment to go out, then close."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_s):
                while self._queue and self._nc is not None and self._nc.is_connected:
                    await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    def _up(self, connected: bool) -> None:
        self.metrics.event_stream_up.set(1 if connected else 0)

    async def _connect(self) -> Any:
        assert self.url is not None
        while True:
            nc = None
            try:
                nc = await connect(self.url, self.name, self._up)
                js = nc.jetstream(timeout=ACK_TIMEOUT_S)
                await ensure_stream(js, self.replicas)
                self._nc = nc
                return js
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event stream at %s not reachable: %s", self.url, exc)
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                self._up(False)
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        js = await self._connect()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._queue[0]
            try:
                await js.publish(
                    event.subject,
                    event.encode(),
                    timeout=ACK_TIMEOUT_S,
                    headers={"Nats-Msg-Id": event.id},
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not stored (or not known to be): the same event again, same id, shortly.
                self.metrics.events_published.labels(event.kind, "retried").inc()
                log.debug("publishing %s failed: %s", event.kind, exc)
                await asyncio.sleep(RETRY_S)
                continue
            if self._queue and self._queue[0] is event:  # not dropped by an overflow meanwhile
                self._queue.popleft()
            self.metrics.events_published.labels(event.kind, "ok").inc()
