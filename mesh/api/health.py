"""Liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mesh.api.common import mesh_of
from mesh.errors import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live(request: Request) -> dict[str, Any]:
    settings = mesh_of(request).settings
    return {"status": "ok", "zone": settings.zone, "replica": settings.replica}


@router.get("/health/ready", responses={503: {"description": "store unreachable"}})
async def ready(request: Request) -> Any:
    mesh = mesh_of(request)
    ok = await mesh.check_ready()
    body = {
        "status": "ready" if ok else "unavailable",
        "zone": mesh.settings.zone,
        "replica": mesh.settings.replica,
        "store": mesh.store.backend,
    }
    return JSONResponse(status_code=200 if ok else 503, content=body)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    mesh = mesh_of(request)
    # A dead store leaves its own metrics stale; every other metric is still served.
    with contextlib.suppress(StoreUnavailable):
        await mesh.store_stats.refresh()
    return Response(generate_latest(mesh.registry), media_type=CONTENT_TYPE_LATEST)
