"""A scenario as counts: events and errors per zone and per scrape step, after a healthy history.

Two resolutions, because tickets look back days and pages hours, and promtool evaluates every
rule at every step from time zero:

- page: scraped and evaluated every minute, after 6 hours of history (the longest page
  window). A constant stretch is cut to 6 hours 10 minutes: a page window (6 h at most)
  cannot tell it from a longer one.
- ticket: every hour (every ticket window is a multiple of it, and tickets act in hours),
  after 3 days of history.

Counts are whole events. Errors follow the exact cumulative share, so 14.4x a 0.1% budget at
1,000 events a minute is 72 errors in every 5 minutes, never 71 or 73.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from alerts.backtest.scenarios import NOMINAL_PER_MINUTE, Scenario
from alerts.catalog import SLO
from alerts.windows import GOOGLE_30D, Severity, seconds

__all__ = ["PAGE", "RESOLUTIONS", "TICKET", "Resolution", "Timeline", "timeline"]


@dataclass(frozen=True)
class Resolution:
    name: Severity  # the burn alerts measured at it
    step: int  # minutes between scrapes, and between rule evaluations
    history: int  # minutes of history before the fault
    tail: int  # minutes after the fault, for the alerts to reset
    clip: int | None  # longest constant stretch kept, in minutes


def _minutes(severity: Severity, end: str) -> int:
    return max(seconds(getattr(w, end)) for w in GOOGLE_30D if w.severity == severity) // 60


PAGE = Resolution("page", 1, _minutes("page", "long"), _minutes("page", "short") + 5,
                  _minutes("page", "long") + 10)
TICKET = Resolution("ticket", 60, _minutes("ticket", "long"), _minutes("ticket", "short") + 60,
                    None)
RESOLUTIONS = (PAGE, TICKET)


@dataclass(frozen=True)
class Timeline:
    """Counts per zone in steps 1..n (index 0 is the start, with nothing counted yet)."""

    resolution: Resolution
    zones: tuple[str, ...]
    events: tuple[tuple[int, ...], ...]
    errors: tuple[tuple[int, ...], ...]
    fault_start: int  # minutes from the start
    fault_end: int
    per_minute: Fraction  # the traffic the error budget is counted against

    @property
    def steps(self) -> int:
        return len(self.events[0]) - 1

    @property
    def horizon(self) -> int:
        return self.steps * self.resolution.step

    def total(self, counts: tuple[tuple[int, ...], ...]) -> list[int]:
        return [sum(zone[i] for zone in counts) for i in range(self.steps + 1)]


def _split(n: int, parts: int) -> list[int]:
    return [(i + 1) * n // parts - i * n // parts for i in range(parts)]


def _events(rate: Fraction, minute: int) -> int:
    return int(rate * (minute + 1)) - int(rate * minute)


def _ratios(scenario: Scenario, slo: SLO, res: Resolution, rate: Fraction) -> list[Fraction]:
    """The error ratio of every minute of the run; single failures last until enough
    requests have come (at 1 an hour, up to an hour)."""
    background = Fraction(str(scenario.noise)) * Fraction(str(slo.error_budget))
    minutes = [background] * res.history
    for stretch in scenario.fault:
        length = min(stretch.minutes, res.clip or stretch.minutes)
        minutes += [Fraction(str(stretch.error_ratio(slo)))] * length
    seen = 0
    while seen < scenario.failures:
        seen += _events(rate, len(minutes))
        minutes.append(Fraction(1))
    return minutes + [background] * res.tail


def timeline(scenario: Scenario, slo: SLO, res: Resolution) -> Timeline:
    rate = (Fraction(str(scenario.per_hour)) / 60 if scenario.per_hour is not None
            else Fraction(NOMINAL_PER_MINUTE))
    ratios = _ratios(scenario, slo, res, rate)
    events = [_events(rate, m) for m in range(len(ratios))]
    expected, errors = Fraction(0), []
    for n, ratio in zip(events, ratios, strict=True):
        errors.append(int(expected + n * ratio) - int(expected))
        expected += n * ratio
    start = res.history
    end = start + min(scenario.fault_minutes(), res.clip or scenario.fault_minutes())
    if scenario.failures:  # the fault is the failed requests themselves
        failed = [m for m in range(start, len(ratios) - res.tail) if errors[m]]
        start, end = failed[0], failed[-1] + 1
    zones = len(scenario.zones)
    per_zone_events: list[list[int]] = [[0] for _ in range(zones)]
    per_zone_errors: list[list[int]] = [[0] for _ in range(zones)]
    for first in range(0, len(events), res.step):
        n = sum(events[first:first + res.step])
        e = sum(errors[first:first + res.step])
        for z, (nz, ez) in enumerate(zip(_split(n, zones), _split(e, zones), strict=True)):
            per_zone_events[z].append(nz)
            per_zone_errors[z].append(ez)
    return Timeline(res, scenario.zones, tuple(map(tuple, per_zone_events)),
                    tuple(map(tuple, per_zone_errors)), start, end, rate)
