"""SLOs and error budgets, one row per SLO of ``alerts.catalog``.

Every query reads the Sloth-compatible recording rules (``slo:*``, labelled ``sloth_id``) and
``ALERTS``, never the raw counters, so the numbers here are exactly what the alerts see.
"""

from __future__ import annotations

from grafanalib.core import Dashboard, Stat

from alerts.catalog import BACKUP_FRESHNESS, CATALOG, SLO, burn_rate_windows, sli_windows
from alerts.sloth import SLI_MISSING
from dashboards.layout import Grid, dashboard
from dashboards.panels import (
    bar_gauge,
    stat,
    state_timeline,
    steps,
    timeseries,
    value_text,
)

__all__ = ["BACKUP_ALERT", "UID", "backup_age_stat", "build"]

UID = "meshsre-slos"
# The threshold alert of the backup freshness objective (it has no budget to burn).
BACKUP_ALERT = "MeshBackupStale"
_EXHAUSTED = "MeshErrorBudgetExhausted"

_BUDGET_STEPS = steps("red", (0, "orange"), (0.25, "green"))
_ALERT_STATE = value_text({0: ("ok", "green"), 1: ("pending", "orange"), 2: ("firing", "red")})
_BURN_COLOURS = ("yellow", "orange", "red", "dark-red")


def _sel(slo: SLO) -> str:
    return f'{{sloth_id="{slo.sloth_id}"}}'


def _burn_rate(slo: SLO, window: str) -> str:
    # sli_error rules carry sloth_window and the budget rule does not: match on the SLO only.
    return (f"slo:sli_error:ratio_rate{window}{_sel(slo)} / on (sloth_id) group_left () "
            f"slo:error_budget:ratio{_sel(slo)}")


def _alert_state(slo: SLO) -> str:
    by = "max by (alertname, severity)"
    # The last arm keeps one "ok" row while nothing is pending or firing, so a quiet SLO shows
    # green rather than "No data".
    return (f'{by} (ALERTS{{slo="{slo.id}", alertstate="firing"}}) * 2 '
            f'or {by} (ALERTS{{slo="{slo.id}", alertstate="pending"}}) '
            f'or on () label_replace(vector(0), "alertname", "{slo.alert_name}", "", "")')


def backup_age_stat() -> Stat:
    """Age of the newest backup, computed as the backup freshness objective does."""
    fresh = BACKUP_FRESHNESS
    # A store never backed up reports timestamp 0: an age of decades, shown as "never".
    never = {"type": "range", "options": {
        "from": 10 * 365 * 86400, "to": None,
        "result": {"text": "never", "color": "red", "index": 0}}}
    return stat(f"{fresh.title}: backup age", f"{fresh.description} A threshold objective, "
                f"alerted on by {BACKUP_ALERT} once the age passes the limit; no error budget.",
                [(fresh.age(), "age")], "s", mappings=[never],
                thresholds=steps("green", (fresh.max_age_seconds, "red")),
                alerts=[BACKUP_ALERT])


def _overview(g: Grid) -> None:
    g.row("Overview")
    g.add(bar_gauge("Error budget remaining", "Share of each SLO's error budget left in its "
                    "period (negative when overspent).",
                    [("slo:period_error_budget_remaining:ratio", "{{sloth_slo}}")],
                    "percentunit", thresholds=_BUDGET_STEPS), 12, 7)
    g.add(stat("SLO alerts firing", "Burn-rate and budget-exhausted alerts of any SLO firing "
               "now.",
               [('count(ALERTS{alertstate="firing", slo!=""}) or vector(0)', "firing")],
               "short", thresholds=steps("green", (1, "red"))), 6, 7)
    g.add(backup_age_stat(), 6, 7)


def _slo_row(g: Grid, slo: SLO) -> None:
    g.row(f"{slo.title}: {slo.objective:g}% over {slo.window}")
    windows = burn_rate_windows(slo.window)
    missing = [SLI_MISSING] if slo.sli.bucket else []
    g.add(stat("SLI", f"{slo.description} Good events over all events in the last "
               f"{slo.window}.",
               [(f"1 - slo:sli_error:ratio_rate{slo.window}{_sel(slo)}", "SLI")],
               "percentunit", thresholds=steps("red", (slo.ratio, "green")),
               alerts=[slo.alert_name, *missing]), 4, 6)
    g.add(stat("Error budget remaining", f"Share of the {slo.window} error budget "
               f"({slo.error_budget:.2%} of events) not yet spent.",
               [(f"slo:period_error_budget_remaining:ratio{_sel(slo)}", "remaining")],
               "percentunit", thresholds=_BUDGET_STEPS, alerts=[_EXHAUSTED]), 4, 6)
    g.add(stat("Current burn rate", "Error ratio over the shortest window divided by the "
               "error budget: 1x spends the budget exactly over the period.",
               [(f"slo:current_burn_rate:ratio{_sel(slo)}", "burn")], "suffix:x",
               thresholds=steps("green", (1, "orange"), (windows[0].factor, "red"))), 4, 6)
    levels = sorted({w.factor for w in windows})
    g.add(timeseries(
        "Burn rate by window", "Error ratio over each recorded window divided by the error "
        "budget. Dashed lines: the alert factors ("
        + ", ".join(f"{w.factor:g}x over {w.long}/{w.short} {w.severity}" for w in windows)
        + ").",
        [(_burn_rate(slo, w), w) for w in sli_windows(slo.window) if w != slo.window],
        "suffix:x", min_value=0,
        thresholds=steps("green", *zip(levels, _BURN_COLOURS, strict=False)),
        alerts=[slo.alert_name]), 12, 6)
    g.add(timeseries(
        "SLI over time", "Good-event ratio over 5 minutes and 1 hour against the objective.",
        [(f"1 - slo:sli_error:ratio_rate5m{_sel(slo)}", "5m"),
         (f"1 - slo:sli_error:ratio_rate1h{_sel(slo)}", "1h"),
         (f"slo:objective:ratio{_sel(slo)}", "objective")], "percentunit"), 12, 6)
    g.add(state_timeline(
        "SLO alerts", f"State of the {slo.alert_name} alerts (one per severity), of"
        f" {_EXHAUSTED}{' and of ' + SLI_MISSING if missing else ''}, from ALERTS.",
        [(_alert_state(slo), "{{alertname}} {{severity}}")], "none",
        mappings=[_ALERT_STATE],
        thresholds=steps("green", (1, "orange"), (2, "red")),
        alerts=[slo.alert_name, _EXHAUSTED, *missing]), 12, 6)


def build() -> Dashboard:
    g = Grid()
    _overview(g)
    for slo in CATALOG:
        _slo_row(g, slo)
    return dashboard(UID, "meshsre / SLOs and error budgets",
                     "SLIs, error budgets, burn rates per window and burn-rate alert state for "
                     "every SLO in alerts/catalog.py.", g, module="dashboards/slos.py")
