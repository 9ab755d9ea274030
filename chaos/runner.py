"""Run one experiment with the Chaos Toolkit CLI as a subprocess and judge its journal.

`chaos run` alone exits 0 after a run in which an action failed: Chaos Toolkit only fails a run
on the steady-state hypothesis. The runner reads the journal and fails the run when any method
activity or rollback did not succeed, the hypothesis was not met before or after, or a drill
objective was missed (``chaos.record.failures``). Rollbacks always run (``--rollback-strategy
always``): after a failed or interrupted run a zone must not stay down.

>>> experiment_path("az-failure").name
'az-failure.json'
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos import record, runstate

__all__ = ["EXPERIMENTS", "ChaosRun", "RunError", "RunResult", "experiment_path", "run",
           "zone_drill"]

HERE = Path(__file__).resolve().parent
EXPERIMENTS = ("az-failure", "backup-restore", "revocation", "event-stream", "data-failover")
INTERRUPT_GRACE_S = 180.0  # after a Ctrl-C, Chaos Toolkit still runs the rollbacks


def zone_drill(mode: str) -> str:
    """The drill name, hence the record's file name, of an AZ failure in ``mode``: power keeps
    the plain name, each other mode gets its own (``az-failure-loss-20``)."""
    return "az-failure" if mode == "power" else f"az-failure-{mode.replace(':', '-')}"


class RunError(RuntimeError):
    """The experiment could not be run at all (unknown name, no journal): one line."""


def experiment_path(name: str) -> Path:
    """chaos/<name>.json for a known drill, or the path of an experiment file."""
    if name in EXPERIMENTS:
        return HERE / f"{name}.json"
    path = Path(name)
    if path.suffix in (".json", ".yaml", ".yml") and path.exists():
        return path.resolve()
    raise RunError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}"
                   " or give the path of an experiment file")


@dataclass(frozen=True)
class ChaosRun:
    name: str
    run_dir: Path
    variables: Mapping[str, str] = field(default_factory=dict)  # `chaos run --var key=value`
    env: Mapping[str, str] = field(default_factory=dict)  # MESH_URL, PROMETHEUS_URL, ...
    timeout: float = 1800.0


@dataclass(frozen=True)
class RunResult:
    exit_code: int  # 0 passed, 1 the drill failed
    chaos_exit_code: int
    record_path: Path
    record: dict[str, Any]


def _argv(spec: ChaosRun, run_dir: Path, path: Path, drill: str) -> list[str]:
    chaos = str(Path(sys.executable).with_name("chaos"))
    argv = [chaos, "--no-version-check", "--log-file", str(run_dir / f"chaos-{drill}.log"),
            "run", "--rollback-strategy", "always",
            "--journal-path", str(run_dir / f"journal-{drill}.json")]
    for key, value in sorted(spec.variables.items()):
        argv += ["--var", f"{key}={value}"]
    return [*argv, str(path)]


def _wait(proc: subprocess.Popen[bytes], timeout: float, echo: Callable[[str], None]) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        echo(f"chaos: still running after {timeout:.0f} s: interrupting (rollbacks will run)")
        proc.send_signal(signal.SIGINT)
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached chaos too: it runs its rollbacks
        echo("chaos: interrupted: waiting for the rollbacks")
    try:
        return proc.wait(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        echo("chaos: rollbacks did not finish in time: killed; check the platform by hand")
        proc.kill()
        return proc.wait()


def drill_of(path: Path) -> str:
    experiment = json.loads(path.read_text()) if path.suffix == ".json" else {}
    drill = experiment.get("configuration", {}).get("drill")
    return str(drill) if isinstance(drill, str) else path.stem


def run(spec: ChaosRun, echo: Callable[[str], None] = print) -> RunResult:
    path = experiment_path(spec.name)
    drill = spec.variables.get("drill") or drill_of(path)  # `--var drill=` names one run
    run_dir = spec.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    journal_path = run_dir / f"journal-{drill}.json"
    notes_path = run_dir / f"notes-{drill}.json"
    for stale in (journal_path, notes_path, record.record_path(run_dir, drill)):
        stale.unlink(missing_ok=True)  # never judge a previous run's evidence
    argv = _argv(spec, run_dir, path, drill)
    env = {**os.environ, **spec.env, runstate.RUN_DIR_ENV: str(run_dir)}
    started = time.time()
    proc = subprocess.Popen(argv, env=env)
    code = _wait(proc, spec.timeout, echo)
    if not journal_path.exists():
        raise RunError(f"chaos exited with code {code} without a journal ({journal_path});"
                       f" see {run_dir / f'chaos-{drill}.log'}")
    journal = json.loads(journal_path.read_text())
    notes = runstate.Notes(notes_path).read()
    notes.setdefault("run_dir", str(run_dir))
    notes.setdefault("drill", drill)
    runner = {"argv": argv[1:], "chaos_exit_code": code,
              "wall_seconds": round(time.time() - started, 3)}
    rec = record.build(journal, notes, runner)
    rec["runner"]["exit_code"] = 0 if rec["passed"] else 1
    path_out = record.write(run_dir, rec)
    return RunResult(rec["runner"]["exit_code"], code, path_out, rec)
