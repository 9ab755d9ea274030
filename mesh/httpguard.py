"""Slow and oversized requests, refused in the HTTP protocol: uvicorn waits for a request's
head and body for as long as the client likes, and httptools buffers a header line of any
length, so one client could hold connections, and memory, for ever.

Here a request's head must arrive within ``header_timeout`` of its first byte (or of the
connection's start), and be at most ``max_header_bytes``; its body must arrive within
``body_timeout`` of the head. Else 408 or 431, and the connection closes; a connection that
sent nothing is closed without an answer (uvicorn's own keep-alive timeout closes one idle
between requests). A request that arrives whole in one read, as nearly all do, arms no timer.

The edge middleware reads a body whole before it takes an in-flight slot; when the body is
cut off here, it finds ``BODY_TIMED_OUT`` set in the request's scope state and records 408.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["BODY_TIMED_OUT", "guarded_protocol"]

BODY_TIMED_OUT = "mesh.body_timed_out"
_PHRASES = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 10.0
    max_header_bytes = 16 * 1024
    rejected: Counter | None = None  # agentmesh_requests_rejected, by reason

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True  # the bytes arriving now belong to a request head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes:
            message = f"request head over {self.max_header_bytes} bytes"
            self._refuse(431, "header_too_large", message)
        if self.transport.is_closing() or self._timer is not None:
            return
        if self._in_head:
            if self._head_bytes:
                self._arm(self.header_timeout, self._head_timed_out)
        elif self.cycle is not None and self.cycle.more_body:
            self._arm(self.body_timeout, self._body_timed_out)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    def _arm(self, seconds: float, then: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its head came in time
        if not self._head_bytes:
            self.transport.close()  # idle: nothing was asked, so nothing is answered
            return
        message = f"request head not received within {self.header_timeout:g} s"
        self._refuse(408, "header_timeout", message)

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()  # answered already: the rest of the body is not wanted
            return
        cycle.scope["state"][BODY_TIMED_OUT] = True
        message = f"the request body did not arrive within {self.body_timeout:g} s"
        self._refuse(408, "body_timeout", message)
        cycle.disconnected = True  # the application's next receive() says so
        cycle.message_event.set()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        if self.transport.is_closing():
            return
        if self.rejected is not None:
            self.rejected.labels(reason).inc()
        body = json.dumps({"error": reason, "message": message}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _PHRASES[status], len(body), body)
        )
        self.transport.close()


def guarded_protocol(
    header_timeout: float, body_timeout: float, max_header_bytes: int, rejected: Counter
) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.run(http=...)``, with these limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_header_bytes": max_header_bytes,
            "rejected": rejected,
        },
    )
