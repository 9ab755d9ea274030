"""Slow and oversized request heads, refused in the HTTP protocol, before any ASGI code runs.

uvicorn waits for a request head for as long as the client likes, and httptools buffers a
header line of any length: one client could hold connections, and memory, for ever. Here a
request head has ``header_timeout`` seconds to arrive, counted from the connection's start or
the end of the previous answer (which also bounds the rest of a body sent after an early
answer), and may be at most ``max_header_bytes``; else 408 or 431, and the connection closes.
The body's own limits are the edge middleware's (``mesh.middleware``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol"]


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    max_header_bytes = 16 * 1024
    rejected: Counter | None = None  # agentmesh_requests_rejected, by reason

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True  # the bytes arriving now belong to a request head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(
                431, "header_too_large", f"request head over {self.max_header_bytes} bytes"
            )

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn arms its keep-alive timer only when no pipelined request is waiting: then
        # the next head is the client's to send, and its time starts now.
        if self.timeout_keep_alive_task is not None:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            message = f"request head not received within {self.header_timeout:g} s"
            self._refuse(408, "header_timeout", message)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        if self.transport.is_closing():
            return
        if self.rejected is not None:
            self.rejected.labels(reason).inc()
        body = json.dumps({"error": reason, "message": message}).encode()
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body)
        )
        self.transport.close()


def guarded_protocol(
    header_timeout: float, max_header_bytes: int, rejected: Counter
) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.run(http=...)``, with these limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": header_timeout,
            "max_header_bytes": max_header_bytes,
            "rejected": rejected,
        },
    )
