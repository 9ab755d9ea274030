"""`meshsre loadtest` (also `python -m loadtests`): one load test, headless, with a verdict.

Exit codes: 0 every threshold passed; 1 a threshold was breached; 2 bad input or an
unreachable host; 3 the run is invalid (a worker was lost, nothing was sent).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from loadtests.profiles import PROFILES
from loadtests.run import WORKLOADS, LoadRun, RunError, parse_duration, run
from meshsre import status

__all__ = ["loadtest", "local_cluster"]

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
