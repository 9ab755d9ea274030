"""`make bench`'s governance part: what a sidecar adds to a tool call, at the bench's
concurrency, and how fast sidecars enforce revocations under that load.

It starts its own rig (NATS JetStream with a store of its own, one mesh process on SQLite,
the echo tool, two sidecars) and runs the governance job against it: Locust users alternate
the same call through a sidecar and directly, at a constant rate, while every sidecar's
credential is revoked every two seconds. The overhead is sidecar p99 minus direct p99 of
that one run; the ratio is sidecar p99 over direct p99.

    $ python -m loadtests.govbench [--users 16 --rate 200 --seconds 20]
"""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click

from loadtests.governance import GovernanceRun, run_governance, table
from mesh.process import ADMIN_TOKEN, MeshProcess, NatsServer
from mesh.sidecar.process import SidecarProcess, ToolServer

__all__ = ["main"]


@click.command()
@click.option("--users", default=16, show_default=True, type=click.IntRange(1, 500),
              help="Concurrent Locust users (the bench's concurrency).")
@click.option("--rate", default=200.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Tool calls/s, both paths.")
@click.option("--seconds", default=20, show_default=True, type=click.IntRange(5, 3600))
@click.option("--sidecars", "count", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--out", "out_dir", default="reports/out/bench", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def main(users: int, rate: float, seconds: int, count: int, out_dir: Path) -> None:
    """Measure the governance sidecar's overhead and revocation enforcement."""
    click.echo(f"[governance] NATS, a mesh, a tool and {count} sidecars ...")
    with tempfile.TemporaryDirectory(prefix="meshsre-govbench-") as tmp, ExitStack() as stack:
        nats = stack.enter_context(NatsServer(Path(tmp) / "jetstream"))
        mesh = stack.enter_context(MeshProcess(
            f"sqlite:///{tmp}/mesh.db", nats=nats.url,
            env={"MESH_RATE_LIMIT_PER_MINUTE": "100000000"}))  # the decision, not the limiter
        tool = stack.enter_context(ToolServer())
        sidecars = [stack.enter_context(SidecarProcess(
            mesh.url, {"echo": tool.url}, nats=nats.url, instance=f"bench-{i}"))
            for i in range(count)]
        click.echo(f"[governance] {seconds} s of tool calls, revoking every 2 s ...")
        rec = run_governance(GovernanceRun(
            sidecars=tuple(s.url for s in sidecars), upstream=tool.url,
            replicas=(mesh.url,), admin_token=ADMIN_TOKEN, users=users, rate=rate,
            duration=f"{seconds}s", run_id="governance", out_dir=out_dir),
            echo=lambda _: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "governance.json"
    path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    click.echo(table(rec))
    click.echo(f"written: {path}")


if __name__ == "__main__":
    main()
