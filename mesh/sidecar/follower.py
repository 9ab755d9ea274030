"""The sidecar's ear on the mesh: its agent's events from JetStream, and the fallback poll.

The sidecar reads ``mesh.events.agent.<did>.>`` through a durable consumer of its own, with
explicit acks: an event not acknowledged is delivered again, and events published while the
connection was down are delivered when it is back (at least once). A revocation or
deregistration drops the credential and every cached decision at once; a trust change or a
violation drops the decisions.

While the stream is down (no server, no consumer yet) the sidecar drops its cached decisions,
reuses a new one for at most ``fallback_poll_seconds`` and checks its credential with the
mesh as often, so a revocation or a trust change is still enforced, later.

Redis pub/sub is not used here: it delivers at most once, so a sidecar that lost its
connection for a second would miss a revocation for good and need this poll anyway; the
durable consumer replays what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from nats.js import api

from mesh import events
from mesh.sidecar.governor import Governor
from mesh.sidecar.settings import SidecarSettings
from mesh.stream import connect
from mesh.telemetry import SidecarMetrics

__all__ = ["Follower"]

log = logging.getLogger("mesh.sidecar.events")
RETRY_S = 1.0
# A consumer left behind by a sidecar that went away is removed by the server after this.
INACTIVE_S = 3600.0


class Follower:
    def __init__(
        self, settings: SidecarSettings, governor: Governor, metrics: SidecarMetrics
    ) -> None:
        self.settings = settings
        self.governor = governor
        self.metrics = metrics
        self.connected = False
        self.subscribed = False
        self._nc: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        token = re.sub(r"[^A-Za-z0-9_-]", "-", f"{settings.instance}-{governor.did[-12:]}")
        self.consumer = f"sidecar-{token}"[:64]

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll()))
        if self.settings.nats_url:
            self._tasks.append(asyncio.create_task(self._follow()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    def _update(self) -> None:
        up = self.connected and self.subscribed
        if up != self.governor.stream_up:
            log.info("event stream %s", "up" if up else "down: falling back to polling the mesh")
            self.governor.set_stream(up)

    def _connection(self, connected: bool) -> None:
        self.connected = connected
        self._update()

    async def _on_event(self, msg: Any) -> None:
        try:
            event = events.decode(msg.data)
        except events.EventError as exc:
            log.warning("ignored: %s", exc)
        else:
            self.metrics.events.labels(event.kind).inc()
            if event.did == self.governor.did and event.kind in events.REVOKING:
                self.governor.drop(event.data.get("jti"), revoked_at=event.at)
            elif event.did == self.governor.did:
                self.governor.drop(credential=False)  # the decisions rested on the old trust
        await msg.ack()

    async def _follow(self) -> None:
        assert self.settings.nats_url is not None
        while self._nc is None:
            try:
                self._nc = await connect(self.settings.nats_url, self.consumer, self._connection)
            except Exception as exc:
                log.warning("event stream at %s not reachable: %s", self.settings.nats_url, exc)
                await asyncio.sleep(RETRY_S)
        js = self._nc.jetstream()
        config = api.ConsumerConfig(
            durable_name=self.consumer,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=5.0,
            inactive_threshold=INACTIVE_S,
        )
        while not self.subscribed:
            try:
                await js.subscribe(
                    events.agent_subjects(self.governor.did),
                    stream=events.STREAM,
                    durable=self.consumer,
                    cb=self._on_event,
                    manual_ack=True,
                    config=config,
                )
                self.subscribed = True
            except Exception as exc:  # no stream yet (the mesh creates it), or no server
                log.warning("subscribing to %s: %s", events.STREAM, exc)
                await asyncio.sleep(RETRY_S)
        self._update()

    async def _poll(self) -> None:
        """The fallback: while the stream is down, check the credential with the mesh; and,
        whatever the stream does, keep the credential renewed and the mesh's health known."""
        while True:
            if not self.governor.stream_up:
                await self.governor.verify_credential()
            elif self.governor.credential is None or self.governor.down_since is not None:
                await self.governor.verify_credential()
                await self.governor.ping()
            await asyncio.sleep(self.settings.fallback_poll_seconds)
