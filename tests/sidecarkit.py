"""The governance rig of the sidecar tests: a NATS JetStream of their own, a real mesh that
publishes to it, a real tool upstream, and sidecars in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mesh.process import ADMIN_TOKEN, MeshProcess, NatsServer
from mesh.sidecar.process import SidecarProcess, ToolServer

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Rig:
    nats: NatsServer
    mesh: MeshProcess
    tool: ToolServer
    stack: ExitStack

    def sidecar(self, **kwargs: object) -> SidecarProcess:
        tools = {"echo": self.tool.url, "shell": self.tool.url}
        kwargs.setdefault("nats", self.nats.url)
        return self.stack.enter_context(SidecarProcess(self.mesh.url, tools, **kwargs))  # type: ignore[arg-type]


@contextmanager
def rig(tmp: Path, mesh_env: dict[str, str] | None = None) -> Iterator[Rig]:
    with ExitStack() as stack:
        nats = stack.enter_context(NatsServer(tmp / "jetstream"))
        mesh = stack.enter_context(MeshProcess(f"sqlite:///{tmp / 'mesh.db'}", nats=nats.url,
                                               env=mesh_env))
        tool = stack.enter_context(ToolServer())
        yield Rig(nats, mesh, tool, stack)


def sample(metrics: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def revoke(mesh: MeshProcess, jti: str) -> None:
    r = httpx.post(f"{mesh.url}/v1/credentials/{jti}/revoke", headers=ADMIN,
                   json={"reason": "key_compromise"}, timeout=5)
    assert r.status_code == 200, r.text
