"""The store's heartbeat, for networked stores: readiness and the breaker at sub-second speed.

Without it, a replica learned that its database was gone only from calls that waited out
their deadline (2 s), and its readiness check waited as long, so the front door kept sending
it requests for two or three seconds after a zone was cut off (the partition drill: 4% of
requests failed). A ping every quarter second that gets no answer within half a second opens
the breaker at once: from then on the replica answers 503 before sending anything, which the
front door retries on another replica (mesh.outcome), and its readiness turns 503.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge

from mesh.breaker import OPEN
from mesh.errors import StoreUnavailable
from mesh.store import Store

__all__ = ["Heartbeat"]

log = logging.getLogger("mesh.heartbeat")

EVERY_S, BOUND_S = 0.25, 0.5


class Heartbeat:
    def __init__(self, store: Store, store_up: Gauge) -> None:
        self.store = store
        self.store_up = store_up
        self.ok = True

    def _beat(self, ok: bool) -> None:
        breaker = self.store.breaker
        # Open already: leave it to half-open on time, when a ping is its trial call.
        if not ok and breaker is not None and breaker.state != OPEN:
            breaker.trip()
        self.ok = ok
        self.store_up.set(1 if ok else 0)

    async def run(self) -> None:
        ping: asyncio.Task[None] | None = None
        while True:
            if ping is None or ping.done():
                ping = asyncio.ensure_future(self.store.ping())
            # A ping still hanging from the last beat is waited on again, never doubled.
            done, _ = await asyncio.wait({ping}, timeout=BOUND_S)
            self._beat(bool(done) and _answered(ping))
            await asyncio.sleep(EVERY_S)


def _answered(ping: asyncio.Task[None]) -> bool:
    try:
        ping.result()
    except StoreUnavailable:
        return False
    except Exception:
        log.exception("the store's heartbeat ping failed unexpectedly")
        return False
    return True
