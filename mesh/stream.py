"""The JetStream connection the mesh and its sidecars share: how to connect so that a lost
server shows within about two seconds, and the stream's definition.

nats-py pings every two minutes by default, so a frozen server (no reset) would go unnoticed
that long; here a ping goes out every second and two unanswered ones drop the connection.
``on_change(True/False)`` is called on every (re)connect and disconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import nats
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError

from mesh.events import STREAM, SUBJECTS

__all__ = ["EVENT_MAX_AGE_S", "connect", "ensure_stream"]

log = logging.getLogger("mesh.stream")
EVENT_MAX_AGE_S = 24 * 3600.0  # an event older than a day concerns no live credential
DUPLICATE_WINDOW_S = 120.0  # a publish retried within it is stored once (Nats-Msg-Id)


async def connect(url: str, name: str, on_change: Callable[[bool], None]) -> Any:
    """A connection that reconnects for ever; raises when the first attempt fails."""

    async def up() -> None:
        on_change(True)

    async def down() -> None:
        on_change(False)

    async def error(exc: Exception) -> None:
        log.debug("nats %s: %s", name, exc)

    nc = await nats.connect(
        url,
        name=name,
        connect_timeout=1,
        reconnect_time_wait=0.25,
        max_reconnect_attempts=-1,
        ping_interval=1,
        max_outstanding_pings=2,
        allow_reconnect=True,
        disconnected_cb=down,
        reconnected_cb=up,
        error_cb=error,
    )
    on_change(True)
    return nc


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the event stream unless it exists (its settings are then left as they are)."""
    config = api.StreamConfig(
        name=STREAM,
        subjects=[SUBJECTS],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=EVENT_MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.stream_info(STREAM)  # in use with other settings: it exists, keep it
