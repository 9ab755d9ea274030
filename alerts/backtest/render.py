"""The backtest document as Markdown tables: what `meshsre alerts backtest` prints and what
``alerts/build/backtest.md`` holds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["duration", "markdown"]

NONE = "\u2013"  # an en dash: nothing to show (not a zero)


def duration(secs: int | float | None) -> str:
    """``90`` -> ``1m30s``, ``7500`` -> ``2h05m``; None -> a dash."""
    if secs is None:
        return NONE
    s, sign = abs(int(secs)), "-" if secs < 0 else ""
    if s >= 86400:
        return f"{sign}{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{sign}{s // 60}m{s % 60:02d}s" if s % 60 else f"{sign}{s // 60}m"


def _table(head: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}"


def _times(f: dict[str, Any] | None) -> str:
    if not f:
        return NONE
    if not f["fired"]:
        return "no"
    extra = f", {f['episodes']} episodes" if f["episodes"] > 1 else ""
    return f"{duration(f['detection_s'])} / {duration(f['reset_s'])}{extra}"


def _cell(c: dict[str, Any]) -> str:
    fired, should = c["measured"]["fired"], c["should"]
    mark = {(True, True): "✓", (False, False): NONE, (True, False): "FALSE",
            (False, True): "MISSED"}[(fired, should)]
    if not fired:
        return mark if c["agrees"] else f"{mark} (expected {_times(c['expected'])})"
    text = f"{mark} {_times(c['measured'])}"
    return text if c["agrees"] else f"{text} (arithmetic {_times(c['expected'])})"


def _alerts(doc: dict[str, Any]) -> list[str]:
    rows = [(a["alert"], a["severity"], a["slo"] or NONE, a["cells"], _pct(a["precision"]),
             _pct(a["recall"]), a["reference"] or NONE, _seconds(a["arithmetic_s"]),
             _times(a["expected"]), _times(a["measured"]), a["most_episodes"])
            for a in doc["alerts"]]
    return _table(("alert", "severity", "SLO", "cells", "precision", "recall", "timed in",
                   "arithmetic alone", "expected detect / reset", "measured detect / reset",
                   "most episodes"), rows)


def _seconds(value: float | None) -> str:
    """Continuous times: a fraction of a minute shows in seconds."""
    if value is None:
        return NONE
    return f"{value:.1f} s" if value < 60 or (value != int(value) and value < 600) \
        else duration(value)


def _matrix(doc: dict[str, Any], slo: str) -> list[str]:
    cells = [c for c in doc["cells"] if c["slo"] == slo]
    order = {"page": 0, "ticket": 1}
    columns = sorted(dict.fromkeys((c["alert"], c["severity"]) for c in cells),
                     key=lambda k: (not k[0].endswith("BudgetBurn"), order[k[1]]))
    scenarios = list(dict.fromkeys(c["scenario"] for c in cells))
    by = {(c["scenario"], c["alert"], c["severity"]): c for c in cells}
    rows = [(s, *(_cell(by[(s, a, sev)]) if (s, a, sev) in by else "n/a" for a, sev in columns))
            for s in scenarios]
    return _table(("scenario", *(f"{a} {sev}" for a, sev in columns)), rows)


def _symptoms(doc: dict[str, Any]) -> list[str]:
    cells = [c for c in doc["cells"] if not c["slo"]]
    rows = [(c["scenario"], c["alert"], _cell(c)) for c in cells
            if c["should"] or c["measured"]["fired"]]
    quiet = sorted({c["scenario"] for c in cells} - {r[0] for r in rows})
    table = _table(("scenario", "alert", "fired: detect / reset"), rows)
    return [*table, "", f"Quiet as they must be: {', '.join(quiet)}." if quiet else ""]


def _low_traffic(doc: dict[str, Any]) -> list[str]:
    low = doc["low_traffic"]
    rows = [(r["slo"], r["scenario"], r["severity"], "yes" if r["budget_says"] else "no",
             "yes" if r["policy_says"] else "no", _times(r["without_policy"]),
             _times(r["with_policy"])) for r in low["rows"]]
    return [f"The policy removes {low['alerts_removed']} alerts,"
            f" {low['removed_the_budget_called_for']} of which the budget alone called for, and"
            f" keeps {low['kept_outages']} of the {low['outages']} it calls for.", "",
            *_table(("SLO", "scenario", "severity", "budget says", "policy says",
                     "without policy", "with policy"), rows)]


def markdown(doc: dict[str, Any]) -> str:
    """The whole document: alerts, the matrix of each SLO, low traffic, symptoms, gates."""
    pages, tickets = doc["pages"], doc["tickets"]
    out = ["# Alert backtest", "",
           f"Rules: `{doc['rules']}`. Pages: precision {_pct(pages['precision'])}, recall"
           f" {_pct(pages['recall'])} over {pages['cells']} cells; tickets: precision"
           f" {_pct(tickets['precision'])}, recall {_pct(tickets['recall'])} over"
           f" {tickets['cells']} cells. A cell gives the measured detection / reset time after"
           " the fault; the window arithmetic's own times follow in parentheses wherever they"
           " differ (every other cell agrees). A dash: nothing fired, as expected.", "",
           "## Alerts", "", *_alerts(doc)]
    for slo in doc["slos"]:
        out += ["", f"## {slo['id']} ({slo['objective']}%)", ""]
        if slo["measured_as"] != slo["id"]:
            out.append(f"Same rules as {slo['measured_as']} but for names and selectors:"
                       " measured through its file.")
            out.append("")
        out += _matrix(doc, slo["id"])
    if doc["low_traffic"]["rows"]:
        out += ["", "## Low traffic", "", *_low_traffic(doc)]
    out += ["", "## Symptom alerts", "", *_symptoms(doc)]
    out += ["", "## Gates", ""]
    for g in doc["gates"]:
        out.append(f"- {'passed' if g['passed'] else 'FAILED'}: {g['name']}: {g['detail']}")
        out += [f"  - {f}" for f in g["failures"][:10]]
    return "\n".join(out) + "\n"
