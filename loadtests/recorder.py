"""Per-request measurements, aggregated per second and per route, mergeable across processes.

Every request is recorded twice: its *service time* (what Locust reports: send to response)
and its *corrected* latency (from the pacer's intended send time to the response), which is
what a user arriving on schedule would have seen. Workers drain their live seconds to the
master with every report; the master folds seconds that can no longer change into finished
rows, so a soak run keeps only totals and a few live seconds in memory.

>>> r = Recorder()
>>> r.record("POST", "/v1/policy/decide", 200, service_ms=2.0, lag_ms=0.5, second=10)
>>> r.routes["POST /v1/policy/decide"].corrected.max
2.5
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtests.histogram import Histogram

__all__ = ["ERROR_KINDS", "Cell", "Recorder", "error_kind", "is_server_error", "route_key"]

# How a request failed, as a zone failure shows it: no answer in time, a connection refused or
# cut, or an answer that is a server error (the front door's 503 and 504 included).
ERROR_KINDS = ("timeout", "refused", "reset", "5xx", "other")


def route_key(method: str, route: str) -> str:
    return f"{method} {route}"


def is_server_error(status: int) -> bool:
    """5xx, or no answer at all (0): what the availability SLOs count as bad."""
    return status == 0 or status >= 500


def error_kind(status: int, exception: BaseException | None) -> str | None:
    """The kind of a failed request; None when it got an answer that is not a server error."""
    if status >= 500:
        return "5xx"
    if status:
        return None
    if exception is None:
        return "other"
    if isinstance(exception, TimeoutError) or "timeout" in type(exception).__name__.lower():
        return "timeout"
    if isinstance(exception, ConnectionRefusedError):
        return "refused"
    if isinstance(exception, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    return "other"


@dataclass
class Cell:
    """Requests of one route: in one second, or (``Recorder.routes``) over the whole run."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0  # any unexpected answer, as Locust counts them
    late: int = 0  # sent later than late_after past the intended time
    service: Histogram = field(default_factory=Histogram)
    corrected: Histogram = field(default_factory=Histogram)
    errors: Counter[str] = field(default_factory=Counter)  # by ERROR_KINDS

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if is_server_error(code))

    def add(self, other: Cell) -> None:
        self.statuses.update(other.statuses)
        self.failures += other.failures
        self.late += other.late
        self.service.merge(other.service)
        self.corrected.merge(other.corrected)
        self.errors.update(other.errors)

    def to_wire(self) -> list[Any]:
        return [[[code, n] for code, n in self.statuses.items()], self.failures, self.late,
                self.service.to_wire(), self.corrected.to_wire(), dict(self.errors)]

    @classmethod
    def from_wire(cls, w: list[Any]) -> Cell:
        return cls(Counter({int(code): int(n) for code, n in w[0]}), int(w[1]), int(w[2]),
                   Histogram.from_wire(w[3]), Histogram.from_wire(w[4]),
                   Counter({str(k): int(n) for k, n in (w[5] if len(w) > 5 else {}).items()}))

    def row(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "failures": self.failures,
            "server_errors": self.server_errors, "late": self.late,
            "p50_ms": round(self.service.quantile(0.50), 3),
            "p95_ms": round(self.service.quantile(0.95), 3),
            "p99_ms": round(self.service.quantile(0.99), 3),
            "p99_corrected_ms": round(self.corrected.quantile(0.99), 3),
            "errors": dict(sorted(self.errors.items())),
        }

    def totals(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "failures": self.failures,
            "server_errors": self.server_errors, "late": self.late,
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "service_ms": self.service.summary(), "corrected_ms": self.corrected.summary(),
            "errors": dict(sorted(self.errors.items())),
        }


class Recorder:
    def __init__(self, late_after_ms: float = 50.0) -> None:
        self.late_after_ms = late_after_ms
        self.routes: dict[str, Cell] = {}  # key "METHOD /route/template" -> whole run
        self.cells: dict[tuple[int, str], Cell] = {}  # live seconds
        self.rows: dict[int, dict[str, dict[str, Any]]] = {}  # finished seconds

    def record(self, method: str, route: str, status: int, service_ms: float,
               lag_ms: float | None = None, failed: bool = False, second: int = 0,
               kind: str | None = None) -> None:
        """``kind``: how it failed (``error_kind``), None when it did not."""
        key = route_key(method, route)
        lag = max(lag_ms or 0.0, 0.0)
        late = lag_ms is not None and lag > self.late_after_ms
        for cell in (self._cell(second, key), self._total(key)):
            cell.statuses[status] += 1
            cell.failures += failed
            cell.late += late
            cell.service.record(service_ms)
            cell.corrected.record(service_ms + lag)
            if kind is not None:
                cell.errors[kind] += 1

    def _cell(self, second: int, key: str) -> Cell:
        cell = self.cells.get((second, key))
        if cell is None:
            cell = self.cells[(second, key)] = Cell()
        return cell

    def _total(self, key: str) -> Cell:
        cell = self.routes.get(key)
        if cell is None:
            cell = self.routes[key] = Cell()
        return cell

    def drain(self) -> list[Any]:
        """Live seconds in wire form, emptied: what a worker sends to the master."""
        wire = [[second, key, cell.to_wire()] for (second, key), cell in self.cells.items()]
        self.cells.clear()
        return wire

    def merge(self, wire: list[Any]) -> None:
        for second, key, w in wire:
            cell = Cell.from_wire(w)
            self._cell(int(second), key).add(cell)
            self._total(key).add(cell)

    def finish(self, before: int | None = None) -> None:
        """Fold live seconds older than ``before`` (all when None) into finished rows."""
        for second, key in sorted(self.cells):
            if before is None or second < before:
                self.rows.setdefault(second, {})[key] = self.cells.pop((second, key)).row()
