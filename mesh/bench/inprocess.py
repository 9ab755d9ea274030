"""`python -m mesh.bench.inprocess`: where a request's CPU goes, without a network or wrk.

The app runs in this process and is called through ASGI, a batch of concurrent requests at a
time (as wrk's connections would arrive in one loop turn), so the CPU per request is the app's
alone: routing, middleware, validation, crypto, the store. Registrations are measured against
the hello-world route, the same comparison `make bench` makes over HTTP; ``--profile`` prints
where the registrations' time went (cProfile, which slows every Python call it sees).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from meshsre.identity import AgentKey

__all__ = ["main"]

Call = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"inprocess")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "state": {},
        "server": ("127.0.0.1", 80),
    }  # fmt: skip


async def _request(app: Call, method: str, path: str, body: bytes) -> int:
    status = [0]
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # the app asks again only to watch for a disconnect
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    await app(_scope(method, path, body), receive, send)
    return status[0]


async def _cpu_per_request(
    app: Call, method: str, path: str, bodies: list[bytes], concurrency: int
) -> float:
    """Microseconds of this process's CPU per request; raises on any non-2xx answer."""
    started = time.process_time()
    for i in range(0, len(bodies), concurrency):
        chunk = bodies[i : i + concurrency]
        codes = await asyncio.gather(*(_request(app, method, path, b) for b in chunk))
        if bad := [c for c in codes if not 200 <= c < 300]:
            raise SystemExit(f"error: {method} {path} answered {bad[0]}; see the mesh log")
    return (time.process_time() - started) / len(bodies) * 1e6


async def _measure(requests: int, concurrency: int, profile: bool) -> dict[str, float]:
    from mesh.app import create_app
    from mesh.settings import Settings

    print(f"signing {requests} registrations ...", flush=True)
    bodies = [
        json.dumps(
            AgentKey.generate().registration(f"a{i}", "bench@example.com", ["http"])
        ).encode()
        for i in range(requests)
    ]
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        warm = bodies[: requests // 10]
        await _cpu_per_request(app, "POST", "/v1/agents", warm, concurrency)
        hello = await _cpu_per_request(app, "GET", "/health/live", [b""] * requests, concurrency)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        rest = bodies[len(warm) :]
        registration = await _cpu_per_request(app, "POST", "/v1/agents", rest, concurrency)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return {"hello_us": hello, "registration_us": registration}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mesh.bench.inprocess", description=__doc__)
    parser.add_argument("--requests", type=int, default=6000, help="of each kind (default 6000)")
    parser.add_argument("--concurrency", type=int, default=14, help="requests per loop turn")
    parser.add_argument("--profile", action="store_true", help="cProfile the registrations")
    args = parser.parse_args()
    if args.requests < 10 or args.concurrency < 1:
        parser.error("--requests must be at least 10 and --concurrency at least 1")
    os.environ.setdefault("MESH_STORAGE_URL", f"sqlite:///{tempfile.mkdtemp()}/inprocess.db")
    os.environ.setdefault("MESH_ACCESS_LOG", "false")
    # One client address sends every request: the limit stays on (its cost is measured) but
    # out of reach.
    os.environ.setdefault("MESH_CLIENT_RATE_PER_SECOND", "100000000")
    os.environ.setdefault("MESH_CLIENT_BURST", "100000000")
    import uvloop

    result = uvloop.run(_measure(args.requests, args.concurrency, args.profile))
    hello, registration = result["hello_us"], result["registration_us"]
    print(f"CPU per hello world:   {hello:7.1f} us")
    print(f"CPU per registration:  {registration:7.1f} us  ({registration - hello:.1f} us more)")
    print(f"registrations / hello: {hello / registration:.3f} (CPU-bound rate ratio)")


if __name__ == "__main__":
    main()
