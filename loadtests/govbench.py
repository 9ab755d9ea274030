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
from typing import Any

import click

from alerts.catalog import GOVERNANCE_OVERHEAD
from loadtests.governance import GovernanceRun, run_governance
from mesh.process import ADMIN_TOKEN, MeshProcess, NatsServer
from mesh.sidecar.process import SidecarProcess, ToolServer

__all__ = ["main", "table"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def table(rec: dict[str, Any]) -> str:
    o, p = rec["overhead"], rec["parameters"]
    met = {True: "met", False: "MISSED", None: "not measured"}[o["objective"]["met"]]
    lines = [
        f"governance overhead ({p['users']} users, {p['rate']:g} req/s offered,"
        f" {len(p['sidecars'])} sidecars, {p['duration']}):",
        f"  direct tool call       p50 {_ms(o['direct']['p50_ms'])}  p99"
        f" {_ms(o['direct']['p99_ms'])}  ({o['direct']['requests']} calls)",
        f"  through a sidecar      p50 {_ms(o['via_sidecar']['p50_ms'])}  p99"
        f" {_ms(o['via_sidecar']['p99_ms'])}  ({o['via_sidecar']['requests']} calls)",
        f"  sidecar overhead p99   {_ms(o['p99_overhead_ms'])}   goal <"
        f" {GOVERNANCE_OVERHEAD.max_p99_ms:g} ms: {met}",
        f"  ratio to a direct call (p99)  {o['p99_ratio']}",
    ]
    for row in rec["sidecars"]:
        r = row["revocations"]
        lines.append(f"  {row['url']}: inside the sidecar p99 {_ms(row['governance_p99_ms'])};"
                     f" revocation to enforcement p50 {r['p50_s']} s, p99 {r['p99_s']} s,"
                     f" max {r['max_s']} s ({r['samples']} revocations,"
                     f" {r['unenforced']} never enforced, via {', '.join(r['channels'])})")
    return "\n".join(lines)


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
