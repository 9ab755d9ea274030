"""The ASGI edge of every request: request id and trace context, the client rate limit (429),
the body size limit (413), the concurrency limit (429), the request-duration metric by route
template, the access log, and a JSON 500 instead of a traceback. Plain ASGI, because
BaseHTTPMiddleware costs a task per call.

A request's body is read whole before it takes an in-flight slot, so a client that sends
slowly holds a connection, never a slot (and the protocol cuts it off: ``mesh.httpguard``). A
client that hangs up before its answer is recorded as 499 (as nginx does): its own doing, not
a server error, and never logged as one."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh import outcome
from mesh.httpguard import BODY_TIMED_OUT
from mesh.limits import RateLimits
from mesh.logs import REQUEST_ID, TRACE_ID
from mesh.telemetry import Metrics
from mesh.tracing import PROPAGATOR

__all__ = ["CLIENT_CLOSED", "EdgeMiddleware"]

log = logging.getLogger("mesh.access")
# Probes and scrapes are never shed: a loaded replica must still say whether it is alive.
_UNLIMITED = ("/health/", "/metrics")
CLIENT_CLOSED = 499  # nginx's status for a request whose client hung up before the answer


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _json(status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]]) -> list[Message]:
    raw = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        *extra,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": raw},
    ]


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        tracer: trace.Tracer,
        limits: RateLimits,
        max_inflight: int,
        max_body: int,
        access_log: bool,
        routes: list[Any],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        self.limits = limits
        self.max_inflight = max_inflight
        self.max_body = max_body
        self.access_log = access_log
        self.in_flight = 0
        # Read at scrape time: two locked gauge updates a request cost more than the counter.
        metrics.in_flight.set_function(lambda: self.in_flight)
        self.routes = routes  # the app's routes, to name requests rejected before routing

    async def _buffer(self, receive: Receive) -> bytes | None:
        """The whole body, or None when it is over the size limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(route.path)
        for candidate in self.routes:
            if candidate.matches(scope)[0] == Match.FULL:
                return str(candidate.path)
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        outcome.begin()
        headers = dict(scope["headers"])
        carrier = {"traceparent": headers.get(b"traceparent", b"").decode("latin-1")}
        ctx = PROPAGATOR.extract(carrier) if carrier["traceparent"] else None
        with self.tracer.start_as_current_span(
            scope["path"], context=ctx, kind=SpanKind.SERVER
        ) as span:
            span_context = span.get_span_context()
            trace_id = f"{span_context.trace_id:032x}"
            # The span id is already a fresh random id: no second random draw per request.
            rid = (
                headers.get(b"x-request-id", b"").decode("latin-1")[:64]
                or f"{span_context.span_id:016x}"
            )
            rid_token, tid_token = REQUEST_ID.set(rid), TRACE_ID.set(trace_id)
            extra = [(b"x-request-id", rid.encode()), (b"x-trace-id", trace_id.encode())]
            status = [500]
            try:
                await self._handle(scope, receive, send, headers, extra, status)
            finally:
                route = self._route(scope)
                elapsed = time.perf_counter() - started
                self.metrics.request_duration.labels(
                    route, scope["method"], str(status[0])
                ).observe(elapsed)
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status[0])
                if status[0] >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                if self.access_log:
                    log.info(
                        "request",
                        extra={
                            "method": scope["method"],
                            "route": route,
                            "path": scope["path"],
                            "status": status[0],
                            "duration_ms": round(elapsed * 1000, 3),
                        },
                    )
                REQUEST_ID.reset(rid_token)
                TRACE_ID.reset(tid_token)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        extra: list[tuple[bytes, bytes]],
        status: list[int],
    ) -> None:
        async def reply(code: int, body: dict[str, Any], more: list[tuple[bytes, bytes]]) -> None:
            status[0] = code
            for message in _json(code, body, [*extra, *more]):
                await send(message)

        async def too_large() -> None:
            self.metrics.rejected.labels("body_too_large").inc()
            message = f"request body over {self.max_body} bytes"
            await reply(413, {"error": "body_too_large", "field": "body", "message": message}, [])

        limited = not scope["path"].startswith(_UNLIMITED)
        if limited:
            client = scope["client"][0] if scope.get("client") else "unknown"
            limits = self.limits
            if limits.shared:
                wait = await limits.wait("client", client, time.time())
            else:  # a coroutine less a request, which every request would pay
                wait = limits.local["client"].wait(client, time.time())
            if wait > 0:
                self.metrics.rejected.labels("client_rate").inc()
                message = f"client {client} is over its rate limit; retry after {math.ceil(wait)} s"
                await reply(
                    429,
                    {"error": "rate_limited", "message": message},
                    [(b"retry-after", str(math.ceil(wait)).encode())],
                )
                return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await too_large()
            return
        if (declared is not None and declared != b"0") or b"transfer-encoding" in headers:
            try:
                buffered = await self._buffer(receive)
            except ClientDisconnect:
                # Cut off for being too slow (the protocol answered 408), or hung up.
                timed_out = scope.get("state", {}).get(BODY_TIMED_OUT)
                status[0] = 408 if timed_out else CLIENT_CLOSED
                return
            if buffered is None:
                await too_large()
                return
            receive = _replay(buffered, receive)

        if limited and self.in_flight >= self.max_inflight:
            self.metrics.rejected.labels("concurrency").inc()
            await reply(
                429,
                {"error": "overloaded", "message": "too many requests in flight; retry after 1 s"},
                [(b"retry-after", b"1")],
            )
            return

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if limited:
            self.in_flight += 1
        try:
            await self.app(scope, receive, tracked_send)
        except ClientDisconnect:
            if not started:
                status[0] = CLIENT_CLOSED
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            if not started:
                await reply(
                    500,
                    {
                        "error": "internal_error",
                        "request_id": REQUEST_ID.get(),
                        "message": "internal error; see the server log",
                    },
                    [],
                )
        finally:
            if limited:
                self.in_flight -= 1
