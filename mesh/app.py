"""The mesh's ASGI application: routes, error bodies, the edge middleware, the lifespan."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from mesh import __version__, outcome
from mesh.api import agents, audit, credentials, decisions, handshakes, health
from mesh.errors import MeshError, RateLimited, StoreUnavailable
from mesh.middleware import EdgeMiddleware
from mesh.runtime import Mesh
from mesh.settings import Settings
from mesh.tracing import tracer

__all__ = ["create_app"]


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    first = details[0]
    return JSONResponse(
        status_code=422,
        content={
            "error": "invalid_request",
            "field": first["field"],
            "message": f"{first['field']}: {first['message']}",
            "details": details,
        },
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        status_code=exc.status_code,
        headers=exc.headers,
        content={"error": code, "message": str(exc.detail)},
    )


async def _mesh_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MeshError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    elif exc.status == 503:
        headers = {"Retry-After": "1"}
        if isinstance(exc, StoreUnavailable) and outcome.may_have_written():
            # A write was sent before the store failed: its outcome is unknown (mesh.outcome).
            body = exc.body()
            body["message"] = f"{exc.message}; a write was sent before it failed and may apply"
            return JSONResponse(status_code=504, content=body, headers=headers)
    return JSONResponse(status_code=exc.status, content=exc.body(), headers=headers)


def _prefiltered(route: Any) -> None:
    """Starlette tries routes in order, a regex and some bookkeeping each (about 3 us a route
    here, 25 us by the tenth); a path that cannot match is now turned away by its literal
    prefix first, so a route's place in the list hardly costs anything."""
    prefix = route.path.split("{", 1)[0]
    static = prefix == route.path
    full = route.matches

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not scope.get("root_path"):
            path = scope["path"]
            if (path != prefix) if static else not path.startswith(prefix):
                return Match.NONE, {}
        return full(scope)  # type: ignore[no-any-return]

    route.matches = matches


def create_app(
    settings: Settings | None = None, registry: CollectorRegistry | None = None
) -> FastAPI:
    settings = settings or Settings()
    mesh = Mesh(settings, registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await mesh.start()
        try:
            yield
        finally:
            await mesh.stop()

    app = FastAPI(
        title="agentmesh reference runtime",
        version=__version__,
        lifespan=lifespan,
        # The edge middleware owns request telemetry; FastAPI's own would only add cost.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.mesh = mesh
    # Flat routes: FastAPI matches included routers through wrappers that cost about 8% of a
    # request here (measured in-process), for no benefit to this app. Routes are matched in
    # order, a regex each, so the governance hot path (decisions) comes first and the docs
    # pages last.
    docs = list(app.router.routes)
    app.router.routes.clear()
    for module in (decisions, health, handshakes, credentials, agents, audit):
        app.router.routes.extend(module.router.routes)
    app.router.routes.extend(docs)
    for route in app.router.routes:
        _prefiltered(route)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(MeshError, _mesh_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(
        EdgeMiddleware,
        metrics=mesh.metrics,
        tracer=tracer(settings.zone, settings.replica),
        limits=mesh.limits,
        max_inflight=settings.max_inflight,
        max_body=settings.max_body_bytes,
        access_log=settings.access_log,
        routes=app.router.routes,
    )
    return app
