"""How the alerts did in this run, beside what the backtest measured for the same rules.

Live precision: every page (a firing notification of severity page, counted once per alert
instance) that starts outside a fault window is a false page. A fault window runs from the
fault's start to ``FAULT_GRACE_S`` after its end: an alert with a minute's ``for`` can still
be the fault's that late. Live recall: every drill that designates an alert (the chaos
record's ``designated_alerts``, or the alert its time-to-detect probe waited for) must be
caught by it; its time to detect is the drill's.

Per alert, the report sets the backtest's expected and measured detection and reset times
(``alerts/build/backtest.json``, evaluated every minute) beside the live ones. The expected
time on the live stack is the arithmetic alone (the Workbook's detection time of the alert's
reference fault, its ``for``, any rate window), plus at most one scrape and one evaluation
of the live Prometheus (its intervals read from its own metrics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports import chaos
from reports.records import RunRecords

__all__ = ["BACKTEST", "FAULT_GRACE_S", "PRECISION_GOAL", "section"]

BACKTEST = Path(__file__).resolve().parent.parent / "alerts" / "build" / "backtest.json"
FAULT_GRACE_S = 60.0
PRECISION_GOAL = 0.95


def _pages(run: RunRecords) -> list[dict[str, Any]]:
    """Each page once: the first firing notification of an alert instance, and when it
    resolved."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for a in run.alerts:
        labels = a.get("labels") or {}
        if labels.get("severity") != "page":
            continue
        key = (str(a.get("fingerprint") or sorted(labels.items())), str(a.get("startsAt")))
        page = found.setdefault(key, {"name": a.get("name", ""), "at": a["received_at"],
                                      "resolved_at": None, "where": ", ".join(
                                          f"{k}={labels[k]}" for k in ("zone", "slo")
                                          if k in labels)})
        if a.get("status") == "resolved" and page["resolved_at"] is None:
            page["resolved_at"] = a["received_at"]
    return sorted(found.values(), key=lambda p: p["at"])


def _fault_of(at: float, faults: list[chaos.Fault], end: float) -> chaos.Fault | None:
    return next((f for f in faults if f.start <= at <= (f.end or end) + FAULT_GRACE_S), None)


def _drills(run: RunRecords) -> list[dict[str, Any]]:
    out = []
    for rec in run.chaos:
        m = rec.get("measurements") or {}
        designated = m.get("designated_alerts") or ([m["ttd_alert"]] if m.get("ttd_alert")
                                                    else [])
        if not designated and "ttd_seconds" not in m:
            continue  # a drill without an alert to catch it (no fault, or too short a one)
        ttd, alert = m.get("ttd_seconds"), m.get("ttd_alert")
        out.append({"drill": rec["drill"], "designated": list(designated),
                    "caught_by": alert if alert in designated else None,
                    "ttd_s": ttd if alert in designated else None,
                    "fault_end": (rec.get("fault") or {}).get("ended_at")})
    return out


def _live(run: RunRecords, faults: list[chaos.Fault], end: float, start: float
          ) -> dict[str, Any]:
    pages = []
    for p in _pages(run):
        fault = _fault_of(p["at"], faults, end)
        pages.append({**p, "offset_s": round(p["at"] - start, 1),
                      "fault": fault.label if fault else None, "false": fault is None})
    drills = _drills(run)
    false = sum(p["false"] for p in pages)
    caught = sum(d["caught_by"] is not None for d in drills)
    return {
        "pages": pages, "false_pages": false,
        "precision": round((len(pages) - false) / len(pages), 4) if pages else None,
        "drills": drills, "recall": round(caught / len(drills), 4) if drills else None,
        "fault_grace_s": FAULT_GRACE_S,
    }


def _backtest(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc


def _rows(doc: dict[str, Any] | None, live: dict[str, Any], intervals: dict[str, float],
          ) -> list[dict[str, Any]]:
    """One row per alert and severity: backtest figures, then what this run saw of it."""
    rows = []
    for a in (doc or {}).get("alerts", []):
        expected = (a.get("expected") or {}).get("detection_s")
        live_stack = None
        if a.get("arithmetic_s") is not None and intervals:
            live_stack = round(a["arithmetic_s"] + intervals["scrape_s"]
                               + intervals["evaluation_s"], 2)
        drills = [d for d in live["drills"] if a["alert"] in d["designated"]]
        pages = [p for p in live["pages"] if p["name"] == a["alert"]]
        rows.append({
            "alert": a["alert"], "severity": a["severity"], "slo": a["slo"],
            "precision": a["precision"], "recall": a["recall"],
            "expected_s": expected, "expected_live_s": live_stack,
            "backtest_s": (a.get("measured") or {}).get("detection_s"),
            "backtest_reset_s": (a.get("measured") or {}).get("reset_s"),
            "live_s": next((d["ttd_s"] for d in drills if d["ttd_s"] is not None), None),
            "live_reset_s": next((round(p["resolved_at"] - d["fault_end"], 1) for d in drills
                                  for p in pages if p["resolved_at"] and d["fault_end"]), None),
            "live_pages": len(pages), "false_pages": sum(p["false"] for p in pages)})
    return rows


def section(run: RunRecords, faults: list[chaos.Fault], start: float, end: float,
            intervals: dict[str, float], backtest: Path = BACKTEST) -> dict[str, Any]:
    """``alert_quality`` of the report: live pages, drills, and the per-alert table."""
    doc = _backtest(backtest)
    live = _live(run, faults, end, start)
    return {
        "live": live, "alerts": _rows(doc, live, intervals), "intervals": intervals,
        "backtest": None if doc is None else {
            "file": "alerts/build/backtest.json", "pages": doc["pages"],
            "tickets": doc["tickets"], "passed": doc["passed"],
            "gates": [{"name": g["name"], "passed": g["passed"]} for g in doc["gates"]]},
        "breaches": [f"{p['name']} paged at {p['offset_s']} s outside any fault window"
                     for p in live["pages"] if p["false"]]
                    + [f"the {d['drill']} drill was not caught by"
                       f" {' or '.join(d['designated'])}" for d in live["drills"]
                       if d["caught_by"] is None],
    }
