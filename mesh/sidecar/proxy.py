"""The sidecar's HTTP face: ``/tools/<tool>/<path>`` is governed and forwarded to the tool's
upstream; ``/health/live``, ``/health/ready`` and ``/metrics`` are the sidecar's own.

An agent calls ``http://127.0.0.1:15001/tools/search/q?x=1`` instead of the search tool. The
action is the ``X-Mesh-Action`` header, else read from the method (GET and HEAD read, DELETE
delete, anything else write). Allowed calls reach the upstream with the agent's DID and
credential (``X-Mesh-Agent``, ``X-Mesh-Credential``) and the trace context; request and
answer bodies stream through unbuffered. Plain ASGI: this is the hot path of every tool call.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import Receive, Scope, Send

from mesh.sidecar.governor import Governor, Refused
from mesh.sidecar.settings import SidecarSettings
from mesh.telemetry import SidecarMetrics
from mesh.tracing import PROPAGATOR

__all__ = ["ToolProxy", "reply"]

ACTIONS = {"GET": "read", "HEAD": "read", "DELETE": "delete"}
_ACTION = re.compile(rb"^[a-z][a-z0-9_.-]{0,62}$")
# Hop-by-hop headers (RFC 9110 7.6.1) and what the sidecar sets itself.
_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"x-mesh-action",
        b"x-mesh-agent",
        b"x-mesh-credential",
        b"traceparent",
    }
)


async def reply(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


class TooLarge(Exception):
    pass


class ToolProxy:
    def __init__(
        self,
        settings: SidecarSettings,
        governor: Governor,
        metrics: SidecarMetrics,
        tracer: trace.Tracer,
        session: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.governor = governor
        self.metrics = metrics
        self.tracer = tracer
        self.session = session
        self.upstream_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.connect_timeout_seconds,
            sock_read=settings.upstream_timeout_seconds,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        outcome = ["upstream_error"]
        headers = dict(scope["headers"])
        carrier = {"traceparent": headers.get(b"traceparent", b"").decode("latin-1")}
        ctx = PROPAGATOR.extract(carrier) if carrier["traceparent"] else None
        tool, _, rest = scope["path"][len("/tools/") :].partition("/")
        with self.tracer.start_as_current_span(
            f"tool {tool}", context=ctx, kind=SpanKind.SERVER
        ) as span:
            try:
                await self._call(scope, receive, send, headers, tool, rest, outcome, span)
            finally:
                span.set_attribute("mesh.sidecar.outcome", outcome[0])
                self.metrics.duration.labels(outcome[0]).observe(time.perf_counter() - started)

    async def _call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        tool: str,
        rest: str,
        outcome: list[str],
        span: trace.Span,
    ) -> None:
        started = time.perf_counter()
        upstream = self.settings.tools.get(tool)
        if upstream is None:
            outcome[0] = "denied"
            known = ", ".join(sorted(self.settings.tools)) or "none"
            await reply(
                send,
                404,
                {
                    "error": "unknown_tool",
                    "field": "path.tool",
                    "message": f"no tool {tool!r} behind this sidecar (it has: {known})",
                },
            )
            return
        method = scope["method"]
        action_raw = headers.get(b"x-mesh-action")
        if action_raw is not None and not _ACTION.match(action_raw):
            outcome[0] = "denied"
            await reply(
                send,
                400,
                {
                    "error": "invalid_request",
                    "field": "header.x-mesh-action",
                    "message": "X-Mesh-Action must be lowercase letters, digits,"
                    " '.', '_' or '-' (at most 63)",
                },
            )
            return
        action = action_raw.decode() if action_raw else ACTIONS.get(method, "write")
        traceparent = self._traceparent()
        try:
            verdict = await self.governor.authorise(tool, action, traceparent)
            credential = await self.governor.token()
        except Refused as refused:
            outcome[0] = refused.outcome
            self.metrics.governance.labels(refused.outcome).observe(time.perf_counter() - started)
            if refused.outcome == "denied":
                self.metrics.tool_calls.labels(refused.policy, "deny").inc()
            span.set_status(Status(StatusCode.ERROR, refused.code))
            await reply(send, refused.status, refused.body)
            return
        outcome[0] = verdict.outcome
        self.metrics.governance.labels(verdict.outcome).observe(time.perf_counter() - started)
        self.metrics.tool_calls.labels(verdict.policy, "allow").inc()
        query = scope.get("query_string", b"")
        url = f"{upstream}/{rest}" + (f"?{query.decode('latin-1')}" if query else "")
        forwarded = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _HOP
        ]
        forwarded += [("X-Mesh-Agent", self.governor.did), ("X-Mesh-Credential", credential.token)]
        if traceparent:
            forwarded.append(("traceparent", traceparent))
        body = self._body(receive) if method not in ("GET", "HEAD") else None
        extra = [
            (b"x-mesh-decision", verdict.outcome.encode()),
            (b"x-mesh-credential-jti", credential.jti.encode()),
        ]
        await self._forward(send, method, url, forwarded, body, extra, outcome)

    def _traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    async def _body(self, receive: Receive) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise TooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _forward(
        self,
        send: Send,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
        extra: list[tuple[bytes, bytes]],
        outcome: list[str],
    ) -> None:
        started = False
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                data=body,
                timeout=self.upstream_timeout,
                allow_redirects=False,
            ) as resp:
                answer = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in _HOP]
                await send(
                    {
                        "type": "http.response.start",
                        "status": resp.status,
                        "headers": answer + extra,
                    }
                )
                started = True
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except TimeoutError:
            outcome[0] = "upstream_timeout"
            await self._failed(
                send,
                started,
                504,
                "upstream_timeout",
                f"the tool did not answer within {self.settings.upstream_timeout_seconds:g} s",
            )
        except (aiohttp.ClientError, TooLarge) as exc:
            outcome[0] = "upstream_error"
            if isinstance(exc, TooLarge):
                await self._failed(
                    send,
                    started,
                    413,
                    "body_too_large",
                    f"request body over {self.settings.max_body_bytes} bytes",
                )
            else:
                await self._failed(
                    send,
                    started,
                    502,
                    "upstream_error",
                    f"the tool's upstream failed: {type(exc).__name__}: {exc}",
                )

    async def _failed(
        self, send: Send, started: bool, status: int, code: str, message: str
    ) -> None:
        if started:  # the status is gone already: end the body, the client sees it cut short
            await send({"type": "http.response.body", "body": b""})
            return
        await reply(send, status, {"error": code, "message": message})
