"""The fault matrix of the SLO alerts: every scenario runs against every SLO it applies to.

A scenario says what happens to an SLO's events after a healthy history: stretches of errors
(as a multiple of the SLO's error budget rate, or as a share of events), single failures at
low traffic, a replica restart, a zone missing from scrapes, or the SLI's good series
vanishing. The backtest turns it into counter series (``alerts.backtest.series``), runs the
real rule files over them in promtool, and sets the outcome beside the window arithmetic
(``alerts.backtest.arithmetic``). Adding a scenario is adding one entry to ``SLO_MATRIX``.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.catalog import SLO

__all__ = ["NOMINAL_PER_MINUTE", "SLO_MATRIX", "Scenario", "Stretch"]

# The traffic the burn scenarios run at: 1,000 events a minute (about 17 a second, the order
# of the nightly's load), far above any low-traffic policy's threshold.
NOMINAL_PER_MINUTE = 1000


@dataclass(frozen=True)
class Stretch:
    """``minutes`` of errors: ``burn`` times the error budget rate, or ``ratio`` of events."""

    minutes: int
    burn: float = 0.0
    ratio: float | None = None

    def error_ratio(self, slo: SLO) -> float:
        return self.ratio if self.ratio is not None else self.burn * slo.error_budget


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: tuple[Stretch, ...] = ()
    noise: float = 0.0  # burn rate of the background, before, during and after the fault
    per_hour: float | None = None  # events an hour; None: NOMINAL_PER_MINUTE
    failures: int = 0  # requests that fail, one after another, from the fault's start
    zones: tuple[str, ...] = ("a",)
    restart: str = ""  # zone whose replica restarts at the fault's start (counters reset)
    absent: tuple[str, int] | None = None  # (zone, minutes) missing from scrapes
    good_missing: bool = False  # the SLI's good series stop being exposed at the fault's start
    note: str = ""  # why the measured times may differ from the window arithmetic
    paged: bool = True  # measured at page resolution too (see ``_SUB_PAGE``)

    @property
    def low_traffic(self) -> bool:
        return self.per_hour is not None

    def fault_minutes(self) -> int:
        """How long the fault lasts; a restart or single failures are instants."""
        if self.absent is not None:
            return self.absent[1]
        return sum(s.minutes for s in self.fault)

    def applies(self, slo: SLO) -> str:
        """Empty when the scenario applies to ``slo``, else why it does not."""
        if self.good_missing and not slo.sli.bucket:
            return "its good events are not a histogram bucket: a missing series means none"
        over = [s for s in self.fault if s.error_ratio(slo) > 1]
        if over:
            return f"{over[0].burn:g}x its {slo.error_budget:.2%} budget is over 100% errors"
        return ""


# A constant burn below the smallest page factor (6x) cannot page: such scenarios run at ticket
# resolution only (the 6x one measures the page boundary), which keeps the backtest quick.
_SUB_PAGE = 6


def _burn(k: float, minutes: int) -> Scenario:
    return Scenario(f"burn-{k:g}x", f"{k:g}x the budget rate for {_span(minutes)}",
                    (Stretch(minutes, burn=k),), paged=k >= _SUB_PAGE)


def _span(minutes: int) -> str:
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _low(per_hour: int) -> tuple[Scenario, Scenario]:
    return (
        Scenario(f"low-{per_hour}-per-h-one-failure", f"{per_hour} requests an hour, one fails",
                 per_hour=per_hour, failures=1),
        Scenario(f"low-{per_hour}-per-h-outage", f"{per_hour} requests an hour, all fail for"
                 " 3 h", (Stretch(180, ratio=1.0),), per_hour=per_hour),
    )


_ZONES = ("a", "b", "c")

SLO_MATRIX: tuple[Scenario, ...] = (
    Scenario("outage", "every request fails for 30 min", (Stretch(30, ratio=1.0),)),
    _burn(100, 30),
    _burn(36, 60),
    _burn(14.4, 180),
    _burn(6, 24 * 60),
    _burn(2, 48 * 60),
    _burn(1, 72 * 60),
    Scenario("slow-burn", "1.2x the budget rate for 3 days: the budget is gone in 25 days",
             (Stretch(72 * 60, burn=1.2),), paged=False),
    Scenario("spike-1m", "half the requests fail for 1 min", (Stretch(1, ratio=0.5),)),
    Scenario("spike-5m", "a tenth of the requests fail for 5 min", (Stretch(5, ratio=0.1),)),
    Scenario("healthy-noise", "errors at half the budget rate, all the time", noise=0.5),
    *_low(1), *_low(10), *_low(100),
    Scenario("counter-reset", "zone a's replica restarts during errors at half the budget rate",
             noise=0.5, zones=_ZONES, restart="a",
             note="after the restart the 5xx series is exposed only from its next error, and"
             " Prometheus cannot count that first error (the series has no earlier sample)"),
    Scenario("zone-absent-1-scrape", "zone b's targets miss one scrape, errors at half the"
             " budget rate", noise=0.5, zones=_ZONES, absent=("b", 1)),
    Scenario("zone-absent-10m", "zone b's targets miss 10 min of scrapes, errors at half the"
             " budget rate", noise=0.5, zones=_ZONES, absent=("b", 10),
             note="while zone b is not scraped its events are missing from the short windows"),
    Scenario("sli-missing", "the SLI's good series (a histogram bucket) vanish for 2 h",
             (Stretch(120),), good_missing=True,
             note="no SLI can be computed without the good series: the burn alerts go quiet"
             " and the SLI-missing alert takes over"),
)
