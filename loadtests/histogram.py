"""A small mergeable latency histogram with bounded relative error (log-spaced buckets).

Raw samples would grow without bound over a soak run and cannot cheaply travel from a Locust
worker to the master every few seconds; a sparse map of log-spaced buckets does both, in the
spirit of HdrHistogram, with every quantile within 1% of the true sample.

>>> h = Histogram()
>>> for ms in (1.0, 2.0, 3.0, 100.0):
...     h.record(ms)
>>> round(h.quantile(0.5), 1), h.count, h.max
(2.0, 4, 100.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["Histogram"]

# Buckets grow by 2% (a quantile lands within 1% of a sample); values are milliseconds and
# anything under one microsecond shares the first bucket.
_GROWTH = math.log(1.02)
_FLOOR_MS = 0.001


class Histogram:
    __slots__ = ("buckets", "count", "max", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    @staticmethod
    def _index(ms: float) -> int:
        return int(math.log(max(ms, _FLOOR_MS) / _FLOOR_MS) / _GROWTH)

    @staticmethod
    def _value(index: int) -> float:
        # The bucket's geometric middle: within 1% of anything that fell in it.
        return _FLOOR_MS * math.exp((index + 0.5) * _GROWTH)

    def record(self, ms: float, n: int = 1) -> None:
        i = self._index(ms)
        self.buckets[i] = self.buckets.get(i, 0) + n
        self.count += n
        self.total += ms * n
        if ms > self.max:
            self.max = ms

    def merge(self, other: Histogram) -> None:
        for i, n in other.buckets.items():
            self.buckets[i] = self.buckets.get(i, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile in ms (0.0 for an empty histogram), capped at the exact max."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        if rank >= self.count:
            return self.max
        seen = 0
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen >= rank:
                return min(self._value(i), self.max)
        return self.max

    def share_at_most(self, ms: float) -> float:
        """Fraction of samples at or under ``ms`` (bucket resolution), 1.0 when empty."""
        if not self.count:
            return 1.0
        limit = self._index(ms)
        return sum(n for i, n in self.buckets.items() if i <= limit) / self.count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "p50": round(self.quantile(0.50), 3), "p95": round(self.quantile(0.95), 3),
            "p99": round(self.quantile(0.99), 3), "p999": round(self.quantile(0.999), 3),
            "max": round(self.max, 3), "mean": round(self.mean, 3),
        }

    # Wire form for Locust's worker->master reports (msgpack wants lists and str keys).
    def to_wire(self) -> list[float]:
        flat: list[float] = [self.count, self.total, self.max]
        for i, n in self.buckets.items():
            flat += (i, n)
        return flat

    @classmethod
    def from_wire(cls, flat: Iterable[float]) -> Histogram:
        values = list(flat)
        h = cls()
        h.count, h.total, h.max = int(values[0]), float(values[1]), float(values[2])
        pairs = values[3:]
        h.buckets = {int(pairs[k]): int(pairs[k + 1]) for k in range(0, len(pairs), 2)}
        return h
