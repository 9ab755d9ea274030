"""A small real tool for tests, benchmarks and the local cluster: it answers what it was sent.

    python -m mesh.sidecar.tool --port 9000

``GET|POST /<any path>``: JSON with the method, path, query, body size, the agent and the jti
of the credential the sidecar presented (read, not verified), and the trace context.
``/stream?chunks=N&interval=S``: N lines, one every S seconds, chunked. ``/slow?seconds=S``:
answers after S seconds. ``/health/ready`` and ``/health/live``: 200.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from typing import Any
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from mesh.sidecar.proxy import reply

__all__ = ["app", "credential_jti"]


def credential_jti(token: str) -> str | None:
    """The jti claim of a compact JWS, unverified (a real tool verifies with the mesh)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["jti"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _number(query: dict[str, list[str]], name: str, default: float, high: float) -> float:
    try:
        return min(high, max(0.0, float(query.get(name, [default])[0])))
    except ValueError:
        return default


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if path.startswith("/health/"):
        await reply(send, 200, {"status": "ok"})
        return
    if path == "/stream":
        chunks = int(_number(query, "chunks", 3, 1000))
        interval = _number(query, "interval", 0.05, 10)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for i in range(chunks):
            await send(
                {"type": "http.response.body", "body": f"chunk {i}\n".encode(), "more_body": True}
            )
            await asyncio.sleep(interval)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(_number(query, "seconds", 1, 60))
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    headers = dict(scope["headers"])
    credential = headers.get(b"x-mesh-credential", b"").decode("latin-1")
    answer: dict[str, Any] = {
        "method": scope["method"],
        "path": path,
        "query": query,
        "body_bytes": size,
        "agent": headers.get(b"x-mesh-agent", b"").decode("latin-1") or None,
        "credential_jti": credential_jti(credential) if credential else None,
        "traceparent": headers.get(b"traceparent", b"").decode("latin-1") or None,
    }
    await reply(send, 200, answer)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m mesh.sidecar.tool")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
