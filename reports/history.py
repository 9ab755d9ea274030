"""Night-over-night history: one summary line per run in ``reports/out/history.jsonl``.

Building a report twice for the same run replaces its line (the file stays one line per run);
the trend shows the last ``TREND_NIGHTS`` runs, oldest first, this one included.

>>> summary({"run_id": "r", "span": {"start": 1.0, "end": 2.0}, "verdict": {"passed": True},
...          "slos": [], "loads": [], "chaos": [], "drills": []})["passed"]
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["TREND_NIGHTS", "read", "record", "summary"]

TREND_NIGHTS = 14


def _sli(row: dict[str, Any]) -> float | None:
    view = row.get("server") or row.get("client")
    return None if view is None else view.get("good_ratio")


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The few figures worth a trend line, from a built report."""
    loads = report["loads"]
    main = max(loads, key=lambda ld: ld["totals"]["requests"]) if loads else None
    return {
        "run_id": report["run_id"],
        "started_at": report["span"]["start"], "ended_at": report["span"]["end"],
        "passed": report["verdict"]["passed"],
        "slos": {row["id"]: {"sli": _sli(row), "verdict": row["verdict"],
                             "budget_consumed": row["budget_consumed"]}
                 for row in report["slos"]},
        "load": None if main is None else {
            "rps": main["totals"]["rps"], "p99_ms": main["totals"]["service_ms"]["p99"],
            "p99_corrected_ms": main["totals"]["corrected_ms"]["p99"],
            "error_ratio": main["totals"]["error_ratio"]},
        "chaos": {c["name"]: {"passed": c["passed"], "ttd_s": c.get("ttd_s"),
                              "ttr_s": c.get("ttr_s")} for c in report["chaos"]},
        "governance": None if not report.get("governance", {}).get("jobs") else {
            "p99_overhead_ms": report["governance"]["jobs"][-1]["overhead"]["p99_overhead_ms"],
            "p99_ratio": report["governance"]["jobs"][-1]["overhead"]["p99_ratio"],
            "revocation_p99_s": report["governance"]["jobs"][-1]["revocation"]["p99_s"]},
        "alerts": None if "alert_quality" not in report else {
            k: report["alert_quality"]["live"][k] for k in ("precision", "false_pages",
                                                            "recall")},
        "drills": {d["name"]: {"passed": d["passed"], "rto_s": d.get("rto_s"),
                               "rpo_s": d.get("rpo_s"), "writes_lost": d.get("writes_lost"),
                               "p99_s": (d.get("propagation") or {}).get("p99_seconds")}
                   for d in report["drills"]},
    }


def read(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash: the others still tell the trend
    return out


def record(path: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Store ``entry`` (replacing an earlier line of the same run); returns the trend."""
    entries = [e for e in read(path) if e.get("run_id") != entry["run_id"]] + [entry]
    entries.sort(key=lambda e: (e.get("started_at") or 0, e.get("run_id", "")))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    os.replace(tmp, path)
    return trend(entries, entry["run_id"])


def trend(entries: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The last nights up to and including ``run_id``."""
    upto = next((i for i, e in enumerate(entries) if e.get("run_id") == run_id),
                len(entries) - 1)
    return entries[max(0, upto + 1 - TREND_NIGHTS):upto + 1]
