"""The verdict over the matrix: precision and recall per alert, the low-traffic policy's two
sides, the gates, and the JSON document (``meshsre.backtest/v1``) the tables and reports read.

A cell is a true positive when the alert fired in a scenario that calls for it: one that
spends the error budget as the alert's severity says (for a symptom alert: its scenario says
so), the low-traffic policy applied. Gates:

- pages: recall 1.0 and precision of at least 0.95 over every page cell;
- a full outage pages within the Workbook's detection time plus one scrape and one evaluation;
- no page in the healthy and short-spike scenarios;
- every scenario at the traffic an SLO is meant for that burns the budget is caught at its
  severity, and low-traffic scenarios do what the policy says;
- expected and measured firing agree within one evaluation, or the scenario says why not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alerts.backtest.arithmetic import workbook_detection
from alerts.backtest.matrix import Cell
from alerts.backtest.outcome import Firing
from alerts.backtest.timeline import RESOLUTIONS
from alerts.catalog import SLO

__all__ = ["QUIET", "SCHEMA", "document", "gates", "summaries"]

SCHEMA = "meshsre.backtest/v1"
QUIET = ("healthy-noise", "spike-1m", "spike-5m")  # scenarios where nothing may page
_PRECISION = 0.95


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _counts(cells: Sequence[Cell]) -> dict[str, Any]:
    tp = sum(c.should and c.measured is not None for c in cells)
    fp = sum(not c.should and c.measured is not None for c in cells)
    fn = sum(c.should and c.measured is None for c in cells)
    return {"cells": len(cells), "true_positives": tp, "false_positives": fp,
            "false_negatives": fn, "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}


def _seconds(minutes: int | None) -> int | None:
    return None if minutes is None else minutes * 60


def _firing(cell: Cell, f: Firing | None) -> dict[str, Any]:
    return {"fired": f is not None, "detection_s": _seconds(cell.detection(f)),
            "reset_s": _seconds(cell.reset(f)), "episodes": f.episodes if f else 0}


def _reference(cells: Sequence[Cell]) -> Cell | None:
    """The cell an alert's headline times come from: the full outage, else its own fault."""
    timed = [c for c in cells if c.timed and c.should]
    return next((c for c in timed if c.scenario == "outage"), timed[0] if timed else None)


def summaries(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    keys = list(dict.fromkeys((c.alert, c.severity, c.slo) for c in cells))
    out = []
    for alert, severity, slo in keys:
        mine = [c for c in cells if (c.alert, c.severity, c.slo) == (alert, severity, slo)]
        ref = _reference(mine)
        out.append({"alert": alert, "severity": severity, "slo": slo, **_counts(mine),
                    "reference": ref.scenario if ref else None,
                    "arithmetic_s": None if ref is None or ref.arithmetic_s is None
                    else round(ref.arithmetic_s, 2),
                    "expected": _firing(ref, ref.expected) if ref else None,
                    "measured": _firing(ref, ref.measured) if ref else None,
                    "most_episodes": max((c.measured.episodes for c in mine if c.measured),
                                         default=0)})
    return out


def _gate(name: str, failures: list[str], detail: str) -> dict[str, Any]:
    return {"name": name, "passed": not failures, "detail": detail, "failures": failures}


def gates(cells: Sequence[Cell], slos: Sequence[SLO]) -> list[dict[str, Any]]:
    pages = [c for c in cells if c.severity == "page"]
    count = _counts(pages)
    precision, recall = count["precision"] or 0.0, count["recall"] or 0.0
    out = [_gate("page-recall-and-precision",
                 [] if recall == 1.0 and precision >= _PRECISION else
                 [f"recall {recall}, precision {precision}"],
                 f"recall {recall} (must be 1.0), precision {precision} (at least {_PRECISION})"
                 f" over {len(pages)} page cells")]
    late = []
    for slo in slos:
        cell = next((c for c in pages if c.slo == slo.id and c.scenario == "outage"), None)
        limit = (workbook_detection(slo, "page", 1.0) or 0) + 2 * RESOLUTIONS[0].step * 60
        took = None if cell is None else _seconds(cell.detection(cell.measured))
        if took is None or took > limit:
            late.append(f"{slo.id}: {took} s > {limit:g} s")
    out.append(_gate("outage-pages-in-time", late, "a full outage pages within the Workbook's"
                     " detection time plus one scrape and one evaluation"))
    noisy = [f"{c.alert} in {c.scenario}" for c in pages
             if c.scenario in QUIET and c.measured is not None]
    out.append(_gate("quiet-when-healthy", noisy, "no page in " + ", ".join(QUIET)))
    missed = [f"{c.alert} {c.severity} {c.slo} in {c.scenario}" for c in cells
              if c.slo and not c.low_traffic and c.should and c.measured is None]
    out.append(_gate("caught-at-severity", missed, "every SLO scenario that spends the budget"
                     " at the SLO's traffic fires at the severity it calls for"))
    off = [f"{c.alert} {c.severity} {c.slo} in {c.scenario}" for c in cells
           if c.low_traffic and c.should != (c.measured is not None)]
    out.append(_gate("low-traffic-as-policy", off, "low-traffic scenarios fire exactly as the"
                     " SLO's low-traffic policy says"))
    differ = [f"{c.alert} {c.severity} {c.slo} {c.scenario}" for c in cells
              if not c.agrees and not c.note]
    out.append(_gate("agrees-with-arithmetic", differ, "measured firing, detection and reset"
                     " within one evaluation of the arithmetic, or a note says why not"))
    return out


def _low_traffic(cells: Sequence[Cell]) -> dict[str, Any]:
    rows = [c for c in cells if c.low_traffic]
    removed = [c for c in rows if c.unpolicied is not None and c.measured is None]
    return {
        "rows": [{"slo": c.slo, "scenario": c.scenario, "severity": c.severity,
                  "budget_says": c.should_budget, "policy_says": c.should,
                  "with_policy": _firing(c, c.measured),
                  "without_policy": _firing(c, c.unpolicied)} for c in rows],
        "alerts_removed": len(removed),
        "removed_the_budget_called_for": sum(c.should_budget for c in removed),
        "kept_outages": sum(c.measured is not None for c in rows if c.should),
        "outages": sum(c.should for c in rows),
    }


def document(cells: Sequence[Cell], slos: Sequence[SLO], stands_for: dict[str, str],
             rules: str) -> dict[str, Any]:
    checks = gates(cells, slos)
    return {
        "schema": SCHEMA, "rules": rules,
        "resolutions": [{"name": r.name, "step_s": r.step * 60, "history_s": r.history * 60}
                        for r in RESOLUTIONS],
        "slos": [{"id": s.id, "objective": s.objective, "measured_as": stands_for[s.id],
                  "low_traffic": {"min_errors": s.low_traffic.min_errors,
                                  "min_events": s.low_traffic.min_events},
                  "workbook_outage_page_s": workbook_detection(s, "page", 1.0)} for s in slos],
        "alerts": summaries(cells),
        "pages": _counts([c for c in cells if c.severity == "page"]),
        "tickets": _counts([c for c in cells if c.severity == "ticket"]),
        "low_traffic": _low_traffic(cells),
        "cells": [{"alert": c.alert, "severity": c.severity, "slo": c.slo,
                   "scenario": c.scenario, "should": c.should, "should_budget": c.should_budget,
                   "expected": _firing(c, c.expected), "measured": _firing(c, c.measured),
                   "agrees": c.agrees, "note": c.note} for c in cells],
        "gates": checks,
        "passed": all(g["passed"] for g in checks),
    }
