"""Load profiles: the target request rate (and user pool) over time, as pure functions.

In an open model the *rate* is the load; users are only the pool of concurrent senders, sized
for the peak, and stay constant so that no user is stopped while a write is in flight (its
acknowledgement would be lost from the ledger). ``loadtests.shapes`` wraps each profile in a
Locust ``LoadTestShape``; the master reads the rate from it and splits it across workers.

>>> p = LoadParams(users=10, rate=100.0, duration=60.0)
>>> [round(spike(t, p).rate) for t in (1.0, 10.0, 30.0, 50.0)]
[20, 100, 300, 100]
>>> steady(60.0, p) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_DURATIONS", "PROFILES", "LoadParams", "Stage", "peak_rate"]

SPIKE_FACTOR = 3.0  # the spike offers three times the base rate
SPIKE_WINDOW = (0.4, 0.6)  # ...during the middle fifth of the run
STEPS = 4  # step climbs to the target rate in four equal stairs
MAX_RAMP_S = 5.0
# A profile needs an end unless it is steady (the web UI may run that until stopped).
DEFAULT_DURATIONS = {"steady": None, "step": 240.0, "spike": 120.0, "soak": 3600.0}


@dataclass(frozen=True)
class LoadParams:
    users: int
    rate: float  # requests per second, all workers together
    duration: float | None = None  # seconds; None: until stopped

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be at least 1, got {self.users}")
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of requests/s, got {self.rate}")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be positive, got {self.duration}")

    @property
    def ramp(self) -> float:
        """Seconds to reach the target: short, so a CI run measures mostly steady state."""
        return MAX_RAMP_S if self.duration is None else min(MAX_RAMP_S, self.duration / 10)


@dataclass(frozen=True)
class Stage:
    users: int
    spawn_rate: float
    rate: float


def _stage(p: LoadParams, t: float, rate: float) -> Stage:
    spawn_rate = max(1.0, p.users / max(p.ramp, 1.0))
    warm = min(1.0, max(t, 0.0) / p.ramp) if p.ramp > 0 else 1.0
    return Stage(p.users, spawn_rate, rate * max(warm, 0.05))


def _ended(t: float, p: LoadParams, name: str) -> bool:
    duration = p.duration if p.duration is not None else DEFAULT_DURATIONS[name]
    return duration is not None and t >= duration


def steady(t: float, p: LoadParams) -> Stage | None:
    return None if _ended(t, p, "steady") else _stage(p, t, p.rate)


def soak(t: float, p: LoadParams) -> Stage | None:
    return None if _ended(t, p, "soak") else _stage(p, t, p.rate)


def step(t: float, p: LoadParams) -> Stage | None:
    if _ended(t, p, "step"):
        return None
    duration = p.duration or DEFAULT_DURATIONS["step"] or 1.0
    stair = min(STEPS, int(t / (duration / STEPS)) + 1)
    return Stage(p.users, max(1.0, p.users / max(p.ramp, 1.0)), p.rate * stair / STEPS)


def spike(t: float, p: LoadParams) -> Stage | None:
    if _ended(t, p, "spike"):
        return None
    duration = p.duration or DEFAULT_DURATIONS["spike"] or 1.0
    start, end = (duration * f for f in SPIKE_WINDOW)
    return _stage(p, t, p.rate * (SPIKE_FACTOR if start <= t < end else 1.0))


Profile = Callable[[float, LoadParams], "Stage | None"]
PROFILES: dict[str, Profile] = {"steady": steady, "step": step, "spike": spike, "soak": soak}


def peak_rate(name: str, p: LoadParams) -> float:
    return p.rate * SPIKE_FACTOR if name == "spike" else p.rate
