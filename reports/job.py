"""The nightly job while it runs: its settings, the stages so far, the local cluster it
started, and how a stage runs one command with its output in ``<run-dir>/logs/`` and lands in
``<run-dir>/run.json``. The stages (``reports.stages``) and their order (``reports.nightly``)
build on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.progress import Progress
from reports.records import ALERTS_FILE, MANIFEST_FILE, MANIFEST_SCHEMA
from reports.settings import Settings

__all__ = ["EXIT_ERROR", "MESHSRE", "Nightly", "Stage", "StageError"]

EXIT_ERROR = 2
MESHSRE = str(Path(sys.executable).with_name("meshsre"))


class StageError(RuntimeError):
    """A stage could not do its job (not: it measured a breach)."""


@dataclass
class Stage:
    name: str
    status: str = "pending"  # ok, failed (ran, objective missed), error (could not run), skipped
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    detail: str = ""
    log: str = ""


@dataclass
class Nightly:
    settings: Settings
    out_dir: Path
    progress: Progress
    stages: list[Stage] = field(default_factory=list)
    cluster: dict[str, Any] = field(default_factory=dict)
    audit_checkpoint: dict[str, Any] | None = None  # the run's, once the security suite kept it
    started_at: float = field(default_factory=time.time)

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.settings.run_id

    def env(self) -> dict[str, str]:
        """What every stage needs to find the mesh: the local cluster's, or the caller's."""
        s, c = self.settings, self.cluster
        found = {"MESH_PLATFORM": s.platform, "MESH_URL": c.get("front_door") or s.mesh_url,
                 "PROMETHEUS_URL": c.get("prometheus") or s.prometheus_url,
                 "ALERTMANAGER_URL": c.get("alertmanager") or s.alertmanager_url,
                 "MESH_ADMIN_TOKEN": c.get("admin_token") or s.admin_token,
                 "MESHSRE_ALERTS_FILE": c.get("alerts_file") or "",
                 "MESHSRE_STATE_DIR": c.get("state_dir") or ""}
        return {k: str(v) for k, v in found.items() if v}

    def write_manifest(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = self.env()
        manifest = {
            "schema": MANIFEST_SCHEMA, "run_id": self.settings.run_id,
            "platform": self.settings.platform, "quick": self.settings.quick,
            "settings": self.settings.public(), "mesh_url": env.get("MESH_URL"),
            "prometheus_url": env.get("PROMETHEUS_URL"), "started_at": self.started_at,
            "ended_at": time.time(),
            "stages": [vars(s) for s in self.stages if s.started_at is not None],
            "audit_checkpoint": self.audit_checkpoint,
        }
        tmp = self.run_dir / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.run_dir / MANIFEST_FILE)

    def command(self, stage: Stage, argv: list[str], timeout: float) -> int:
        """Run one stage's command with its output in logs/<stage>.log; its exit code."""
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stage.log = f"logs/{stage.name}.log"
        with (logs / f"{stage.name}.log").open("ab") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            try:
                done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env()}, timeout=timeout,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as exc:
                raise StageError(f"did not finish within {timeout:.0f} s") from exc
        return done.returncode

    def tail(self, stage: Stage, lines: int = 3) -> str:
        try:
            text = (self.run_dir / stage.log).read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def run_stage(self, name: str, what: str, body: Callable[[Stage], str]) -> Stage:
        began = time.time()
        stage = Stage(name, started_at=began)
        self.stages.append(stage)
        self.progress.begin(name, what)
        try:
            stage.detail = body(stage)
            stage.status = "ok" if stage.exit_code in (None, 0) else "failed"
        except (StageError, OSError, ValueError) as exc:
            stage.status, stage.detail = "error", str(exc)
        stage.ended_at = time.time()
        took = stage.ended_at - began
        word = {"ok": "done", "failed": "FAILED", "error": "ERROR"}[stage.status]
        self.progress.end(f"{word} in {took:.1f} s: {stage.detail}")
        if stage.status != "ok" and stage.log:
            self.progress.say(f"  {stage.log}: {self.tail(stage)}")
        self.write_manifest()
        return stage

    def copy_alerts(self) -> int:
        """The alert notifications of this run, from the local webhook file into the run."""
        source = self.cluster.get("alerts_file")
        if not source or not Path(source).exists():
            return 0
        lines = [line for line in Path(source).read_text().splitlines() if line.strip()
                 and json.loads(line).get("received_at", 0) >= self.started_at]
        (self.run_dir / ALERTS_FILE).write_text("".join(line + "\n" for line in lines))
        return len(lines)
