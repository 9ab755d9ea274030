"""`meshsre chaos NAME`: one Chaos Toolkit experiment against the local cluster or MESH_URL.

Exit codes: 0 the drill passed; 1 it failed (an activity, the hypothesis or an objective);
2 it could not run (bad input, no cluster, no journal).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from chaos.runner import EXPERIMENTS, ChaosRun, RunError, run, zone_drill
from mesh import faults
from meshsre import status

__all__ = ["chaos"]

EXIT_USAGE = 2
_HEADLINE = {
    "az-failure": ("zone", "mode", "ttd_seconds", "ttr_seconds", "errors_during_failure",
                   "requests_during_failure", "writes_lost", "zone_restore_seconds"),
    "backup-restore": ("backend", "rto_seconds", "rto_phases", "rpo_seconds", "writes_lost",
                       "writes_lost_before_backup", "chain_ok", "manifest_match"),
    "revocation": ("samples", "p50_seconds", "p99_seconds", "max_seconds", "goal_met",
                   "server_p99_seconds"),
    "event-stream": ("sidecars",),
    "data-failover": ("replication", "failed_primary", "new_primary", "failover_seconds",
                      "writes_lost", "rpo_seconds", "mesh_writes_lost", "lag_bytes_before",
                      "lag_bytes_during", "audit_chain_ok"),
}


def _cluster_env(state_dir: str) -> dict[str, str]:
    """MESH_URL and friends from `meshsre status --json` (the launcher's contract, not its
    internals), for what the caller did not set."""
    try:
        info = status.local_cluster(state_dir)
    except status.StatusUnavailable as exc:
        raise click.UsageError(f"MESH_URL is not set and {exc}") from exc
    if not info.get("front_door"):
        raise click.UsageError(f"MESH_URL is not set and no local cluster is up in {state_dir}:"
                               " start one with `meshsre up`, or export MESH_URL, PROMETHEUS_URL"
                               " and MESH_ADMIN_TOKEN")
    found = {
        "MESH_PLATFORM": "local", "MESHSRE_STATE_DIR": info.get("state_dir"),
        "MESH_URL": info.get("front_door"), "PROMETHEUS_URL": info.get("prometheus"),
        "ALERTMANAGER_URL": info.get("alertmanager"), "MESH_ADMIN_TOKEN": info.get("admin_token"),
        "MESHSRE_ALERTS_FILE": info.get("alerts_file"),
    }
    return {k: str(v) for k, v in found.items() if v and not os.environ.get(k)}


def _variables(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--var")
        out[key] = value
    return out


def _mode(name: str, mode: str) -> tuple[str, dict[str, str]]:
    """The experiment to run and its settings: az-failure in a zone's mode, or the mode's own
    experiment (``data``: data-failover)."""
    if name != "az-failure":
        raise click.BadParameter(f"only az-failure has fault modes, not {name}",
                                 param_hint="--mode")
    try:
        parsed = faults.parse(mode)
    except faults.FaultModeError as exc:
        raise click.BadParameter(str(exc), param_hint="--mode") from exc
    if experiment := faults.MODES[parsed.name].experiment:
        return experiment, {}
    return name, {"mode": str(parsed), "drill": zone_drill(str(parsed))}


def _summary(rec: dict[str, Any]) -> list[str]:
    lines = [f"{rec['drill']}: {'PASSED' if rec['passed'] else 'FAILED'}"
             f" (status {rec['status']}, deviated {str(rec['deviated']).lower()})"]
    figures = rec["measurements"]
    drill = "az-failure" if rec["drill"].startswith("az-failure") else rec["drill"]
    keys = _HEADLINE.get(drill, tuple(sorted(figures)))
    lines += [f"  {k}: {json.dumps(figures.get(k))}" for k in keys if k in figures]
    lines += [f"  failure: {f}" for f in rec["failures"]]
    return lines


@click.command("chaos")
@click.argument("name", metavar=f"NAME ({'|'.join(EXPERIMENTS)} or FILE)")
@click.option("--run-id", envvar="MESHSRE_RUN_ID", default="",
              help="Run id: results go to OUT/RUN_ID/ (default: UTC time + '-chaos').")
@click.option("--out", "out_dir", default="reports/out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE",
              help="Override an experiment setting, e.g. --var observe_seconds=10 (repeatable).")
@click.option("--mode", default=None, metavar="MODE",
              help="az-failure: how the zone fails: power, blackhole, loss:N or partition"
                   " (default power). The record is chaos-az-failure-MODE.json (power:"
                   " chaos-az-failure.json). data: the PostgreSQL primary fails instead"
                   " (the data-failover experiment; needs meshsre up --storage patroni).")
@click.option("--state-dir", envvar="MESHSRE_STATE_DIR", default=".meshsre", show_default=True,
              help="The local cluster, used when MESH_URL is not set.")
@click.option("--timeout", default=1800.0, show_default=True,
              help="Seconds before the run is interrupted (its rollbacks still run).")
def chaos(name: str, run_id: str, out_dir: Path, variables: tuple[str, ...], mode: str | None,
          state_dir: str, timeout: float) -> None:
    """Run a Chaos Toolkit experiment (chaos/NAME.json) with rollbacks always, judge its
    journal, and write OUT/RUN_ID/chaos-NAME.json beside the journal and the load's record."""
    settings = _variables(variables)
    if mode is not None:
        name, mode_settings = _mode(name, mode)
        settings.update(mode_settings)
    env = {} if os.environ.get("MESH_URL") else _cluster_env(state_dir)
    run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-chaos"
    spec = ChaosRun(name=name, run_dir=out_dir / run_id, variables=settings,
                    env=env, timeout=timeout)
    try:
        result = run(spec, echo=lambda line: click.echo(line, err=True))
    except RunError as exc:
        click.echo(f"chaos: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    for line in _summary(result.record):
        click.echo(line, err=True)
    click.echo(f"run record: {result.record_path}", err=True)
    sys.exit(result.exit_code)
