"""When an alert fired in one run, expected or measured, and what that makes of its detection
and reset times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Firing"]


@dataclass(frozen=True)
class Firing:
    """The firing evaluations of one alert, in minutes from the start of the run."""

    first: int
    last: int
    steps: int  # evaluations at which it fired
    episodes: int  # separate stretches of firing: 1 is one continuous page
    step: int  # minutes between evaluations

    @classmethod
    def of(cls, at: Sequence[int], step: int) -> Firing | None:
        if not at:
            return None
        episodes = sum(1 for i, t in enumerate(at) if i == 0 or t - at[i - 1] > step)
        return cls(at[0], at[-1], len(at), episodes, step)

    def detection(self, fault_start: int) -> int:
        """Minutes from the fault's start to the first firing evaluation (negative: before)."""
        return self.first - fault_start

    def reset(self, fault_end: int, horizon: int) -> int | None:
        """Minutes from the fault's end to the first evaluation that no longer fires; None when
        it still fires at the end of the run."""
        if self.last + self.step > horizon:
            return None
        return self.last + self.step - fault_end
