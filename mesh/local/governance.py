"""The governance parts of a local cluster: the event stream (a NATS JetStream of its own, its
store under the state directory), a tool upstream, and governance sidecars in front of it,
one agent each, talking to the mesh through the front door as agents' sidecars would.

NATS runs whenever ``nats-server`` is installed (``--without nats`` leaves it out); sidecars
only when asked (``--sidecars-per-zone N``). Without NATS the replicas publish nothing and the
sidecars poll.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mesh.local.state import Component, StateDir

__all__ = ["agent_key_file", "event_stream", "nats_url", "sidecars"]

Take = Callable[[str, int], int]  # (host, offset) -> a free port
LOOPBACK = "127.0.0.1"
_NATS_OFFSET, _NATS_MONITOR_OFFSET, _TOOL_OFFSET, _SIDECAR_OFFSET = 5, 6, 7, 40


def nats_url(component: Component) -> str:
    return f"nats://{component.host}:{component.port}"


def event_stream(binary: str, paths: StateDir, take: Take) -> Component:
    port, monitor = take(LOOPBACK, _NATS_OFFSET), take(LOOPBACK, _NATS_MONITOR_OFFSET)
    return Component(
        name="nats",
        kind="nats",
        host=LOOPBACK,
        port=port,
        aux_port=monitor,
        ready_path="/healthz?js-enabled-only=true",
        log=str(paths.logs / "nats.log"),
        argv=[
            binary,
            "-js",
            "-a",
            LOOPBACK,
            "-p",
            str(port),
            "-m",
            str(monitor),
            "-sd",
            str(paths.data / "jetstream"),
            "-n",
            "meshsre-local",
        ],
    )


def agent_key_file(paths: StateDir, name: str) -> Path:
    """The agent's Ed25519 seed, made once, readable by its owner only."""
    path = paths.root / "keys" / f"{name}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


def sidecars(
    zones: tuple[str, ...],
    per_zone: int,
    mesh_url: str,
    nats: Component | None,
    meshsre: list[str],
    paths: StateDir,
    take: Take,
) -> list[Component]:
    """The tool and ``per_zone`` sidecars in each zone (none when ``per_zone`` is 0)."""
    if per_zone <= 0:
        return []
    port = take(LOOPBACK, _TOOL_OFFSET)
    tool = Component(
        name="tool",
        kind="tool",
        host=LOOPBACK,
        port=port,
        ready_path="/health/ready",
        log=str(paths.logs / "tool.log"),
        argv=[sys.executable, "-m", "mesh.sidecar.tool", "--host", LOOPBACK, "--port", str(port)],
    )
    out = [tool]
    for zi, zone in enumerate(zones):
        for i in range(per_zone):
            name = f"sidecar-{zone}-{i}"
            port = take(LOOPBACK, _SIDECAR_OFFSET + zi * 10 + i)
            argv = [
                *meshsre,
                "sidecar",
                "--mesh",
                mesh_url,
                "--host",
                LOOPBACK,
                "--port",
                str(port),
                "--tool",
                f"echo={tool.url}",
                "--zone",
                zone,
                "--instance",
                name,
                "--key-file",
                str(agent_key_file(paths, name)),
                "--register",
                name,
                "--sponsor",
                "sre@example.com",
                "--policy",
                "standard",
            ]
            if nats is not None:
                argv += ["--nats", nats_url(nats)]
            out.append(
                Component(
                    name=name,
                    kind="sidecar",
                    host=LOOPBACK,
                    port=port,
                    argv=argv,
                    ready_path="/health/ready",
                    log=str(paths.logs / f"{name}.log"),
                    zone=zone,
                    replica=f"{zone}-{i}",
                )
            )
    return out
