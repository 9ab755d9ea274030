"""The store: one async interface over SQLite, PostgreSQL or memory, chosen by URL.

Every call runs under a timeout (the driver's own when it bounds such calls), is timed into
``agentmesh_storage_operation_duration_seconds`` and counted in ``agentmesh_storage_errors``
when it fails, so a slow or dead database shows up in metrics, not only in latency.

Given the log key's ``sign_entry``, the last audit entry each write batch appends is signed
with it (``records.sign_tail``); the key itself stays in the process, never in the store.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mesh import outcome
from mesh.breaker import CircuitBreaker
from mesh.errors import StoreUnavailable
from mesh.store import records, schema
from mesh.store.backends import open_driver
from mesh.store.driver import Driver, Work
from mesh.telemetry import Metrics

__all__ = ["Store", "open_store", "records"]

T = TypeVar("T")


EntrySigner = Callable[[str], str]  # an entry's hash (hex) -> its signature (base64)


def _signing(work: Work[T], sign: EntrySigner) -> Work[T]:
    def signed(cur: Any) -> T:
        cur.audit_signer = sign  # see records.append_audit
        return work(cur)

    return signed


class Store:
    def __init__(
        self,
        driver: Driver,
        metrics: Metrics,
        timeout_s: float = 2.0,
        breaker: CircuitBreaker | None = None,
        sign_entry: EntrySigner | None = None,
    ) -> None:
        self.driver = driver
        self.sign_entry = sign_entry
        self.backend = driver.backend
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.breaker = breaker
        self._timers: dict[str, Any] = {}  # labelled children: labels() costs a lock and a lookup

    async def call(self, operation: str, work: Work[T], *, write: bool = False) -> T:
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            self._error(operation, "breaker_open")
            raise StoreUnavailable(
                f"storage breaker open: {self.backend} failed {breaker.threshold} calls in"
                f" a row; next try within {breaker.reset_after:g}s"
            )
        started = time.perf_counter()
        if write:
            outcome.wrote()
            if self.sign_entry is not None:
                work = _signing(work, self.sign_entry)
        try:
            try:
                result = await self._attempt(work, write)
            except StoreUnavailable:
                if write:
                    raise  # a write may have committed before the error: never replay it
                # One retry with jitter rides out a dropped pooled connection; spreading the
                # retries keeps a recovering database from a thundering herd.
                self._error(operation, "retried")
                await asyncio.sleep(random.uniform(0.01, 0.05))
                result = await self._attempt(work, write)
            if breaker is not None:
                breaker.success()
            return result
        except TimeoutError as exc:
            self._error(operation, "timeout")
            if breaker is not None:
                breaker.failure()
            raise StoreUnavailable(
                f"storage call {operation} timed out after {self.timeout_s:g}s"
            ) from exc
        except StoreUnavailable:
            self._error(operation, "unavailable")
            if breaker is not None:
                breaker.failure()
            raise
        finally:
            timer = self._timers.get(operation)
            if timer is None:
                timer = self._timers[operation] = self.metrics.storage_duration.labels(
                    self.backend, operation
                )
            timer.observe(time.perf_counter() - started)

    async def _attempt(self, work: Work[T], write: bool) -> T:
        if self.driver.bounds_writes if write else self.driver.bounds_reads:
            return await self.driver.call(work, write)
        async with asyncio.timeout(self.timeout_s):
            return await self.driver.call(work, write)

    def _error(self, operation: str, kind: str) -> None:
        self.metrics.storage_errors.labels(self.backend, operation, kind).inc()

    async def migrate(self) -> None:
        statements, backend = schema.statements(self.backend), self.backend

        def work(cur: Any) -> None:
            for sql in statements:
                cur.execute(sql)
            schema.add_missing_columns(cur, backend)
            schema.drop_private_keys(cur, backend)
            records.ensure_genesis(cur)

        await self.call("migrate", work, write=True)

    async def ping(self) -> None:
        await self.call("ping", records.ping)

    def close(self) -> None:
        self.driver.close()


def open_store(
    url: str, metrics: Metrics, timeout_s: float = 2.0, sign_entry: EntrySigner | None = None
) -> Store:
    driver = open_driver(url, timeout_s)
    # A networked database gets a breaker: while it fails over (about 20 s on the Patroni tier)
    # every call would otherwise wait out its connect or pool timeout, holding a worker thread
    # each; open, the breaker answers 503 at once and lets one call through a second later.
    # SQLite fails only with this process, so it has none.
    breaker = None
    if driver.backend == "postgresql":
        breaker = CircuitBreaker("postgres", metrics.breaker_state, threshold=5, reset_after=1.0)
    return Store(driver, metrics, timeout_s, breaker, sign_entry)
