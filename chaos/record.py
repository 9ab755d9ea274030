"""The chaos run record: ``reports/out/<run-id>/chaos-<drill>.json``, what the report builder
reads about a drill. Built from the Chaos Toolkit journal and the run's notes; versioned, and a
reader refuses a schema it does not know.

Top-level fields (all always present):
- ``schema`` ("meshsre.chaos/v1"), ``schema_version`` (1), ``kind`` ("chaos"), ``drill``
  (az-failure, backup-restore, revocation), ``run_id`` (the run directory's name), ``title``,
  ``platform`` (local, kubernetes), ``started_at``, ``ended_at`` (unix s), ``duration_s``
- ``status``: the journal's (completed, failed, aborted, interrupted); ``deviated``: the
  steady-state hypothesis failed after the method
- ``passed``: no failure below; ``failures``: one sentence per reason the drill failed (a
  method activity or rollback that did not succeed, the hypothesis not met before or after,
  an objective missed, a run that did not complete)
- ``hypothesis``: ``before`` and ``after``, each ``{met, probes: [{name, tolerance_met,
  output}]}`` (null when not evaluated)
- ``method``, ``rollbacks``: ``[{name, type, status, started_at, duration_s, error, output}]``
- ``fault``: ``{activity, started_at, injected_at, ended_at, recovery, duration_s}`` from the
  control's clock (ended_at null when no recovery succeeded)
- ``measurements``: the drill's figures, null when not measured:
  - az-failure: ``zone``, ``platform``, ``designated_alerts`` (the alerts that must catch
    it), ``ttd_seconds`` (fault start to the first firing alert notification), ``ttd_alert``,
    ``ttr_seconds`` (fault start to the end of the last
    second with a client error ratio above the SLO limit), ``requests_during_failure``,
    ``errors_during_failure``, ``error_ratio_during_failure``, ``observed_seconds``,
    ``zone_restore_seconds``, ``writes_acknowledged``, ``writes_lost``
  - backup-restore: ``backend``, ``backup`` (location, size_bytes, sha256, integrity, tables,
    audit_last_seq, audit_head, duration_seconds), ``rto_seconds`` (disaster to serving),
    ``rto_phases`` (``restore``, ``replicas_ready``, ``serving``: seconds each),
    ``rpo_seconds`` (disaster time minus the newest restored write's time),
    ``writes_acknowledged``, ``writes_lost`` (acknowledged, missing after the restore),
    ``writes_lost_before_backup`` (must be 0), ``chain_ok``, ``chain_length``,
    ``manifest_match``, ``smoke_write``
  - revocation: ``rounds``, ``samples``, ``p50_seconds``, ``p99_seconds``, ``max_seconds``,
    ``unpropagated``, ``prd_limit_seconds`` (5), ``goal_seconds`` (1), ``goal_met``,
    ``server_p99_seconds`` (the mesh's own histogram, from Prometheus)
  - data-failover: ``replication`` (sync, async), ``failed_primary``, ``failed_zone``,
    ``new_primary``, ``failover_seconds`` (kill to the first write acknowledged through the
    door's PostgreSQL frontend after a failure), ``sql_writes_acked``, ``writes_lost`` (of
    those, missing afterwards), ``rpo_seconds`` (fault time minus the oldest lost write's),
    ``mesh_writes_acked``, ``mesh_write_errors`` (by kind), ``mesh_writes_lost``,
    ``mesh_recovered_seconds``, ``mesh_errors_after_writable``, ``lag_bytes_before``,
    ``lag_bytes_during`` (Patroni's, bytes), ``audit_chain_ok``
- ``objectives``: ``{id: {target, measured, met}}``, the limits the drill is held to
- ``timeline``: ``[{event, at, activity?, status?}]`` phases and activities, oldest first
- ``files``: journal, notes, load record and directory, relative to the run directory
- ``runner``: how `meshsre chaos` ran it (argv, exit code, wall seconds), null under `chaos run`
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from meshsre import runrecord
from meshsre.runrecord import RecordError

__all__ = ["FIELDS", "SCHEMA", "SCHEMA_VERSION", "RecordError", "build", "failures", "read",
           "record_path", "write"]

SCHEMA = "meshsre.chaos/v1"
SCHEMA_VERSION = 1
FIELDS = (
    "schema", "schema_version", "kind", "drill", "run_id", "title", "platform", "started_at",
    "ended_at", "duration_s", "status", "deviated", "passed", "failures", "hypothesis", "method",
    "rollbacks", "fault", "measurements", "objectives", "timeline", "files", "runner",
)


def _epoch(iso: str | None) -> float | None:
    return round(datetime.fromisoformat(iso).timestamp(), 3) if iso else None


_WRAPPER = "chaoslib.exceptions.ActivityFailed: "


def _error(run: Mapping[str, Any]) -> str | None:
    lines = run.get("exception") or []
    if not lines:
        return None
    # Chaos Toolkit wraps an activity's exception in ActivityFailed, sometimes twice.
    last = str(lines[-1]).strip()
    while last.startswith(_WRAPPER):
        last = last[len(_WRAPPER):]
    return last


def _name(run: Mapping[str, Any]) -> str:
    return str(run.get("activity", {}).get("name", "?"))


def _runs(runs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"name": _name(r), "type": r.get("activity", {}).get("type"),
             "status": r.get("status"), "started_at": _epoch(r.get("start")),
             "duration_s": round(float(r.get("duration") or 0.0), 3), "error": _error(r),
             "output": r.get("output")} for r in runs or []]


def _hypothesis(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not state:
        return None
    return {"met": state.get("steady_state_met"),
            "probes": [{"name": _name(p), "tolerance_met": p.get("tolerance_met"),
                        "output": p.get("output")} for p in state.get("probes", [])]}


def _unmet(state: Mapping[str, Any]) -> str:
    names = [_name(p) for p in state.get("probes", []) if not p.get("tolerance_met")]
    return ", ".join(names) or "a probe failed to run"


def failures(journal: Mapping[str, Any], objectives: Mapping[str, Any]) -> list[str]:
    """Every reason the drill did not pass; empty when it did."""
    found = []
    states = journal.get("steady_states") or {}
    before, after = states.get("before"), states.get("after")
    if before and not before.get("steady_state_met"):
        found.append(f"steady-state hypothesis not met before the method: {_unmet(before)}")
    if journal.get("deviated") and after:
        found.append(f"steady-state hypothesis deviated after the method: {_unmet(after)}")
    for run in journal.get("run") or []:
        if run.get("status") != "succeeded":
            found.append(f"method activity {_name(run)} {run.get('status')}: {_error(run)}")
    for run in journal.get("rollbacks") or []:
        if run.get("status") != "succeeded":
            found.append(f"rollback {_name(run)} {run.get('status')}: {_error(run)}")
    for oid, obj in sorted(objectives.items()):
        if not obj.get("met"):
            found.append(f"objective {oid} missed: measured {obj.get('measured')},"
                         f" target {obj.get('target')}")
    status = journal.get("status")
    if status != "completed" and not (before and not before.get("steady_state_met")):
        found.append(f"the run ended {status}")
    if not journal.get("run") and not found:
        found.append("the method never ran")
    return found


def build(journal: Mapping[str, Any], notes: Mapping[str, Any],
          runner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    run_dir = Path(str(notes.get("run_dir") or "."))
    drill = str(notes.get("drill") or "experiment")
    objectives = dict(notes.get("objectives") or {})
    found = failures(journal, objectives)
    fault = dict(notes.get("fault") or {})
    if fault.get("started_at") and fault.get("ended_at"):
        fault["duration_s"] = round(fault["ended_at"] - fault["started_at"], 3)
    fault.setdefault("ended_at", None)
    load = notes.get("load") or {}
    load_dir = Path(load["dir"]) if load.get("dir") else None
    started = notes.get("started_at") or _epoch(journal.get("start"))
    ended = notes.get("ended_at") or _epoch(journal.get("end"))
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": "chaos", "drill": drill,
        "run_id": run_dir.name, "title": journal.get("experiment", {}).get("title"),
        "platform": notes.get("platform") or os.environ.get("MESH_PLATFORM") or "local",
        "started_at": started, "ended_at": ended,
        "duration_s": round(ended - started, 3) if started and ended else None,
        "status": journal.get("status"), "deviated": bool(journal.get("deviated")),
        "passed": not found, "failures": found,
        "hypothesis": {"before": _hypothesis(journal.get("steady_states", {}).get("before")),
                       "after": _hypothesis(journal.get("steady_states", {}).get("after"))},
        "method": _runs(journal.get("run")), "rollbacks": _runs(journal.get("rollbacks")),
        "fault": fault, "measurements": dict(notes.get("measurements") or {}),
        "objectives": objectives, "timeline": list(notes.get("timeline") or []),
        "files": {"journal": f"journal-{drill}.json", "notes": f"notes-{drill}.json",
                  "load_dir": _relative(load_dir, run_dir),
                  "load_record": _relative(load_dir / "load.json", run_dir) if load_dir
                  else None},
        "runner": dict(runner) if runner is not None else None,
    }


def _relative(path: Path | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def record_path(run_dir: Path, drill: str) -> Path:
    return run_dir / f"chaos-{drill}.json"


def write(run_dir: Path, rec: Mapping[str, Any]) -> Path:
    return runrecord.write(record_path(run_dir, str(rec["drill"])), rec)


def read(path: Path) -> dict[str, Any]:
    return runrecord.read(path, SCHEMA, SCHEMA_VERSION, FIELDS)
