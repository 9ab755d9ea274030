"""Multi-window multi-burn-rate alert windows, kept as data; factors are computed from them.

The windows are the Google SRE Workbook's 30-day set as Sloth ships it
(`internal/alert/windows/google-30d.yaml`): each says what share of the period's error budget
may be spent over its long window before someone is told. The burn-rate factor follows:
``k = f x P / L`` (2% of 30d over 1h gives 14.4). No ``for``, as in the Workbook: the
backtest (``alerts/backtest``) found that Pyrra's (2m, 15m, 1h, 3h) removed no false page
and only delayed every alert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GOOGLE_30D",
    "AlertWindow",
    "BurnWindow",
    "Severity",
    "burn_rate_windows",
    "format_duration",
    "seconds",
    "sli_windows",
]

Severity = Literal["page", "ticket"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])$")


def seconds(duration: str) -> int:
    """Seconds in a Prometheus duration with a single unit: ``seconds("30m") == 1800``."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"not a duration like 5m, 1h or 30d: {duration!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(total: float) -> str:
    """The largest whole unit that fits, rounded: 180000 s (2.08 days) reads as ``2d``."""
    for unit in ("d", "h", "m"):
        if total >= _UNITS[unit]:
            return f"{round(total / _UNITS[unit])}{unit}"
    return f"{round(total)}s"


@dataclass(frozen=True)
class BurnWindow:
    name: str
    severity: Severity
    budget_percent: float  # share of the period's budget spent over `long` that triggers it
    long: str
    short: str  # a twelfth of `long`: makes the alert reset soon after the burn stops

    def factor(self, period: str) -> float:
        # Rounded so that float noise (14.399999999999999) never reaches a rule file.
        return round(self.budget_percent / 100 * seconds(period) / seconds(self.long), 6)


GOOGLE_30D: tuple[BurnWindow, ...] = (
    BurnWindow("page-quick", "page", 2, long="1h", short="5m"),
    BurnWindow("page-slow", "page", 5, long="6h", short="30m"),
    BurnWindow("ticket-quick", "ticket", 10, long="1d", short="2h"),
    BurnWindow("ticket-slow", "ticket", 10, long="3d", short="6h"),
)


@dataclass(frozen=True)
class AlertWindow:
    """One window pair of an SLO period's burn-rate alerts: what the rule files, dashboards
    and the backtest consume."""

    name: str
    severity: Severity
    long: str
    short: str
    factor: float
    exhaustion: str  # how long the whole budget lasts at this burn rate
    budget_percent: float  # share of the period's budget spent over `long` when it fires


def burn_rate_windows(
    period: str = "30d", windows: tuple[BurnWindow, ...] = GOOGLE_30D
) -> tuple[AlertWindow, ...]:
    """The alert windows of an SLO period, factors computed.

    >>> [w.factor for w in burn_rate_windows("30d")]
    [14.4, 6.0, 3.0, 1.0]
    """
    out = []
    for w in windows:
        factor = w.factor(period)
        out.append(AlertWindow(
            name=w.name, severity=w.severity, long=w.long, short=w.short,
            factor=factor, exhaustion=format_duration(seconds(period) / factor),
            budget_percent=w.budget_percent,
        ))
    return tuple(out)


def sli_windows(
    period: str = "30d", windows: tuple[BurnWindow, ...] = GOOGLE_30D
) -> tuple[str, ...]:
    """Every window an SLI is recorded over: the alert windows, shortest first, then the period."""
    used = {d for w in windows for d in (w.long, w.short)} | {period}
    return tuple(sorted(used, key=seconds))
