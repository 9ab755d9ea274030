"""`meshsre up`, `meshsre down` and `meshsre status`: the local cluster from the terminal."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mesh.local import datatier
from mesh.local.errors import ClusterError, NotUpError
from mesh.local.spec import OPTIONAL_COMPONENTS, ClusterSpec
from mesh.local.state import StateDir

if TYPE_CHECKING:  # the cluster module pulls in httpx and jinja2: load it only when used
    from mesh.local.cluster import Cluster

__all__ = ["down", "status", "up"]

_state_dir = click.option(
    "--state-dir",
    envvar="MESHSRE_STATE_DIR",
    default=".meshsre",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where pids, configs, logs and data go.",
)


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("component", "zone", "address", "pid", "ready")
    cells = [header] + [
        (
            r["name"],
            r["zone"] or "-",
            r["address"],
            str(r["pid"]) if r["pid"] else "-",
            "yes" if r["ready"] else "NO",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _urls(info: dict[str, Any]) -> str:
    names = (
        ("front door", "front_door"),
        ("prometheus", "prometheus"),
        ("alertmanager", "alertmanager"),
        ("haproxy stats", "haproxy_stats"),
        ("alerts file", "alerts_file"),
        ("admin token", "admin_token_file"),
        ("event stream", "nats"),
        ("postgres door", "postgres_door"),
        ("tool", "tool"),
    )
    suffix = {"haproxy_stats": "/stats", "prometheus": "/targets"}
    lines = [
        f"{label + ':':15}{info[key]}{suffix.get(key, '')}" for label, key in names if info.get(key)
    ]
    return "\n".join([*lines, f"{'network:':15}{_layout(info)}"])


def _layout(info: dict[str, Any]) -> str:
    net = info.get("zone_network")
    if not net:
        return "loopback (every replica on its own 127.0.0.x; no network faults)"
    zones = ", ".join(f"{z['zone']} {z['subnet']} in {z['netns']}" for z in net["zones"])
    return f"zones (a network namespace each: {zones})"


def _show(cluster: Cluster) -> dict[str, Any]:
    info = cluster.describe()
    click.echo(_table(info["components"]))
    click.echo()
    click.echo(_urls(info))
    return info


@click.command()
@click.option("--zones", default="a,b,c", show_default=True, help="Comma-separated zone names.")
@click.option("--replicas-per-zone", default=2, show_default=True, type=click.IntRange(1, 9))
@click.option(
    "--storage",
    default="sqlite",
    show_default=True,
    help="sqlite (in the state dir), sqlite:///PATH, postgresql://... or patroni (a PostgreSQL"
    " per zone managed by Patroni and etcd, behind the front door).",
)
@click.option(
    "--replication",
    default="sync",
    show_default=True,
    type=click.Choice(["sync", "async"]),
    help="With --storage patroni: synchronous (no acknowledged write lost) or asynchronous.",
)
@click.option("--redis", default=None, help="redis://... for revocation fan-out (optional).")
@click.option(
    "--without",
    multiple=True,
    type=click.Choice(sorted(OPTIONAL_COMPONENTS)),
    help="Run without this component (repeatable).",
)
@click.option(
    "--base-port",
    default=18080,
    show_default=True,
    type=click.IntRange(0, 65000),
    help="First port (front door); taken ports fall back to free ones; 0: all free.",
)
@click.option(
    "--sidecars-per-zone",
    default=0,
    show_default=True,
    type=click.IntRange(0, 3),
    help="Governance sidecars per zone, each one agent's, in front of a tool (and the tool).",
)
@click.option(
    "--network",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "zones", "loopback"]),
    help="zones: a network namespace per zone, so network faults can cut it off (root only);"
    " loopback: every replica on its own 127.0.0.x; auto: zones when running as root.",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for ready.")
@_state_dir
def up(
    zones: str,
    replicas_per_zone: int,
    storage: str,
    replication: str,
    redis: str | None,
    without: tuple[str, ...],
    base_port: int,
    sidecars_per_zone: int,
    network: str,
    timeout: float,
    state_dir: Path,
) -> None:
    """Start the local multi-zone cluster and wait until every part is ready."""
    from mesh.local.cluster import Cluster

    cluster = Cluster(StateDir(state_dir))
    try:
        spec = ClusterSpec(
            zones=tuple(z.strip() for z in zones.split(",") if z.strip()),
            replicas_per_zone=replicas_per_zone,
            storage=storage,
            redis=redis,
            without=frozenset(without),
            base_port=base_port,
            sidecars_per_zone=sidecars_per_zone,
            network=network,
            replication=replication,
        )
        result = cluster.up(spec, timeout=timeout, progress=lambda m: click.echo(m, err=True))
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    if result.outcome != "started" and result.state.spec != spec.to_dict():
        click.echo(
            "already up with other options: run `meshsre down` first to change them", err=True
        )
    click.echo(f"{result.outcome} in {result.seconds:.1f}s ({cluster.paths.root})", err=True)
    _show(cluster)


@click.command()
@click.option("--purge", is_flag=True, help="Also delete the state dir (data, logs, configs).")
@_state_dir
def down(purge: bool, state_dir: Path) -> None:
    """Stop every process of the local cluster (pid-checked), even after a failed `up`."""
    from mesh.local.cluster import Cluster

    paths = StateDir(state_dir)
    try:
        result = Cluster(paths).down()
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, outcome in sorted(result.items()):
        click.echo(f"{name}: {outcome}")
    if not result:
        click.echo("nothing was running")
    if purge and paths.root.exists():
        shutil.rmtree(paths.root)
        click.echo(f"removed {paths.root}")
    if purge and (spare := datatier.spare_dir(paths)).exists():
        shutil.rmtree(spare)  # data-tier members kept outside the state dir (as root)
        click.echo(f"removed {spare}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable, for scripts.")
@click.option(
    "--env",
    "as_env",
    is_flag=True,
    help='Shell exports (MESH_URL, PROMETHEUS_URL...): eval "$(meshsre status --env)"',
)
@_state_dir
def status(as_json: bool, as_env: bool, state_dir: Path) -> None:
    """Show every component with its zone, address, pid and readiness (exit 1 if not all ready)."""
    from mesh.local.cluster import Cluster

    cluster = Cluster(StateDir(state_dir))
    try:
        info = cluster.describe() if as_json or as_env else _show(cluster)
    except NotUpError as exc:
        if as_json:
            click.echo(
                json.dumps({"state_dir": str(cluster.paths.root), "ready": False, "components": []})
            )
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
    elif as_env:
        exports = {
            "MESH_PLATFORM": "local",
            "MESHSRE_STATE_DIR": info["state_dir"],
            "MESH_URL": info["front_door"],
            "PROMETHEUS_URL": info["prometheus"],
            "ALERTMANAGER_URL": info["alertmanager"],
            "MESH_ADMIN_TOKEN": info["admin_token"],
            "MESHSRE_ALERTS_FILE": info["alerts_file"],
        }
        for key, value in exports.items():
            if value:
                click.echo(f"export {key}={shlex.quote(str(value))}")
    if not info["ready"]:
        sys.exit(1)
