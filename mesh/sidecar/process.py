"""A sidecar and a tool upstream as real processes on free loopback ports, for the tests, the
benchmark and the local cluster (see ``mesh.process`` for the mesh and NATS)."""

from __future__ import annotations

import base64
import os
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mesh.process import MESHSRE, Service
from meshsre.identity import AgentKey

__all__ = ["SidecarProcess", "ToolServer", "key_file"]


def key_file(key: AgentKey, directory: Path | None = None) -> Path:
    """The agent's seed in a file only its owner can read, as the sidecar takes it."""
    seed = key.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    fd, name = tempfile.mkstemp(prefix="agent-", suffix=".key", dir=directory)
    with os.fdopen(fd, "w") as fh:  # mkstemp makes it 0600
        fh.write(base64.b64encode(seed).decode() + "\n")
    return Path(name)


class ToolServer(Service):
    name = "tool"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mesh.sidecar.tool",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]

    def start(self, wait_ready: bool = True, timeout: float = 15.0) -> ToolServer:
        super().start(wait_ready, timeout)
        return self

    def __enter__(self) -> ToolServer:
        return self.start()


class SidecarProcess(Service):
    """`meshsre sidecar` for one agent, registering it (standard policy unless told)."""

    name = "sidecar"

    def __init__(
        self,
        mesh_url: str,
        tools: dict[str, str],
        *,
        nats: str | None = None,
        key: AgentKey | None = None,
        policy: str = "standard",
        capabilities: tuple[str, ...] = (),
        instance: str = "",
        zone: str = "a",
        env: dict[str, str] | None = None,
        core: int | None = None,
    ) -> None:
        super().__init__(env=env, core=core)
        self.mesh_url, self.tools, self.nats = mesh_url, tools, nats
        self.key = key or AgentKey.generate()
        self.policy, self.capabilities, self.zone = policy, capabilities, zone
        self.instance = instance or f"sidecar-{self.port}"
        self.key_path: Path | None = None

    @property
    def did(self) -> str:
        return self.key.did

    def command(self) -> list[str]:
        if self.key_path is None:
            self.key_path = key_file(self.key)
        cmd = [
            MESHSRE,
            "sidecar",
            "--mesh",
            self.mesh_url,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--key-file",
            str(self.key_path),
            "--zone",
            self.zone,
            "--instance",
            self.instance,
            "--register",
            self.instance,
            "--policy",
            self.policy,
        ]
        for name, url in self.tools.items():
            cmd += ["--tool", f"{name}={url}"]
        for capability in self.capabilities:
            cmd += ["--capability", capability]
        if self.nats:
            cmd += ["--nats", self.nats]
        return cmd

    def start(self, wait_ready: bool = True, timeout: float = 15.0) -> SidecarProcess:
        super().start(wait_ready, timeout)
        return self

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def stop(self) -> None:
        super().stop()
        if self.key_path is not None:
            self.key_path.unlink(missing_ok=True)
