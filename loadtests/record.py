"""The load run record: ``reports/out/<run-id>/load.json``, the only thing the report builder
reads about a load test. Versioned: a reader refuses a schema it does not know.

Top-level fields (all always present):
- ``schema``, ``schema_version``, ``kind`` ("load"), ``run_id``, ``started_at``, ``ended_at``
  (unix seconds), ``duration_s``
- ``parameters``: host, shape, users, rate, duration, workers, pacing settings
- ``series``: one row per second: target rate, offered/late/dropped, requests, failures,
  generator CPU, workers, errors by kind (timeout, refused, reset, 5xx, other), and per route
  requests, failures, errors by kind, p50/p95/p99 (service time) and p99 from the intended
  send time
- ``totals``: the same over the whole run, per route and overall
- ``thresholds``: one verdict per SLO-derived threshold; ``verdict``: passed, breached,
  valid, invalid_reasons, warnings, exit_code
- ``generator``: CPU of every Locust process and whether it saturated; worker counts
- ``ledger``: acknowledged registrations; ``revocation``: the probe's delays
- ``files``: Locust's own CSV/HTML/JSON beside the record; ``runner``: how it was started
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests.histogram import Histogram
from loadtests.recorder import Recorder
from meshsre import runrecord
from meshsre.runrecord import RecordError

__all__ = [
    "FIELDS", "SCHEMA", "SCHEMA_VERSION", "RecordError", "build", "cpu_saturated",
    "default_run_id", "read", "write",
]

SCHEMA = "meshsre.load/v1"
SCHEMA_VERSION = 1
FIELDS = (
    "schema", "schema_version", "kind", "run_id", "started_at", "ended_at", "duration_s",
    "parameters", "series", "totals", "thresholds", "verdict", "generator", "ledger",
    "revocation", "files", "runner",
)
RECORD_NAME = "load.json"
OUT_DIR = Path("reports/out")
SATURATED_PERCENT = 90.0  # Locust's own CPU warning threshold...
SATURATED_SECONDS = 3  # ...held for this many consecutive one-second samples


def cpu_saturated(samples: Sequence[float]) -> bool:
    """Whether a generator process was pinned: its figures then understate the system."""
    streak = 0
    for pct in samples:
        streak = streak + 1 if pct >= SATURATED_PERCENT else 0
        if streak >= SATURATED_SECONDS:
            return True
    return False


def default_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-load"


def _error_kinds(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    kinds: Counter[str] = Counter()
    for row in rows:
        kinds.update(row.get("errors") or {})
    return dict(sorted(kinds.items()))


def _series(recorder: Recorder, per_second: Mapping[int, Mapping[str, Any]],
            start: int) -> list[dict[str, Any]]:
    rows = []
    for second in sorted(set(recorder.rows) | set(per_second)):
        routes = recorder.rows.get(second, {})
        info = per_second.get(second, {})
        rows.append({
            "t": second, "elapsed_s": second - start,
            "target_rate": info.get("target_rate", 0.0), "users": info.get("users", 0),
            "workers": info.get("workers", 0),
            "generator_cpu_percent": info.get("cpu_percent", 0.0),
            "offered": int(info.get("offered", 0)), "dropped": int(info.get("dropped", 0)),
            "late": sum(r["late"] for r in routes.values()),
            "requests": sum(r["requests"] for r in routes.values()),
            "failures": sum(r["failures"] for r in routes.values()),
            "server_errors": sum(r["server_errors"] for r in routes.values()),
            "errors": _error_kinds(routes.values()),
            "routes": routes,
        })
    return rows


def _totals(recorder: Recorder, offered: int, dropped: int, duration: float) -> dict[str, Any]:
    service, corrected = Histogram(), Histogram()
    for cell in recorder.routes.values():
        service.merge(cell.service)
        corrected.merge(cell.corrected)
    cells = recorder.routes.values()
    requests = sum(c.requests for c in cells)
    server_errors = sum(c.server_errors for c in cells)
    return {
        "requests": requests, "failures": sum(c.failures for c in cells),
        "server_errors": server_errors, "late": sum(c.late for c in cells),
        "offered": offered, "dropped": dropped,
        "dropped_ratio": round(dropped / offered, 6) if offered else 0.0,
        "error_ratio": round(server_errors / requests, 6) if requests else 0.0,
        "rps": round(requests / duration, 3) if duration > 0 else 0.0,
        "service_ms": service.summary(), "corrected_ms": corrected.summary(),
        "routes": {key: recorder.routes[key].totals() for key in sorted(recorder.routes)},
    }


def build(*, run_id: str, parameters: Mapping[str, Any], started: float, ended: float,
          recorder: Recorder, per_second: Mapping[int, Mapping[str, Any]],
          thresholds: Sequence[Mapping[str, Any]], verdict: Mapping[str, Any],
          generator: Mapping[str, Any], ledger: Mapping[str, Any],
          revocation: Mapping[str, Any], files: Mapping[str, str],
          runner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    recorder.finish()
    offered = sum(int(v.get("offered", 0)) for v in per_second.values())
    dropped = sum(int(v.get("dropped", 0)) for v in per_second.values())
    duration = max(ended - started, 0.0)
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": "load", "run_id": run_id,
        "started_at": round(started, 3), "ended_at": round(ended, 3),
        "duration_s": round(duration, 3), "parameters": dict(parameters),
        "series": _series(recorder, per_second, int(started)),
        "totals": _totals(recorder, offered, dropped, duration),
        "thresholds": list(thresholds), "verdict": dict(verdict),
        "generator": dict(generator), "ledger": dict(ledger), "revocation": dict(revocation),
        "files": dict(files), "runner": dict(runner) if runner is not None else None,
    }


def write(run_dir: Path, record: Mapping[str, Any]) -> Path:
    return runrecord.write(run_dir / RECORD_NAME, record)


def read(path: Path) -> dict[str, Any]:
    return runrecord.read(path, SCHEMA, SCHEMA_VERSION, FIELDS)
