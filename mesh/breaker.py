"""A circuit breaker: after ``threshold`` consecutive failures, stop calling the dependency
for ``reset_after`` seconds, then let one trial call through (half-open)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import Gauge

__all__ = ["OPEN", "BreakerOpen", "CircuitBreaker"]

T = TypeVar("T")
CLOSED, HALF_OPEN, OPEN = 0, 1, 2


class BreakerOpen(Exception):
    pass


class CircuitBreaker:
    def __init__(
        self, name: str, gauge: Gauge, threshold: int = 3, reset_after: float = 5.0
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_after = reset_after
        self._gauge = gauge.labels(name)
        self._failures = 0
        self._opened_at = 0.0
        self._state = CLOSED
        self._gauge.set(CLOSED)

    @property
    def state(self) -> int:
        if self._state == OPEN and time.monotonic() - self._opened_at >= self.reset_after:
            self._set(HALF_OPEN)
        return self._state

    def _set(self, state: int) -> None:
        self._state = state
        self._gauge.set(state)

    def allow(self) -> bool:
        return self.state != OPEN

    def success(self) -> None:
        self._failures = 0
        if self._state != CLOSED:
            self._set(CLOSED)

    def failure(self) -> None:
        self._failures += 1
        if self._state == HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = time.monotonic()
            self._set(OPEN)

    def trip(self) -> None:
        """Open now: a heartbeat saw the dependency gone before any call failed."""
        self._opened_at = time.monotonic()
        self._set(OPEN)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.allow():
            raise BreakerOpen(self.name)
        try:
            result = await fn()
        except Exception:
            self.failure()
            raise
        self.success()
        return result
