"""The `meshsre` command line: one entry point for the runtime and the SRE jobs."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshsre")
def main() -> None:
    """Observability and SRE validation suite for an agent mesh."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--storage",
    envvar="MESH_STORAGE_URL",
    default="sqlite:///mesh.db",
    show_default=True,
    help="sqlite:///PATH, postgresql://... or memory://",
)
@click.option("--redis", envvar="MESH_REDIS_URL", default=None, help="redis://... (optional)")
@click.option(
    "--nats", envvar="MESH_NATS_URL", default=None, help="nats://... event stream (optional)"
)
@click.option("--zone", envvar="MESH_ZONE", default="local", show_default=True)
@click.option("--replica", envvar="MESH_REPLICA", default="0", show_default=True)
def serve(
    host: str, port: int, storage: str, redis: str | None, nats: str | None, zone: str, replica: str
) -> None:
    """Run one mesh process in the foreground."""
    from mesh.server import run

    run(host=host, port=port, storage=storage, redis=redis, zone=zone, replica=replica, nats=nats)


# Subcommand groups of the other parts register here, one line each.
from mesh.local.cli import down, status, up  # noqa: E402

main.add_command(up)
main.add_command(down)
main.add_command(status)
from dashboards.cli import dashboards  # noqa: E402

main.add_command(dashboards)
from alerts.cli import slo  # noqa: E402

main.add_command(slo)
from alerts.backtest.cli import alerts  # noqa: E402

main.add_command(alerts)
from loadtests.cli import governance, loadtest  # noqa: E402

main.add_command(loadtest)
main.add_command(governance)
from chaos.cli import chaos  # noqa: E402

main.add_command(chaos)
from reports.cli import nightly, report  # noqa: E402

main.add_command(report)
main.add_command(nightly)
from mesh.sidecar.cli import sidecar, sidecar_injector  # noqa: E402

main.add_command(sidecar)
main.add_command(sidecar_injector)
from mesh.auditcli import audit  # noqa: E402

main.add_command(audit)
