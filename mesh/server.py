"""Run one mesh process in the foreground (what `meshsre serve` and the local cluster start)."""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from pydantic import ValidationError

from mesh.app import create_app
from mesh.logs import configure
from mesh.settings import Settings

__all__ = ["run", "serve"]


def run(
    host: str,
    port: int,
    storage: str,
    redis: str | None,
    zone: str,
    replica: str,
    nats: str | None = None,
) -> None:
    os.environ.update({"MESH_STORAGE_URL": storage, "MESH_ZONE": zone, "MESH_REPLICA": replica})
    if redis:
        os.environ["MESH_REDIS_URL"] = redis
    if nats:
        os.environ["MESH_NATS_URL"] = nats
    try:
        settings = Settings()
        configure(settings.log_level, zone, replica)
        app = create_app(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MESH_" + str(first["loc"][0]).upper()
        raise SystemExit(f"error: {name}: {first['msg']}") from None
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    serve(app, host, port)


def serve(app: Any, host: str, port: int, **options: Any) -> None:
    """uvicorn as every meshsre server runs it: uvloop, httptools, our own logging."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=5,
        **options,
    )
