"""The load profiles as Locust ``LoadTestShape`` classes (imports Locust: load it only there).

They read ``--users``, ``--run-time`` and the workload's ``--rate`` (``use_common_options``),
so the web UI's fields drive them too. The first class is the default; ``--shape NAME``
selects another (``hooks.select_shape``), and ``--class-picker`` offers all four in the web UI.
"""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from loadtests.profiles import PROFILES, LoadParams, Stage

__all__ = ["SHAPES", "PacedShape", "SoakShape", "SpikeShape", "SteadyShape", "StepShape"]


class PacedShape(LoadTestShape):
    abstract = True
    use_common_options = True
    profile: ClassVar[str] = "steady"

    def params(self) -> LoadParams:
        assert self.runner is not None
        opts = self.runner.environment.parsed_options
        assert opts is not None
        return LoadParams(users=max(1, int(opts.num_users or 1)), rate=float(opts.rate),
                          duration=float(opts.run_time) if opts.run_time else None)

    def stage(self) -> Stage | None:
        return PROFILES[self.profile](self.get_run_time(), self.params())

    def target_rate(self) -> float:
        """The rate every pacer together should offer now (0 once the shape has ended)."""
        stage = self.stage()
        return 0.0 if stage is None else stage.rate

    def tick(self) -> tuple[int, float] | None:
        stage = self.stage()
        return None if stage is None else (stage.users, stage.spawn_rate)


class SteadyShape(PacedShape):
    """A constant arrival rate after a short ramp: the nightly job's steady load."""

    profile = "steady"


class StepShape(PacedShape):
    """The rate climbs in four equal stairs to --rate."""

    profile = "step"


class SpikeShape(PacedShape):
    """--rate, then three times --rate during the middle fifth of the run, then --rate."""

    profile = "spike"


class SoakShape(PacedShape):
    """A constant rate for a long time (an hour unless --run-time says otherwise)."""

    profile = "soak"


SHAPES: dict[str, type[PacedShape]] = {
    cls.profile: cls for cls in (SteadyShape, StepShape, SpikeShape, SoakShape)
}
