"""Everything the report knows about a run, read from the run directory and nothing else.

A run directory holds the records its jobs wrote (any depth, so one run can hold several
load tests): ``load.json`` (``loadtests.record``), ``chaos-<name>.json`` drill and experiment
records, built by ``chaos/`` from the Chaos Toolkit journals beside them, ``alerts.jsonl`` (the
Alertmanager webhook lines of the run, ``mesh.local.webhook``) and ``run.json``, the nightly
job's manifest (``reports.nightly``), and ``checks-<name>.json``, checks a suite made against the
deployment (``meshsre.checks``). The run's time span is the union of the records' spans.

>>> RunRecords(Path("x")).span  # nothing recorded: no span
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos import record as chaos_record
from loadtests import governance
from loadtests import record as load_record
from meshsre import checks as checks_record
from meshsre.runrecord import RecordError

__all__ = ["MANIFEST_SCHEMA", "LoadRecord", "RecordError", "RunRecords", "read_run"]

MANIFEST_SCHEMA = "meshsre.nightly/v1"
ALERTS_FILE = "alerts.jsonl"
MANIFEST_FILE = "run.json"


@dataclass(frozen=True)
class LoadRecord:
    name: str  # where it sits in the run dir ("steady", "az-failure/load"): its stage
    path: Path
    data: dict[str, Any]

    @property
    def started(self) -> float:
        return float(self.data["started_at"])

    @property
    def ended(self) -> float:
        return float(self.data["ended_at"])


@dataclass
class RunRecords:
    root: Path
    loads: list[LoadRecord] = field(default_factory=list)
    chaos: list[dict[str, Any]] = field(default_factory=list)  # each with "_path"
    governance: list[dict[str, Any]] = field(default_factory=list)  # each with "_path"
    alerts: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)  # each with "_path"
    manifest: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        if self.manifest and self.manifest.get("run_id"):
            return str(self.manifest["run_id"])
        return self.root.name

    @property
    def span(self) -> tuple[float, float] | None:
        """(first start, last end) over every record that says when it ran."""
        starts, ends = [], []
        for load in self.loads:
            starts.append(load.started)
            ends.append(load.ended)
        for rec in [*self.chaos, *self.governance, *self.checks]:
            start, end = rec.get("started_at"), rec.get("ended_at")
            if isinstance(start, int | float) and isinstance(end, int | float):
                starts.append(float(start))
                ends.append(float(end))
        if self.manifest:
            for stage in self.manifest.get("stages", []):
                if stage.get("started_at") and stage.get("ended_at"):
                    starts.append(float(stage["started_at"]))
                    ends.append(float(stage["ended_at"]))
        return (min(starts), max(ends)) if starts else None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object")
    return data


def _stage_name(root: Path, path: Path) -> str:
    # A drill's load sits in load-<drill>/ (chaos/load.py): name it after the drill.
    parent = str(path.parent.relative_to(root))
    return "load" if parent == "." else parent.removeprefix("load-")


def _chaos(root: Path, path: Path) -> dict[str, Any]:
    try:
        data = chaos_record.read(path)
    except chaos_record.RecordError as exc:
        raise RecordError(str(exc)) from exc
    return {**data, "_path": str(path.relative_to(root))}


def _alerts(path: Path) -> list[dict[str, Any]]:
    lines = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except ValueError as exc:
            raise RecordError(f"{path}:{n}: not a JSON line: {exc}") from exc
    return sorted(lines, key=lambda a: float(a.get("received_at", 0.0)))


def read_run(root: Path) -> RunRecords:
    """Every record under ``root``; RecordError when there is none or one is unreadable."""
    if not root.is_dir():
        raise RecordError(f"{root}: no such run directory")
    run = RunRecords(root)
    for path in sorted(root.rglob(governance.RECORD_NAME)):
        try:
            data = governance.read(path)
        except RecordError as exc:
            raise RecordError(str(exc)) from exc
        run.governance.append({**data, "_path": str(path.relative_to(root))})
    run.governance.sort(key=lambda r: float(r["started_at"]))
    for path in sorted(root.rglob(load_record.RECORD_NAME)):
        if (path.parent / governance.RECORD_NAME).exists():
            continue  # tool calls through sidecars: the governance record's, not the mesh's
        try:
            data = load_record.read(path)
        except load_record.RecordError as exc:
            raise RecordError(str(exc)) from exc
        run.loads.append(LoadRecord(_stage_name(root, path), path, data))
    run.loads.sort(key=lambda r: r.started)
    for path in sorted(root.rglob("chaos-*.json")):
        run.chaos.append(_chaos(root, path))
    run.chaos.sort(key=lambda r: float(r.get("started_at") or 0.0))
    for path in sorted(root.rglob("checks-*.json")):
        run.checks.append({**checks_record.read(path), "_path": str(path.relative_to(root))})
    alerts = root / ALERTS_FILE
    if alerts.exists():
        run.alerts = _alerts(alerts)
    manifest = root / MANIFEST_FILE
    if manifest.exists():
        run.manifest = _json(manifest)
        if run.manifest.get("schema") != MANIFEST_SCHEMA:
            raise RecordError(f"{manifest}: schema {run.manifest.get('schema')!r},"
                              f" expected {MANIFEST_SCHEMA}")
    if not run.loads and not run.chaos and not run.governance and not run.checks:
        raise RecordError(f"{root}: no run records (load.json, chaos-*.json,"
                          " governance.json or checks-*.json) in it")
    return run
