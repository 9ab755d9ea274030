"""What a local cluster is made of: zones, replicas, addresses, ports and the binaries to run.

``plan()`` turns a ``ClusterSpec`` into the full list of components with their command lines,
so starting, restarting and stopping never have to recompute anything: the state file holds
the plan. Replicas get their own loopback address (127.0.0.<10*zone+replica+1>) so that a
zone looks like a separate host to HAProxy and Prometheus.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mesh.local import datatier, governance, zonenet
from mesh.local.errors import ClusterError, MissingBinaryError
from mesh.local.state import ClusterState, Component, StateDir

__all__ = ["OPTIONAL_COMPONENTS", "ClusterSpec", "find_binary", "plan", "replica_address"]

# Components that `--without` may leave out, with the binary and the Debian package they need.
OPTIONAL_COMPONENTS: dict[str, tuple[str, str]] = {
    "haproxy": ("haproxy", "haproxy"),
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
    "nats": ("nats-server", "nats-server"),
}
# Offsets from the base port; replicas all share one port on their distinct addresses.
_OFFSETS = {"haproxy": 0, "haproxy-stats": 1, "prometheus": 2, "alertmanager": 3, "webhook": 4}
_REPLICA_OFFSET = 10
_ZONE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
# haproxy lives in /usr/sbin, which is not on every user's PATH.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class ClusterSpec:
    zones: tuple[str, ...] = ("a", "b", "c")
    replicas_per_zone: int = 2
    storage: str = "sqlite"
    redis: str | None = None
    without: frozenset[str] = field(default_factory=frozenset)
    base_port: int = 18080  # 0: every port is picked free by the kernel (tests)
    sidecars_per_zone: int = 0  # governance sidecars (and a tool behind them); needs no NATS
    network: str = "auto"  # zones (a network namespace each, root only), loopback, or auto
    replication: str = "sync"  # of the patroni data tier: sync or async

    def __post_init__(self) -> None:
        if not self.zones or len(set(self.zones)) != len(self.zones):
            raise ClusterError("zones must be a non-empty list of distinct names")
        if len(self.zones) > 24 or not all(_ZONE_NAME.match(z) for z in self.zones):
            raise ClusterError("zones: at most 24, each lowercase letters, digits and dashes")
        if not 1 <= self.replicas_per_zone <= 9:
            raise ClusterError("replicas per zone must be between 1 and 9")
        unknown = set(self.without) - set(OPTIONAL_COMPONENTS)
        if unknown:
            known = ", ".join(sorted(OPTIONAL_COMPONENTS))
            raise ClusterError(f"cannot run without {', '.join(sorted(unknown))} (known: {known})")
        if not self.storage.startswith(("sqlite", "postgresql://", "postgres://", "patroni")):
            raise ClusterError(
                "storage must be sqlite, sqlite:///PATH, postgresql://... or patroni"
            )
        if self.storage == "patroni" and "haproxy" in self.without:
            raise ClusterError("patroni storage is reached through HAProxy: drop --without haproxy")
        if self.replication not in datatier.REPLICATION_MODES:
            raise ClusterError("replication must be sync or async")
        if not 0 <= self.base_port <= 65535 - _REPLICA_OFFSET:
            raise ClusterError("base port out of range")
        if not 0 <= self.sidecars_per_zone <= 3:
            raise ClusterError("sidecars per zone must be between 0 and 3")
        if self.network not in ("auto", *zonenet.LAYOUTS):
            raise ClusterError(f"network must be auto, {' or '.join(zonenet.LAYOUTS)}")

    def binaries(self) -> dict[str, str]:
        """The path of each optional component's binary; raises MissingBinaryError."""
        return {c: find_binary(c) for c in OPTIONAL_COMPONENTS if c not in self.without}

    def layout(self) -> str:
        """The network layout to run: auto means zones when this process can build them."""
        if self.network != "auto":
            return self.network
        return "loopback" if zonenet.unavailable() else "zones"

    def to_dict(self) -> dict[str, object]:
        return {
            "zones": list(self.zones),
            "replicas_per_zone": self.replicas_per_zone,
            "storage": self.storage,
            "redis": self.redis,
            "without": sorted(self.without),
            "base_port": self.base_port,
            "sidecars_per_zone": self.sidecars_per_zone,
            "network": self.network,
            "replication": self.replication,
        }


