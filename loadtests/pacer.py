"""Open-model pacing: a schedule of intended send times that does not wait for the server.

Locust is a closed model: each user waits for a response before its next request, so a slow
server quietly lowers the offered load and hides its own slowness (coordinated omission). The
pacer instead releases one request slot every ``1/rate`` seconds for this process, whatever
the server does. Released slots queue up; any free user takes the oldest and sends at once. A
slot taken after its time is *late*, and its latency counts from the slot's time, not from
when it was finally sent. A slot older than ``max_lag`` is *dropped*: never sent, counted like
k6's ``dropped_iterations``, so a generator that cannot keep up says so instead of slowing
down. Slots are released only when due (never claimed ahead), so a rate change applies at once.

The global rate is split by the master: each worker's pacer gets ``rate / workers``, and the
users of one process share its pacer. This class is the pure schedule and its counts; the
Locust glue (``hooks``) runs the clock and the queue.

>>> p = Pacer(max_lag=5.0)
>>> p.set_rate(4.0, now=100.0)
>>> p.due(now=100.6)
[100.0, 100.25, 100.5]
>>> len(p.due(now=110.0)), p.dropped  # slots more than 5 s old when released are dropped
(21, 17)
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["Pacer"]


class Pacer:
    def __init__(self, max_lag: float = 5.0) -> None:
        if not max_lag > 0:
            raise ValueError("max_lag must be positive")
        self.max_lag = max_lag
        self.rate = 0.0
        # Slot k is due at origin + k / rate: counted, not summed, so a long run does not drift.
        self._origin: float | None = None
        self._k = 0
        self.offered = 0
        self.dropped = 0
        # Per wall-clock second (as the caller labels it), drained into the run record.
        self.offered_by_second: Counter[int] = Counter()
        self.dropped_by_second: Counter[int] = Counter()

    @property
    def next_due(self) -> float | None:
        if self.rate <= 0 or self._origin is None:
            return None
        return self._origin + self._k / self.rate

    def _start_at(self, t: float) -> None:
        self._origin, self._k = t, 0

    def set_rate(self, rate: float, now: float) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a finite number >= 0, got {rate}")
        pending = self.next_due
        self.rate = rate
        if rate <= 0:
            return
        if pending is None:
            self._start_at(now)  # starting, or resuming after a pause: nothing owed
        elif pending > now:
            # The pending slot was spaced for the old rate; a faster rate must not wait.
            self._start_at(min(pending, now + 1.0 / rate))
        else:
            self._start_at(pending)  # a backlog keeps its place

    def restart(self, now: float) -> None:
        """Begin the schedule at ``now``: nothing is owed for the time before."""
        if self.rate > 0:
            self._start_at(now)

    def due(self, now: float, second: int | None = None) -> list[float]:
        """Release every slot whose time has come (oldest first)."""
        nxt = self.next_due
        if nxt is None:
            return []
        second = int(now) if second is None else second
        oldest = now - self.max_lag
        if nxt < oldest:  # the clock itself fell behind (a starved process)
            missed = math.ceil((oldest - nxt) * self.rate - 1e-9)
            self._k += missed
            self.offered += missed
            self.offered_by_second[second] += missed
            self.drop(missed, second)
        slots = []
        while (nxt := self.next_due) is not None and nxt <= now:
            slots.append(nxt)
            self._k += 1
        self.offered += len(slots)
        self.offered_by_second[second] += len(slots)
        return slots

    def drop(self, n: int, second: int) -> None:
        """Count released slots that were never sent (too old, or left at the end)."""
        if n > 0:
            self.dropped += n
            self.dropped_by_second[second] += n

    def drain(self) -> tuple[dict[int, int], dict[int, int]]:
        offered, dropped = dict(self.offered_by_second), dict(self.dropped_by_second)
        self.offered_by_second.clear()
        self.dropped_by_second.clear()
        return offered, dropped
