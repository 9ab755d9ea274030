"""The nightly job: up -> steady load -> governance (tool calls through sidecars) -> AZ
failure under load, once per fault mode (power, blackhole, loss:20, partition; quick:
blackhole) -> backup-restore drill -> revocation drill -> event-stream drill (with
sidecars) -> data-failover drill (the `data` fault, with NIGHTLY_STORAGE=patroni) -> security
suite -> report -> down (down also after a failure).

Every stage is the same command a person would run (``meshsre up``, ``meshsre loadtest``,
``meshsre chaos NAME``, ``meshsre report``), each as a subprocess with its output in
``<run-dir>/logs/``; this module only orders them, shows progress and records what happened
in ``<run-dir>/run.json``. Settings come from the environment (``reports.settings``).
With ``MESH_PLATFORM=kubernetes`` the job runs against MESH_URL and PROMETHEUS_URL and never
starts or stops anything.

Exit status: 0 passed; 1 an SLO or a drill objective was breached (NIGHTLY_FAIL_ON); 2 the
job itself failed (a stage crashed, no report could be built).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from chaos.runner import zone_drill
from reports import stages
from reports.job import EXIT_ERROR, Nightly
from reports.progress import Progress
from reports.prom import Prom
from reports.settings import Settings, SettingsError

SETTLE_S = 60

__all__ = ["main", "run_all"]


def run_all(job: Nightly) -> int:
    s = job.settings
    code = EXIT_ERROR
    try:
        if s.local:
            up = job.run_stage("up", f"zones {s.zones}, {s.replicas} replica(s) per zone,"
                               f" {s.storage}", lambda st: stages.up(job, st))
            if up.status != "ok":
                return EXIT_ERROR
        job.run_stage("steady-load", f"{s.steady_seconds} s at {s.rate:g} req/s,"
                      f" {s.users} users", lambda st: stages.steady(job, st))
        if s.local and s.sidecars_per_zone:
            job.run_stage("governance", f"{s.governance_seconds} s of tool calls at"
                          f" {s.governance_rate:g}/s through sidecars and directly",
                          lambda st: stages.governance(job, st))
        for mode in s.zone_modes:  # the AZ failure once per fault mode
            zone = job.run_stage(zone_drill(mode), f"meshsre chaos az-failure --mode {mode}",
                                 stages.chaos(job, stages.ZONE_EXPERIMENT, mode))
            if zone.status != "ok":
                # Its errors would fall in the next drill's steady state (the SLOs over the
                # last minute), which then refuses to start: wait that minute out.
                job.progress.say(f"{SETTLE_S} s for the failed drill's errors to leave the"
                                 " last minute")
                time.sleep(SETTLE_S)
        for name in stages.DRILL_STAGES:
            if name in stages.NEEDS_SIDECARS and not (s.local and s.sidecars_per_zone):
                continue
            if name in stages.NEEDS_PATRONI and not (s.local and s.storage == "patroni"):
                continue
            job.run_stage(name, f"meshsre chaos {name}", stages.chaos(job, name))
        job.run_stage("security", "suites/test_security.py: replays, limits, slow clients",
                      lambda st: stages.security(job, st))
    finally:
        try:
            if any(st.name in ("steady-load", "governance", *stages.CHAOS_STAGES, "security")
                   or st.name.startswith(stages.ZONE_EXPERIMENT) for st in job.stages):
                code = stages.report(job)
        finally:
            if s.local and job.stages:
                job.run_stage("down", "stopping the local cluster", lambda st: stages.down(job, st))
    errors = [st.name for st in job.stages if st.status == "error"]
    if errors:
        job.progress.say(f"stages that could not run: {', '.join(errors)}")
        return EXIT_ERROR
    job.progress.say(f"exit {code}: {'passed' if code == 0 else 'breached'}")
    return code


def main(out_dir: Path, echo: Callable[[str], None] = print) -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        echo(f"nightly: {exc}")
        return EXIT_ERROR
    prom = Prom(settings.prometheus_url) if settings.prometheus_url else None
    job = Nightly(settings, out_dir, Progress(settings.progress_seconds, prom, echo))
    job.progress.say(f"run {settings.run_id} on {settings.platform}"
                     f"{' (quick)' if settings.quick else ''}: {job.run_dir}")
    return run_all(job)
