"""`meshsre loadtest` (also `python -m loadtests`): one load test, headless, with a verdict.

Exit codes: 0 every threshold passed; 1 a threshold was breached; 2 bad input or an
unreachable host; 3 the run is invalid (a worker was lost, nothing was sent).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from loadtests.governance import GovernanceRun, run_governance, table
from loadtests.profiles import PROFILES
from loadtests.run import WORKLOADS, LoadRun, RunError, parse_duration, run
from meshsre import status

__all__ = ["governance", "loadtest", "local_cluster"]

EXIT_USAGE = 2


def local_cluster(state_dir: str) -> dict[str, object]:
    """The local cluster as `meshsre status --json` describes it (a subprocess: the suite
    reads the launcher's contract, not its internals)."""
    try:
        info: dict[str, object] = status.local_cluster(state_dir, timeout=15)
    except status.StatusUnavailable as exc:
        raise click.UsageError(f"no --host given and {exc}") from exc
    if not info.get("ready") or not info.get("front_door"):
        raise click.UsageError("no HOST given and no local cluster is up: pass HOST=URL"
                               " (--host URL), or start one with `meshsre up`")
    return info


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@click.command("loadtest")
@click.option("--host", envvar="MESH_URL", default="",
              help="Base URL of the mesh (default: the local cluster's front door).")
@click.option("--users", default=20, show_default=True, type=click.IntRange(min=1),
              help="Concurrent users (the pool of senders; size it for the peak rate).")
@click.option("--rate", default=50.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Requests/s offered in total.")
@click.option("--duration", default="60s", show_default=True, callback=_duration,
              help="Run time: 90, 90s, 5m, 1h30m.")
@click.option("--shape", default="steady", show_default=True, type=click.Choice(list(PROFILES)))
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Local Locust workers under a master (0: one process).")
@click.option("--workload", default="mesh", show_default=True, type=click.Choice(list(WORKLOADS)))
@click.option("--replicas", default="", help="Comma-separated replica URLs: the revocation probe"
              " revokes through and polls them, and their /metrics give the server-side SLIs"
              " (default: every replica of the local cluster; else only the host is probed).")
@click.option("--agents-per-user", type=click.IntRange(min=1), default=None,
              help="Agents each user registers up front (default: enough to stay far below"
              " the per-agent rate limit).")
@click.option("--max-lag", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a request may fall behind its schedule before it is dropped.")
@click.option("--revocation-every", default=5.0, show_default=True,
              type=click.FloatRange(min=0), help="Seconds between revocation probes (0: off).")
@click.option("--run-id", envvar="MESHSRE_RUN_ID", default="", help="Run id (default: time).")
@click.option("--out", "out_dir", default="reports/out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--state-dir", envvar="MESHSRE_STATE_DIR", default=".meshsre", show_default=True,
              help="The local cluster's state dir (to find its front door).")
@click.option("--quiet", is_flag=True, help="Only Locust's summary, not its periodic stats.")
def loadtest(host: str, users: int, rate: float, duration: str, shape: str, workers: int,
             workload: str, replicas: str, agents_per_user: int | None, max_lag: float,
             revocation_every: float, run_id: str, out_dir: Path, state_dir: str,
             quiet: bool) -> None:
    """Run the Locust workload headless against HOST and judge it against the SLOs.

    Writes reports/out/<run-id>/load.json beside Locust's CSV and HTML. Admin reads and the
    revocation probe need MESH_ADMIN_TOKEN (taken from the local cluster when it is up).
    """
    env: dict[str, str] = {}
    replica_urls = tuple(u.strip() for u in replicas.split(",") if u.strip())
    if not host:
        info = local_cluster(state_dir)
        host = str(info["front_door"])
        if not os.environ.get("MESH_ADMIN_TOKEN") and info.get("admin_token"):
            env["MESH_ADMIN_TOKEN"] = str(info["admin_token"])
        components = info.get("components")
        if not replica_urls and isinstance(components, list):
            replica_urls = tuple(str(c["url"]) for c in components
                                 if isinstance(c, dict) and c.get("kind") == "mesh")
    spec = LoadRun(host=host.rstrip("/"), users=users, rate=rate, duration=duration,
                   shape=shape, workers=workers, run_id=run_id, out_dir=out_dir,
                   replicas=replica_urls, workload=workload, agents_per_user=agents_per_user,
                   max_lag=max_lag, revocation_every=revocation_every, quiet=quiet, env=env)
    try:
        result = run(spec, echo=lambda line: click.echo(line, err=True))
    except RunError as exc:
        click.echo(f"loadtest: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    verdict = result.record["verdict"]
    if not verdict["valid"]:
        summary = "INVALID: " + "; ".join(verdict["invalid_reasons"])
    elif verdict["breached"]:
        summary = "FAILED: breached " + ", ".join(verdict["breached"])
    else:
        summary = "passed"
    click.echo(f"loadtest {summary} (run record: {result.record_path})", err=True)
    sys.exit(result.exit_code)


def _urls(text: str) -> tuple[str, ...]:
    return tuple(u.strip().rstrip("/") for u in text.split(",") if u.strip())


@click.command("governance")
@click.option("--sidecars", default="", help="Comma-separated sidecar URLs (default: the local"
              " cluster's).")
@click.option("--upstream", default="", help="The tool's own URL, called directly (default: the"
              " local cluster's tool).")
@click.option("--replicas", default="", help="Mesh URLs to revoke through (default: the local"
              " cluster's replicas).")
@click.option("--users", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--rate", default=100.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Tool calls/s, both paths.")
@click.option("--duration", default="60s", show_default=True, callback=_duration)
@click.option("--revoke-every", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between rounds revoking every sidecar's credential (0: none).")
@click.option("--run-id", envvar="MESHSRE_RUN_ID", default="", help="Run id (default: time).")
@click.option("--name", default="governance", show_default=True,
              help="Directory of this job inside the run (several can share a run).")
@click.option("--out", "out_dir", default="reports/out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--state-dir", envvar="MESHSRE_STATE_DIR", default=".meshsre", show_default=True)
def governance(sidecars: str, upstream: str, replicas: str, users: int, rate: float,
               duration: str, revoke_every: float, run_id: str, name: str, out_dir: Path,
               state_dir: str) -> None:
    """Tool calls through governance sidecars and directly, under load, with revocations:
    the sidecar's p99 overhead and revocation-to-enforcement on every sidecar.

    Writes OUT/RUN_ID/NAME/governance.json beside Locust's load.json. Exit 0: the overhead
    and revocation objectives were met; 1: one was missed; 2: it could not run.
    """
    token = os.environ.get("MESH_ADMIN_TOKEN", "")
    found = (_urls(sidecars), upstream.rstrip("/"), _urls(replicas))
    if not all(found) or not token:
        info: dict[str, Any] = local_cluster(state_dir)
        components = [c for c in info.get("components") or [] if isinstance(c, dict)]
        found = (found[0] or _urls(",".join(str(u) for u in info.get("sidecars") or [])),
                 found[1] or str(info.get("tool") or ""),
                 found[2] or tuple(str(c["url"]) for c in components if c["kind"] == "mesh"))
        token = token or str(info.get("admin_token") or "")
    if not found[0] or not found[1]:
        raise click.UsageError("no sidecars: pass --sidecars and --upstream, or start the local"
                               " cluster with them (`meshsre up --sidecars-per-zone 1`)")
    spec = GovernanceRun(sidecars=found[0], upstream=found[1], replicas=found[2],
                         admin_token=token, users=users, rate=rate, duration=duration,
                         revoke_every=revoke_every if token else 0.0, run_id=run_id,
                         name=name, out_dir=out_dir)
    try:
        rec = run_governance(spec, echo=lambda line: click.echo(line, err=True))
    except RunError as exc:
        click.echo(f"governance: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(table(rec))
    sys.exit(0 if rec["passed"] else 1)
