"""Agent records by DID, kept in memory so that the governance hot path (signed requests,
policy decisions, handshakes) does not read the store on every call.

The audit log is the change feed: every change to an agent appends an entry naming it, so a
replica learns of changes made through the others by polling the log's tail (every 0.1 s by
default, the same floor as revocations), and drops those agents. Changes made through this
replica drop the agent at once. A read that raced with a drop is not kept; a restore (the
entry followed from is gone or hashes differently) or an unreachable store empties the cache;
and an entry lives at most ``ttl_s`` whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from mesh.errors import StoreUnavailable
from mesh.store import Store, records
from mesh.telemetry import Metrics

__all__ = ["AgentCache"]


class AgentCache:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        poll_s: float,
        ttl_s: float = 60.0,
        max_entries: int = 100_000,
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}
        self._drops = 0  # bumped by every drop, so a read that raced with one is not kept
        self._since: tuple[int, str] | None = None  # the log entry (seq, hash) followed from
        self._task: asyncio.Task[None] | None = None
        self._hit = metrics.agent_cache.labels("hit")
        self._miss = metrics.agent_cache.labels("miss")

    async def get(self, did: str) -> dict[str, Any] | None:
        """The agent's record, shared with other callers: read it, never change it."""
        now = time.monotonic()
        entry = self._entries.get(did)
        if entry is not None and entry[0] > now:
            self._hit.inc()
            return entry[1]
        self._miss.inc()
        drops, following = self._drops, self._since is not None
        agent = await self.store.call("get_agent", records.get_agent(did))
        if agent is not None and following and drops == self._drops:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[did] = (now + self.ttl_s, agent)
        return agent

    def drop(self, did: str) -> None:
        self._entries.pop(did, None)
        self._drops += 1

    def clear(self) -> None:
        self._entries.clear()
        self._drops += 1

    async def follow_once(self) -> None:
        """Drops the agents changed since the last call (by any replica)."""
        head, changed = await self.store.call("agent_changes", records.agent_changes(self._since))
        if changed is None:
            self.clear()  # the entry we followed from is gone: the store was restored under us
        for did in changed or ():
            self.drop(did)
        self._since = head

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            try:
                await self.follow_once()
            except StoreUnavailable:
                # Changes may be missed while the store is away: start afresh when it is back.
                self.clear()
                self._since = None
            await asyncio.sleep(self.poll_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
