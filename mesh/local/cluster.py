"""`meshsre up`, `down` and `status` for the local multi-zone cluster.

`up` starts the fast, independent parts (webhook, Alertmanager, Prometheus) together with the
first replica, waits for that replica (it creates the store's schema and the issuer key, which
several replicas racing on a fresh store would each try to do), then starts the other replicas
and HAProxy and waits until everything answers its readiness check. Every start is recorded in
the state file at once, and any failure stops what was started.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from mesh.local import datatier, procs, zonenet
from mesh.local.errors import ClusterError, NotReadyError, NotUpError
from mesh.local.render import RULES_DIR, render_all
from mesh.local.spec import ClusterSpec, plan
from mesh.local.state import ClusterState, Component, StateDir

__all__ = ["Cluster", "ComponentStatus", "UpResult", "http_client", "log_tail", "probe", "proc_of"]

Progress = Callable[[str], None]
# Stop the front door first so that clients see it go, then the replicas under it.
# Sidecars go first: they are the agents' way in.
_STOP_ORDER = {
    "sidecar": 0,
    "tool": 1,
    "haproxy": 2,
    "mesh": 3,
    "nats": 4,
    "prometheus": 5,
    "alertmanager": 6,
    "webhook": 7,
    "patroni": 8,  # after every client of the data tier, and before its etcd
    "etcd": 9,
}


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    kind: str
    zone: str | None
    replica: str | None
    address: str
    url: str
    pid: int | None
    alive: bool
    ready: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class UpResult:
    outcome: str  # started, already up, reconciled
    seconds: float
    state: ClusterState


def proc_of(c: Component) -> procs.Proc | None:
    if c.pid is None or c.start_ticks is None:
        return None
    return procs.Proc(c.pid, c.start_ticks)


def log_tail(c: Component, lines: int = 5) -> str:
    try:
        text = Path(c.log).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:])


def probe(client: httpx.Client, c: Component) -> bool:
    try:
        return client.get(c.ready_url).status_code == 200
    except httpx.HTTPError:
        return False


def http_client(timeout: float = 0.5) -> httpx.Client:
    # trust_env=False: an HTTP(S)_PROXY in the environment must never see loopback probes.
    return httpx.Client(timeout=timeout, trust_env=False)


class Cluster:
    def __init__(self, paths: StateDir | None = None, rules_dir: Path = RULES_DIR) -> None:
        self.paths = paths or StateDir()
        self.rules_dir = rules_dir

    def load(self) -> ClusterState:
        state = self.paths.load()
        if state is None:
            raise NotUpError(f"no local cluster in {self.paths.root} (run `meshsre up`)")
        return state

    def up(
        self, spec: ClusterSpec, timeout: float = 60.0, progress: Progress | None = None
    ) -> UpResult:
        say = progress or (lambda _msg: None)
        began = time.monotonic()
        with self.paths.locked():
            existing = self.paths.load()
            if existing is not None:
                dead = [c for c in existing.components if not procs.alive(proc_of(c))]
                if len(dead) < len(existing.components):
                    outcome = "already up"
                    if dead:
                        say(f"restarting {', '.join(c.name for c in dead)}")
                        self.start(existing, dead, timeout)
                        outcome = "reconciled"
                    if self.reload_rules(existing):
                        say("prometheus reloaded its rule files")
                    return UpResult(outcome, time.monotonic() - began, existing)
                self._stop(existing)  # stale: nothing of it runs any more
            self.paths.create()
            # A new cluster's Alertmanager keeps no memory of the last one's notifications: a
            # page that fired then and never resolved would be held back for its repeat
            # interval (4 h), and a drill waiting for it would see nothing.
            shutil.rmtree(self.paths.data / "alertmanager", ignore_errors=True)
            try:
                net = None
                spec.binaries()  # a missing one fails before any namespace is made
                if spec.layout() == "zones":
                    if why := zonenet.unavailable():
                        raise ClusterError(f"--network zones: {why} (or use --network loopback)")
                    say("creating a network namespace per zone")
                    net = zonenet.create(self.paths.root, spec.zones, spec.replicas_per_zone)
                state = plan(spec, self.paths, net)
                render_all(state, self.paths, self.rules_dir)
                self.paths.save(state)
                early = self._start_data_tier(state, began + timeout, say)
                replicas = state.replicas()
                # Sidecars need the front door: they start with it, after the first replica.
                first = [
                    c
                    for c in state.components
                    if c.kind not in ("haproxy", "sidecar")
                    and (c.kind != "mesh" or c is replicas[0])
                    and c not in early
                ]
                say("starting " + ", ".join(c.name for c in first))
                self.start(state, first, timeout)
                rest = [c for c in state.components if c not in first and c not in early]
                say("starting " + ", ".join(c.name for c in rest))
                self.start(state, rest, timeout - (time.monotonic() - began))
                self.wait_ready(early, timeout - (time.monotonic() - began))
            except BaseException:
                loaded = self.paths.load()
                if loaded is not None:
                    self._stop(loaded)
                else:
                    self._stop_network()
                self.paths.forget()
                raise
        return UpResult("started", time.monotonic() - began, state)

    def _start_data_tier(
        self, state: ClusterState, deadline: float, say: Progress
    ) -> list[Component]:
        """The patroni tier, then the front door that leads to its primary, before any replica:
        the first replica creates the schema through that door. Returns what it started."""
        if state.data_tier is None:
            return []
        tier = [c for c in state.components if c.kind in datatier.KINDS]
        door = state.component("haproxy")
        assert door is not None  # ClusterSpec refuses patroni storage without HAProxy
        say("starting the data tier: " + ", ".join(c.name for c in tier))
        # The last zone's member bootstraps alone, so it is the primary: drills fail zone a
        # by default, a standby's zone; `--zone primary` and the data fault fail the primary.
        etcd = [c for c in tier if c.kind == "etcd"]
        members = [c for c in tier if c.kind == "patroni"]
        self.start(state, [*etcd, members[-1]], deadline - time.monotonic())
        self.start(state, members[:-1], deadline - time.monotonic())
        self.start(state, [door], deadline - time.monotonic(), wait=False)
        waited = datatier.wait_writable(
            str(state.data_tier["frontend"]), deadline - time.monotonic()
        )
        if state.data_tier["replication"] == "sync":
            waited += datatier.wait_synchronous(state.data_members(), deadline - time.monotonic())
        say(f"data tier writable through {state.data_tier['frontend']} ({waited:.1f}s)")
        return [*tier, door]

    def reload_rules(self, state: ClusterState) -> bool:
        """Ask Prometheus to reload, picking up rule files generated since it started."""
        prometheus = state.component("prometheus")
        if prometheus is None or not procs.alive(proc_of(prometheus)):
            return False
        with http_client(timeout=10) as client:
            try:
                return client.post(prometheus.url + "/-/reload").status_code == 200
            except httpx.HTTPError:
                return False

    def start(
        self, state: ClusterState, components: list[Component], timeout: float, wait: bool = True
    ) -> None:
        """Start the given components of ``state`` and wait until each answers ready."""
        token = self.paths.admin_token()
        tag = {procs.TAG_VAR: str(self.paths.root)}
        for c in components:
            env = {**c.env, **tag}
            if c.kind == "mesh":
                env["MESH_ADMIN_TOKEN"] = token
                env["MESH_ISSUER_KEY_FILE"] = str(self.paths.key_file("issuer"))
                env["MESH_LOG_KEY_FILE"] = str(self.paths.key_file("log"))
            proc = procs.spawn(c.argv, c.log, env)
            c.pid, c.start_ticks = proc.pid, proc.start_ticks
            self.paths.save(state)  # recorded before anything else can fail
        if wait:
            self.wait_ready(components, timeout)

    def wait_ready(self, components: list[Component], timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        pending = list(components)
        with http_client() as client:
            while pending:
                for c in list(pending):
                    if not procs.alive(proc_of(c)):
                        raise NotReadyError(f"{c.name} exited; {c.log}: {log_tail(c)}")
                    if probe(client, c):
                        pending.remove(c)
                if pending and time.monotonic() > deadline:
                    names = ", ".join(c.name for c in pending)
                    first = pending[0]
                    raise NotReadyError(
                        f"not ready after {timeout:.0f}s: {names}; "
                        f"{first.log}: {log_tail(first, 2)}"
                    )
                if pending:
                    time.sleep(0.05)

    def _stop(self, state: ClusterState, grace: float = 5.0) -> dict[str, str]:
        ordered = sorted(state.components, key=lambda c: _STOP_ORDER.get(c.kind, 9))
        recorded = {c.name: p for c in ordered if (p := proc_of(c)) is not None}
        outcome = procs.stop_all(list(recorded.values()), grace)
        result = {name: outcome[p.pid] for name, p in recorded.items()}
        return {**result, **self._stop_strays(grace), **self._stop_network()}

    def _stop_network(self) -> dict[str, str]:
        """Remove the zones' namespaces (and any fault cut in them): by the state dir's
        prefix, so that whatever an interrupted `up` created goes too."""
        removed = zonenet.destroy_prefix(zonenet.prefix_of(self.paths.root))
        return {f"netns {name}": "removed" for name in removed}

    def _stop_strays(self, grace: float) -> dict[str, str]:
        """Stop whatever still carries our tag (an `up` killed mid-start left it out of the
        state file, or it outlived its group's leader), until nothing does: `down` returns
        only when every process it started is gone."""
        tag, result = str(self.paths.root), {}
        deadline = time.monotonic() + grace + 10.0
        while strays := procs.find_tagged(tag):
            if time.monotonic() > deadline:
                pids = ", ".join(str(p.pid) for p in strays)
                raise ClusterError(f"still running after SIGKILL: pid {pids}; see `ps -p {pids}`")
            result.update({f"pid {pid}": how for pid, how in procs.stop_all(strays, grace).items()})
        return result

    def down(self, grace: float = 5.0) -> dict[str, str]:
        """Stop every process of the cluster; returns what happened to each."""
        with self.paths.locked():
            state = self.paths.load()
            if state is None:
                return {**self._stop_strays(grace), **self._stop_network()}
            result = self._stop(state, grace)
            self.paths.forget()
            return result

    def status(self, state: ClusterState | None = None) -> list[ComponentStatus]:
        state = state or self.load()
        rows = []
        with http_client() as client:
            for c in state.components:
                up = procs.alive(proc_of(c))
                rows.append(
                    ComponentStatus(
                        name=c.name,
                        kind=c.kind,
                        zone=c.zone,
                        replica=c.replica,
                        address=c.address,
                        url=c.url,
                        pid=c.pid if up else None,
                        alive=up,
                        ready=up and probe(client, c),
                    )
                )
        return rows

    def describe(self) -> dict[str, Any]:
        """Everything a script needs, as JSON-safe data (`meshsre status --json`)."""
        state = self.load()
        rows = self.status(state)
        haproxy = state.component("haproxy")
        return {
            "state_dir": str(self.paths.root),
            "ready": all(r.ready for r in rows),
            "front_door": state.url_of("haproxy"),
            "prometheus": state.url_of("prometheus"),
            "alertmanager": state.url_of("alertmanager"),
            "haproxy_stats": f"http://{haproxy.host}:{haproxy.aux_port}" if haproxy else None,
            "alerts_file": str(self.paths.alerts_file) if state.component("webhook") else None,
            "nats": f"nats://{nats.address}" if (nats := state.component("nats")) else None,
            "tool": state.url_of("tool"),
            "sidecars": [c.url for c in state.sidecars()],
            "admin_token": self.paths.admin_token(),
            "admin_token_file": str(self.paths.token_file),
            "storage": state.storage_url,
            "data_tier": state.data_tier,
            "postgres_door": state.storage_url if state.data_tier else None,
            "redis": state.redis_url,
            "zones": state.zones(),
            "network": state.layout,
            "zone_network": state.network,
            "components": [r.to_dict() for r in rows],
        }
