"""Start a load test as Locust subprocesses and return its run record.

Other tools (the CLI, chaos activities, the nightly job) call ``run(LoadRun(...))``; Locust is
never imported into their process, because its gevent monkey-patching deadlocks code that is
not written for it. One headless process runs a plain test; with ``workers=N`` a master
(``--expect-workers N``) and N workers run on this machine. The master writes
``load.json`` (``loadtests.hooks``); the runner adds how it was started.

>>> parse_duration("1m30s"), parse_duration("20")
(90.0, 20.0)
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtests import record
from loadtests.profiles import PROFILES, LoadParams, peak_rate

__all__ = ["LoadRun", "RunError", "RunResult", "Unreachable", "parse_duration", "run"]

HERE = Path(__file__).resolve().parent
WORKLOADS = {"mesh": HERE / "locustfile.py", "health": HERE / "health_locustfile.py",
             "sidecar": HERE / "sidecar_locustfile.py"}
# About 35% of the mesh workload's requests are policy decisions (task weights in the
# locustfile); each agent may make 120 a minute per replica. Plan for a quarter of that.
DECISION_SHARE = 0.4
DECISIONS_PER_AGENT_S = 0.5
PREFLIGHT_TIMEOUT_S = 3.0
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class RunError(RuntimeError):
    """The load test could not run (bad input, Locust crashed): one line for the user."""


class Unreachable(RunError):
    pass


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '5m', '1h30m' (Locust's -t format)."""
    text = text.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        m = _DURATION.match(text)
        if not m or not any(m.groups()):
            raise ValueError(f"bad duration {text!r}: use seconds, or e.g. 90s, 5m, 1h30m")
        h, mi, s = (int(g or 0) for g in m.groups())
        seconds = float(h * 3600 + mi * 60 + s)
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return seconds


@dataclass(frozen=True)
class LoadRun:
    host: str
    users: int = 20
    rate: float = 50.0
    duration: str = "60s"
    shape: str = "steady"
    workers: int = 0
    run_id: str = ""
    out_dir: Path = Path("reports/out")
    replicas: tuple[str, ...] = ()
    workload: str = "mesh"
    agents_per_user: int | None = None
    max_lag: float = 5.0
    revocation_every: float = 5.0
    quiet: bool = False
    log_to_file: bool = False  # Locust's output to <run-dir>/locust.log instead of ours
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # e.g. MESH_ADMIN_TOKEN

    def validate(self) -> LoadParams:
        if self.shape not in PROFILES:
            raise RunError(f"unknown shape {self.shape!r}: choose one of {', '.join(PROFILES)}")
        if self.workload not in WORKLOADS:
            raise RunError(f"unknown workload {self.workload!r}: {', '.join(WORKLOADS)}")
        if self.workers < 0:
            raise RunError(f"workers must be 0 (one process) or more, got {self.workers}")
        try:
            return LoadParams(self.users, self.rate, parse_duration(self.duration))
        except ValueError as exc:
            raise RunError(str(exc)) from exc

    def planned_agents_per_user(self, params: LoadParams) -> int:
        if self.agents_per_user is not None:
            return self.agents_per_user
        per_user = peak_rate(self.shape, params) * DECISION_SHARE / params.users
        return min(1000, max(2, math.ceil(per_user / DECISIONS_PER_AGENT_S)))


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    record_path: Path
    record: dict[str, Any]


def preflight(host: str, timeout: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when HOST cannot be reached."""
    try:
        r = httpx.get(host.rstrip("/") + "/health/live", timeout=timeout)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise Unreachable(f"cannot reach {host}: {reason}") from exc
    if r.status_code != 200:
        raise Unreachable(f"{host}/health/live answered HTTP {r.status_code}: not a live mesh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _argv(spec: LoadRun, run_id: str, run_dir: Path, agents: int) -> list[str]:
    argv = [sys.executable, "-m", "locust", "-f", str(WORKLOADS[spec.workload]),
            "--host", spec.host, "--users", str(spec.users), "--run-time", spec.duration,
            "--rate", repr(float(spec.rate)), "--shape", spec.shape,
            "--run-id", run_id, "--run-dir", str(run_dir),
            "--agents-per-user", str(agents), "--max-lag", repr(spec.max_lag),
            "--revocation-every", repr(spec.revocation_every)]
    if spec.replicas:
        argv += ["--replicas", ",".join(spec.replicas)]
    return argv + list(spec.extra_args)


def run(spec: LoadRun, echo: Callable[[str], None] = print) -> RunResult:
    params = spec.validate()
    preflight(spec.host)
    run_id = spec.run_id or record.default_run_id()
    run_dir = (spec.out_dir / run_id).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / record.RECORD_NAME).unlink(missing_ok=True)  # never report a stale record
    base = _argv(spec, run_id, run_dir, spec.planned_agents_per_user(params))
    head = [*base, "--headless", "--csv", str(run_dir / "locust"),
            "--html", str(run_dir / "locust.html"), "--json-file", str(run_dir / "locust")]
    if spec.quiet:
        head.append("--only-summary")
    env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
    workers: list[subprocess.Popen[bytes]] = []
    logs = []
    if spec.workers:
        port = _free_port()
        head += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                 "--expect-workers", str(spec.workers), "--expect-workers-max-wait", "30"]
        for i in range(spec.workers):
            log_path = run_dir / f"worker-{i}.log"
            logs.append(log_path.name)
            with log_path.open("wb") as log:
                workers.append(subprocess.Popen(
                    [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                    env=env, stdout=log, stderr=subprocess.STDOUT))
    started = time.time()
    deadline = parse_duration(spec.duration) + 120  # spawn, setup and stop have a bound too
    if spec.log_to_file:
        with (run_dir / "locust.log").open("wb") as log:
            master = subprocess.Popen(head, env=env, stdout=log, stderr=subprocess.STDOUT)
    else:
        master = subprocess.Popen(head, env=env)
    try:
        code = master.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        master.kill()
        code = master.wait()
        echo(f"loadtest: locust did not stop within {deadline:.0f} s and was killed")
    finally:
        worker_codes = []
        for w in workers:
            try:
                worker_codes.append(w.wait(timeout=15))
            except subprocess.TimeoutExpired:
                w.kill()
                worker_codes.append(w.wait())
    path = run_dir / record.RECORD_NAME
    if not path.exists():
        raise RunError(f"locust exited with code {code} without writing {path}")
    rec = record.read(path)
    rec["runner"] = {"argv": head[1:], "exit_code": code, "worker_exit_codes": worker_codes,
                     "wall_seconds": round(time.time() - started, 3), "worker_logs": logs}
    record.write(run_dir, rec)
    return RunResult(code, path, rec)