def replica_address(zone_index: int, replica_index: int) -> str:
    return f"127.0.0.{10 * (zone_index + 1) + replica_index + 1}"


def find_binary(component: str) -> str:
    binary, package = OPTIONAL_COMPONENTS[component]
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    found = shutil.which(binary, path=search)
    if found is None:
        raise MissingBinaryError(binary, package, component)
    return found


def _meshsre_command() -> list[str]:
    # The console script beside this interpreter names the process well in `ps`; without an
    # installed script (a bare checkout on PYTHONPATH) the module entry point does the same job.
    script = Path(sys.executable).parent / "meshsre"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from meshsre.cli import main; main()"]


class _Ports:
    """Free ports: the preferred one when it can be bound, else one the kernel picks."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.taken: set[tuple[str, int]] = set()

    def take(self, host: str, offset: int) -> int:
        preferred = self.base + offset if self.base else 0
        for candidate in (preferred, 0, 0, 0):
            port = _bindable(host, candidate)
            if port and (host, port) not in self.taken:
                self.taken.add((host, port))
                return port
        raise ClusterError(f"no free port on {host}")


def _bindable(host: str, port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT counts as free, a listener not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return 0
        return int(sock.getsockname()[1])


def storage_url(spec: ClusterSpec, paths: StateDir) -> str:
    if spec.storage == "sqlite":
        return f"sqlite:///{paths.data / 'mesh.db'}"
    if spec.storage.startswith("sqlite:///"):
        return f"sqlite:///{Path(spec.storage.removeprefix('sqlite:///')).resolve()}"
    return spec.storage


def plan(
    spec: ClusterSpec, paths: StateDir, net: zonenet.ZoneNetwork | None = None
) -> ClusterState:
    """Every component of the cluster with its address and command line (nothing started).
    With ``net``, each replica runs inside its zone's namespace, on its address there."""
    binaries = spec.binaries()
    ports = _Ports(spec.base_port)
    url = storage_url(spec, paths)
    components: list[Component] = []
    tier: dict[str, object] | None = None
    members: list[Component] = []
    if spec.storage == "patroni":  # each zone's members in their zone (see mesh.local.datatier)
        links = [net.link(z) for z in spec.zones] if net else []
        members, tier = datatier.plan(
            spec.zones,
            [link.data_address for link in links]
            or [replica_address(zi, 0) for zi in range(len(spec.zones))],
            spec.replication,
            paths,
            ports.take,
            inside={link.zone: zonenet.exec_prefix(link) for link in links},
            trusted=(net.region,) if net else (),
        )
        url = datatier.frontend_url(str(tier["frontend"]))
    nats = (
        governance.event_stream(binaries["nats"], paths, ports.take) if "nats" in binaries else None
    )
    for zi, zone in enumerate(spec.zones):
        for ri in range(spec.replicas_per_zone):
            replica = f"{zone}-{ri}"
            link = net.link(zone) if net else None
            if link is None:
                host, inside = replica_address(zi, ri), []
                port = ports.take(host, _REPLICA_OFFSET)
            else:
                host, inside = link.address(ri), zonenet.exec_prefix(link)
                port = zonenet.REPLICA_PORT  # a fresh namespace: nothing else binds there

            def reach(url: str, link: zonenet.ZoneLink | None = link) -> str:
                return zonenet.from_zone(url, link) if link else url

            argv = [
                *inside,
                *_meshsre_command(),
                "serve",
                "--host",
                host,
                "--port",
                str(port),
                "--storage",
                reach(url),
                "--zone",
                zone,
                "--replica",
                replica,
            ]
            if spec.redis:
                argv += ["--redis", reach(spec.redis)]
            if nats is not None:
                argv += ["--nats", reach(governance.nats_url(nats))]
            components.append(
                Component(
                    name=f"mesh-{replica}",
                    kind="mesh",
                    host=host,
                    port=port,
                    argv=argv,
                    ready_path="/health/ready",
                    log=str(paths.logs / f"mesh-{replica}.log"),
                    zone=zone,
                    replica=replica,
                    env={
                        "MESH_ZONE": zone,
                        "MESH_REPLICA": replica,
                        # One JSON line per request costs CPU the replicas need under load on a
                        # small machine; opt in with MESH_ACCESS_LOG=true.
                        "MESH_ACCESS_LOG": os.environ.get("MESH_ACCESS_LOG", "false"),
                    },
                )
            )
    loopback = "127.0.0.1"
    if "alertmanager" in binaries:
        port = ports.take(loopback, _OFFSETS["webhook"])
        components.append(
            Component(
                name="webhook",
                kind="webhook",
                host=loopback,
                port=port,
                ready_path="/health",
                argv=[
                    sys.executable,
                    "-m",
                    "mesh.local.webhook",
                    "--host",
                    loopback,
                    "--port",
                    str(port),
                    "--out",
                    str(paths.alerts_file),
                ],
                log=str(paths.logs / "webhook.log"),
            )
        )
        port = ports.take(loopback, _OFFSETS["alertmanager"])
        components.append(
            Component(
                name="alertmanager",
                kind="alertmanager",
                host=loopback,
                port=port,
                ready_path="/-/ready",
                log=str(paths.logs / "alertmanager.log"),
                argv=[
                    binaries["alertmanager"],
                    f"--config.file={paths.config / 'alertmanager.yml'}",
                    f"--storage.path={paths.data / 'alertmanager'}",
                    f"--web.listen-address={loopback}:{port}",
                    "--cluster.listen-address=",
                ],  # empty: no gossip, nothing outside loopback
            )
        )
    if "prometheus" in binaries:
        port = ports.take(loopback, _OFFSETS["prometheus"])
        components.append(
            Component(
                name="prometheus",
                kind="prometheus",
                host=loopback,
                port=port,
                ready_path="/-/ready",
                log=str(paths.logs / "prometheus.log"),
                argv=[
                    binaries["prometheus"],
                    f"--config.file={paths.config / 'prometheus.yml'}",
                    f"--storage.tsdb.path={paths.data / 'prometheus'}",
                    f"--web.listen-address={loopback}:{port}",
                    "--web.enable-lifecycle",
                    # The default 1m delays the first notification by a minute (LOCAL-STACK.md):
                    # time to detect would measure the tooling, not the mesh.
                    "--rules.alert.resend-delay=2s",
                ],
            )
        )
    if "haproxy" in binaries:
        port = ports.take(loopback, _OFFSETS["haproxy"])
        stats = ports.take(loopback, _OFFSETS["haproxy-stats"])
        components.append(
            Component(
                name="haproxy",
                kind="haproxy",
                host=loopback,
                port=port,
                ready_path="/health/ready",
                log=str(paths.logs / "haproxy.log"),
                argv=[binaries["haproxy"], "-db", "-f", str(paths.config / "haproxy.cfg")],
                aux_port=stats,
            )
        )
    if nats is not None:
        components.append(nats)
    front_door = components[-1] if components[-1].kind == "haproxy" else components[0]
    components += governance.sidecars(
        spec.zones,
        spec.sidecars_per_zone,
        front_door.url,
        nats,
        _meshsre_command(),
        paths,
        ports.take,
    )
    components += members
    return ClusterState(
        spec=spec.to_dict(),
        storage_url=url,
        redis_url=spec.redis,
        components=components,
        network=net.to_dict() if net else None,
        data_tier=tier,
    )
