"""Build, write and judge one report: what ``meshsre report`` and the nightly job call.

>>> sorted(FAIL_ON)
['alerts', 'chaos', 'check', 'disagreement', 'drill', 'load', 'slo']
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports import history
from reports.build import build
from reports.prom import Prom
from reports.records import read_run
from reports.render import write_all

__all__ = ["DEFAULT_FAIL_ON", "EXIT_BREACHED", "EXIT_OK", "FAIL_ON", "Report", "exit_code",
           "make_report", "parse_fail_on"]

EXIT_OK, EXIT_BREACHED = 0, 1
# What can fail a run: a breached SLO, a failed drill objective, a failed chaos experiment
# (hypothesis deviated), a failed check of a suite run against the deployment (the security
# suite), a load test whose thresholds failed or that was invalid, a client/server
# disagreement beyond one point, and alerts that paged outside a fault or missed a drill
# (reports.alerting).
FAIL_ON = frozenset({"slo", "drill", "chaos", "check", "load", "disagreement", "alerts"})
DEFAULT_FAIL_ON = frozenset({"slo", "drill", "alerts", "check"})


def parse_fail_on(value: str) -> frozenset[str]:
    """``slo,drill``, ``any`` or ``none``; ValueError naming what is unknown."""
    chosen = {v.strip() for v in value.split(",") if v.strip()}
    if chosen == {"none"}:
        return frozenset()
    if chosen == {"any"}:
        return FAIL_ON
    unknown = chosen - FAIL_ON
    if unknown:
        raise ValueError(f"unknown {', '.join(sorted(unknown))}: choose from"
                         f" {', '.join(sorted(FAIL_ON))}, or any, or none")
    return frozenset(chosen)


@dataclass(frozen=True)
class Report:
    data: dict[str, Any]
    files: dict[str, Path]

    def failures(self, fail_on: Collection[str]) -> list[str]:
        verdict = self.data["verdict"]
        out = [f"{b['kind']} {b['id']}: {b['detail']}"
               for b in verdict["breaches"] + verdict["load_findings"] if b["kind"] in fail_on]
        if "disagreement" in fail_on:
            out += [f"client and server disagree on {d['id']} by {d['delta_points']:+.3f} points"
                    for d in self.data["disagreements"]]
        return out


def exit_code(report: Report, fail_on: Collection[str]) -> int:
    return EXIT_BREACHED if report.failures(fail_on) else EXIT_OK


def make_report(run_dir: Path, prometheus: str | None = None,
                history_path: Path | None = None, out_dir: Path | None = None,
                rate_window: float = 15.0) -> Report:
    """Read RUN_DIR, query Prometheus, append to the history, write the three files."""
    run = read_run(run_dir)
    data = build(run, Prom(prometheus) if prometheus else None, rate_window)
    path = history_path or run_dir.parent / "history.jsonl"
    data["trend"] = history.record(path, history.summary(data))
    data["history_file"] = str(path)
    return Report(data, write_all(data, out_dir or run_dir))
