"""The cluster's state on disk: where everything lives under `.meshsre/` and what is running.

The state file is written after every process start, so a `down` after an `up` that died
half-way still finds every pid it has to stop. Writes are atomic (write, then rename) and
serialised by a lock file, because chaos activities and the CLI may touch it concurrently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mesh.keys import write_key_file

__all__ = ["STATE_VERSION", "ClusterState", "Component", "StateDir", "default_state_dir"]

STATE_VERSION = 1


def default_state_dir() -> Path:
    return Path(os.environ.get("MESHSRE_STATE_DIR", ".meshsre")).resolve()


@dataclass
class Component:
    name: str
    kind: str  # mesh, haproxy, prometheus, alertmanager, webhook, nats, tool, sidecar
    host: str
    port: int
    argv: list[str]
    ready_path: str
    log: str
    zone: str | None = None
    replica: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    aux_port: int | None = None  # HAProxy's stats and metrics frontend
    pid: int | None = None
    start_ticks: int | None = None  # /proc start time: tells our process from a reused pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def ready_url(self) -> str:
        # NATS answers health checks on its monitoring port, not on its client port.
        port = self.aux_port if self.kind == "nats" else self.port
        return f"http://{self.host}:{port}{self.ready_path}"


@dataclass
class ClusterState:
    spec: dict[str, object]
    storage_url: str
    redis_url: str | None
    components: list[Component]
    data_tier: dict[str, object] | None = None  # the patroni tier's frontend, mode, scope
    created_at: float = field(default_factory=time.time)
    # The zones' own network (mesh.local.zonenet.ZoneNetwork.to_dict()); None: loopback.
    network: dict[str, Any] | None = None
    version: int = STATE_VERSION

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def replicas(self, zone: str | None = None) -> list[Component]:
        return [c for c in self.components if c.kind == "mesh" and (zone is None or c.zone == zone)]

    def data_members(self, kind: str = "patroni") -> list[Component]:
        return [c for c in self.components if c.kind == kind]

    def sidecars(self) -> list[Component]:
        return [c for c in self.components if c.kind == "sidecar"]

    def zones(self) -> list[str]:
        return list(dict.fromkeys(c.zone for c in self.replicas() if c.zone))

    @property
    def layout(self) -> str:
        return "zones" if self.network else "loopback"

    def url_of(self, name: str) -> str | None:
        found = self.component(name)
        return found.url if found else None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClusterState:
        raw = dict(data)
        comps = raw.pop("components")
        assert isinstance(comps, list)
        return cls(components=[Component(**c) for c in comps], **raw)  # type: ignore[arg-type]


class StateDir:
    """Paths under the state directory, plus loading and saving the state file."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else default_state_dir()

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def token_file(self) -> Path:
        return self.root / "admin-token"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def alerts_file(self) -> Path:
        return self.root / "alerts.jsonl"

    def create(self) -> None:
        for d in (self.root, self.config, self.logs, self.data):
            d.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def load(self) -> ClusterState | None:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        return ClusterState.from_dict(data)

    def save(self, state: ClusterState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)

    def forget(self) -> None:
        self.state_file.unlink(missing_ok=True)

    def key_file(self, name: str) -> Path:
        """The cluster's private key ``name`` (issuer, log), created once with mode 0600: the
        replicas read it (MESH_<NAME>_KEY_FILE), the store never holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return write_key_file(self.root / f"{name}.key")

    def admin_token(self) -> str:
        """The cluster's admin token, created once with mode 0600 (it grants every admin call)."""
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            pass
        self.root.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it a moment ago
            return self.token_file.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token
