"""Run one mesh process in the foreground (what `meshsre serve` and the local cluster start)."""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from pydantic import ValidationError

from mesh.app import create_app
from mesh.httpguard import guarded_protocol
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
    trusted = [a.strip() for a in settings.trusted_proxies.split(",") if a.strip()]
    serve(
        app,
        host,
        port,
        http=guarded_protocol(
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
            settings.max_header_bytes,
            app.state.mesh.metrics.rejected,
        ),
        # X-Forwarded-For names the client (for its rate limit) only when a trusted proxy
        # sent it; by default no one is trusted, and the peer's address is the client.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
    )


def serve(app: Any, host: str, port: int, **options: Any) -> None:
    """uvicorn as every meshsre server runs it: uvloop, httptools (unless ``options`` name
    another protocol), our own logging."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        **{"http": "httptools", "timeout_graceful_shutdown": 5, **options},
    )
