"""One sidecar as an ASGI application: its parts, their lifecycle, and the routes.

Ready (``/health/ready`` 200) once the agent holds a credential and the mesh has not been
unreachable longer than the grace period; the body says why not otherwise, and whether the
event stream is followed or the sidecar is polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send

from mesh.sidecar.follower import Follower
from mesh.sidecar.governor import Governor, Refused
from mesh.sidecar.proxy import ToolProxy, reply
from mesh.sidecar.settings import SidecarSettings
from mesh.telemetry import SidecarMetrics
from mesh.tracing import tracer

__all__ = ["Sidecar"]

log = logging.getLogger("mesh.sidecar")


class Sidecar:
    def __init__(self, settings: SidecarSettings) -> None:
        self.settings = settings
        self.key = settings.key()
        self.registry = CollectorRegistry()
        self.metrics = SidecarMetrics(self.registry)
        self.tracer = tracer(settings.zone, settings.instance, service="agentmesh-sidecar")
        self.governor: Governor | None = None
        self.follower: Follower | None = None
        self.proxy: ToolProxy | None = None
        self.session: aiohttp.ClientSession | None = None
        self._start: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        s = self.settings
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.max_connections, ttl_dns_cache=300),
            auto_decompress=False,
        )
        self.governor = Governor(s, self.key, self.metrics, self.session)
        self.follower = Follower(s, self.governor, self.metrics)
        self.proxy = ToolProxy(s, self.governor, self.metrics, self.tracer, self.session)
        await self.follower.start()
        self._start = asyncio.create_task(self._first_contact())
        log.info("sidecar of %s for tools %s", self.governor.did, ", ".join(sorted(s.tools)))

    async def _first_contact(self) -> None:
        """Register (when asked to) and take a first credential, retrying until the mesh
        answers: a sidecar may start before the mesh does."""
        assert self.governor is not None
        while True:
            try:
                await self.governor.register()
                await self.governor.token()
                return
            except (Refused, Exception) as exc:
                log.warning("mesh not ready for %s yet: %s", self.governor.did, exc)
                await asyncio.sleep(1.0)

    async def shutdown(self) -> None:
        if self._start is not None:
            self._start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._start
        if self.follower is not None:
            await self.follower.stop()
        if self.session is not None:
            await self.session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.startswith("/tools/") and self.proxy is not None:
            await self.proxy(scope, receive, send)
        elif path == "/health/live":
            await reply(send, 200, {"status": "live", "at": time.time()})
        elif path == "/health/ready" and self.governor is not None:
            status = self.governor.status()
            await reply(send, 200 if status["ready"] else 503, status)
        elif path == "/metrics":
            body = generate_latest(self.registry)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        else:
            await reply(
                send,
                404,
                {
                    "error": "not_found",
                    "field": "path",
                    "message": "call a tool at /tools/<tool>/<path>",
                },
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
