"""What should happen, from the window arithmetic alone: no Prometheus involved.

Two questions for each scenario, SLO and severity:

- **Should it page (ticket)?** By error budget consumed, as the SRE Workbook defines the
  alerts: a page when more than 2% of the period's budget is spent within an hour or 5% within
  six hours, a ticket when more than 10% is spent within a day or within three days (the
  ``budget_percent`` of each window in ``alerts.windows``). The budget is the SLO's error
  ratio times the scenario's normal traffic over the whole period. ``policy=True`` adds the
  SLO's low-traffic policy: a window with too few (bad) events is not worth a page.
- **When do the rules fire?** Each evaluation, every window pair of the severity compares the
  exact error ratio of its long and its short window (bins of whole events) with factor x
  budget, as PromQL does in floating point; the severity fires when a pair holds, for as long
  as ``for_minutes`` asks. For a constant error ratio r from a clean history this is the
  Workbook's detection time, ``long x factor x budget / r`` (``workbook_detection``), rounded
  up to the next evaluation.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import accumulate

from alerts.backtest.outcome import Firing
from alerts.backtest.timeline import Timeline
from alerts.catalog import SLO
from alerts.windows import Severity, burn_rate_windows, seconds

__all__ = ["expected", "expected_sli_missing", "should", "workbook_detection"]


def _sums(line: Timeline) -> tuple[list[int], list[int]]:
    return list(accumulate(line.total(line.events))), list(accumulate(line.total(line.errors)))


def _window(cum: list[int], k: int, steps: int) -> int:
    return cum[k] - cum[max(0, k - steps)]


def _pairs(slo: SLO, severity: Severity, step: int) -> list[tuple[int, int, float, float]]:
    """(long steps, short steps, factor, budget percent) of the severity's window pairs."""
    return [(seconds(w.long) // 60 // step, seconds(w.short) // 60 // step, w.factor,
             w.budget_percent) for w in burn_rate_windows(slo.window) if w.severity == severity]


def expected(slo: SLO, line: Timeline, severity: Severity, for_minutes: int = 0,
             ) -> Firing | None:
    """The evaluations at which the severity's burn alert fires, by the window arithmetic."""
    step = line.resolution.step
    events, errors = _sums(line)
    threshold = {f: f * slo.error_budget for _, _, f, _ in _pairs(slo, severity, step)}
    policy = slo.low_traffic

    at, pending = [], None
    for k in range(line.steps + 1):
        holds = False
        for long, short, factor, _ in _pairs(slo, severity, step):
            n_long, n_short = _window(events, k, long), _window(events, k, short)
            e_long, e_short = _window(errors, k, long), _window(errors, k, short)
            holds = holds or (
                n_long > 0 and n_short > 0 and policy.allows(e_long, n_long)
                and e_long / n_long > threshold[factor] and e_short / n_short > threshold[factor])
        pending = (pending if pending is not None else k) if holds else None
        if pending is not None and (k - pending) * step >= for_minutes:
            at.append(k * step)
    return Firing.of(at, step)


def should(slo: SLO, line: Timeline, severity: Severity, policy: bool = True) -> bool:
    """Whether the budget spent in some window of the severity calls for it (strictly more
    than the window's share, as the rules compare strictly)."""
    step = line.resolution.step
    events, errors = _sums(line)
    period = seconds(slo.window) // 60
    budget = Fraction(str(slo.error_budget)) * line.per_minute * period
    for k in range(line.steps + 1):
        for long, _, _, pct in _pairs(slo, severity, step):
            spent = _window(errors, k, long)
            if Fraction(spent) / budget > Fraction(str(pct)) / 100 and (
                    not policy or slo.low_traffic.allows(spent, _window(events, k, long))):
                return True
    return False


def expected_sli_missing(line: Timeline, for_minutes: int) -> Firing | None:
    """The SLI-missing alert holds from the first scrape without the good series until the
    last one: it fires once that has lasted ``for_minutes``."""
    step = line.resolution.step
    at = [t for t in range(0, line.horizon + 1, step)
          if line.fault_start + step + for_minutes <= t <= line.fault_end]
    return Firing.of(at, step)


def workbook_detection(slo: SLO, severity: Severity, error_ratio: float) -> float | None:
    """Seconds until the severity's fastest window pair sees ``error_ratio`` from a clean
    history: the long window (the slower of the two) must reach factor x budget."""
    times = [seconds(w.long) * w.factor * slo.error_budget / error_ratio
             for w in burn_rate_windows(slo.window)
             if w.severity == severity and error_ratio > w.factor * slo.error_budget]
    return min(times, default=None)
