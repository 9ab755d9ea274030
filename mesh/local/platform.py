"""The platform adapter for the local cluster: processes on loopback addresses or in a network
namespace per zone, HAProxy, and a SQLite file or a PostgreSQL database as the shared store.

A zone fails in one of the modes of ``mesh.faults``. ``power`` is SIGKILL to every replica of
the zone, as an AZ power interruption: no graceful shutdown, in-flight requests cut. The network
modes cut nft rules into the zone's namespace (``mesh.local.zonenet``), so they need the zones
layout. Either way HAProxy's health checks have to notice on their own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mesh import faults
from mesh.faults import FaultMode
from mesh.local import datatier, procs, store, zonenet
from mesh.local.cluster import Cluster, http_client, probe, proc_of
from mesh.local.errors import ClusterError
from mesh.local.render import front_door_timeouts
from mesh.local.state import ClusterState, Component, StateDir
from mesh.platform import Replica

__all__ = ["LocalPlatform"]


def _mode(mode: str) -> FaultMode:
    try:
        return faults.parse(mode)
    except faults.FaultModeError as exc:
        raise ClusterError(str(exc)) from exc


def _network(state: ClusterState, fault: FaultMode) -> zonenet.ZoneNetwork | None:
    """The zones' network a network fault acts on (None for power); refuses on loopback."""
    if not fault.network:
        return None
    if not state.network:
        raise ClusterError(
            f"fault mode {fault} needs zones with their own network: this cluster runs on"
            " loopback; restart it as root with `meshsre down && meshsre up --network zones`"
        )
    return zonenet.ZoneNetwork.from_dict(state.network)


class LocalPlatform:
    name = "local"

    def __init__(self, paths: StateDir | None = None) -> None:
        self.cluster = Cluster(paths)
        self.paths = self.cluster.paths

    def replicas(self) -> list[Replica]:
        state = self.cluster.load()
        with http_client() as client:
            return [
                Replica(
                    name=c.replica or c.name,
                    zone=c.zone or "",
                    url=c.url,
                    ready=procs.alive(proc_of(c)) and probe(client, c),
                )
                for c in state.replicas()
            ]

    def _zone(self, state: ClusterState, zone: str) -> None:
        if zone not in state.zones():
            raise ClusterError(f"unknown zone {zone!r}: the cluster has {', '.join(state.zones())}")

    def fail_zone(self, zone: str, mode: str = "power") -> dict[str, Any]:
        fault = _mode(mode)
        started = time.perf_counter()
        with self.paths.locked():
            state = self.cluster.load()
            self._zone(state, zone)
            net = _network(state, fault)
            at = time.time()
            killed: list[str] = []
            already: list[str] = []
            rules = None
            if fault.name == "power":
                for c in state.replicas(zone):
                    (killed if procs.kill(proc_of(c)) else already).append(c.name)
            elif net is not None:
                ports = sorted(
                    {c.port for c in state.replicas(zone)}
                    | {
                        p
                        for c in state.components
                        if c.kind in datatier.KINDS and c.zone == zone
                        for p in (c.port, c.aux_port)
                        if p
                    }
                )
                rules = zonenet.apply_fault(net, zone, fault, ports)
            elif experiment := faults.MODES[fault.name].experiment:
                raise ClusterError(
                    f"fault mode {fault} fails no zone: run `meshsre chaos"
                    f" az-failure --mode {fault}` (the {experiment} experiment)"
                )
            else:  # a mode registered in mesh.faults that this platform has no way to cause
                raise ClusterError(f"fault mode {fault} is not supported by the local platform")
        return {
            "platform": self.name,
            "zone": zone,
            "mode": str(fault),
            "network": state.layout,
            "killed": killed,
            "already_down": already,
            "rules": rules,
            # What bounds the time to recover: drills quote it with their figures.
            "front_door": front_door_timeouts() if state.component("haproxy") else None,
            "at": at,
            "duration_seconds": round(time.perf_counter() - started, 4),
        }

    def restore_zone(self, zone: str, timeout: float = 60.0) -> dict[str, Any]:
        """Undo whatever fault the zone has (network rules, killed replicas)."""
        started = time.perf_counter()
        with self.paths.locked():
            state = self.cluster.load()
            self._zone(state, zone)
            cleared = False
            if state.network:
                cleared = zonenet.clear_fault(zonenet.ZoneNetwork.from_dict(state.network), zone)
            down = [c for c in state.replicas(zone) if not procs.alive(proc_of(c))]
            self.cluster.start(state, down, timeout)
            self.cluster.wait_ready(state.replicas(zone), timeout)
        return {
            "platform": self.name,
            "zone": zone,
            "network_fault_cleared": cleared,
            "started": [c.name for c in down],
            "ready_at": time.time(),
            "duration_seconds": round(time.perf_counter() - started, 4),
        }

    def backup(self, dest: str | Path) -> dict[str, Any]:
        state = self.cluster.load()
        return {"platform": self.name, **store.backup(state.storage_url, Path(dest))}

    def _stop_replicas(self, state: ClusterState, hard: bool) -> list[str]:
        running = {
            c.name: p for c in state.replicas() if (p := proc_of(c)) is not None and procs.alive(p)
        }
        if hard:
            for proc in running.values():
                procs.kill(proc)
        else:
            procs.stop_all(list(running.values()))
        return sorted(running)

    def destroy_store(self) -> dict[str, Any]:
        with self.paths.locked():
            state = self.cluster.load()
            killed: list[str] = []
            if store.backend_of(state.storage_url) == "sqlite":
                # An open connection would keep writing to the unlinked file: kill them first.
                killed = self._stop_replicas(state, hard=True)
            result = store.destroy(state.storage_url)
        return {"platform": self.name, "killed": killed, **result}

    def restore(self, src: str | Path, timeout: float = 60.0) -> dict[str, Any]:
        with self.paths.locked():
            state = self.cluster.load()
            stopped: list[str] = []
            if store.backend_of(state.storage_url) == "sqlite":
                stopped = self._stop_replicas(state, hard=False)  # the file is replaced below
            result = store.restore(state.storage_url, Path(src))
            began = time.perf_counter()
            down = [c for c in state.replicas() if not procs.alive(proc_of(c))]
            self.cluster.start(state, down, timeout)
            self.cluster.wait_ready(state.replicas(), timeout)
            ready_s = time.perf_counter() - began
            reset = self._reset_witnesses(state)
        return {
            "platform": self.name,
            **result,
            "stopped": stopped,
            "started": [c.name for c in down],
            "witness_reset": reset,
            "replicas_ready_seconds": round(ready_s, 4),
            "ready_at": time.time(),
        }

    def _reset_witnesses(self, state: ClusterState) -> list[str]:
        """The restored log is older than what the replicas witnessed: a deliberate
        truncation, which each replica's witness would refuse for good. Each forgets it."""
        headers = {"Authorization": f"Bearer {self.paths.admin_token()}"}
        done = []
        with http_client(timeout=10) as client:
            for c in state.replicas():
                r = client.post(c.url + "/v1/audit/witness/reset", headers=headers)
                if r.status_code != 200:
                    raise ClusterError(f"{c.name}: witness reset answered {r.status_code}")
                done.append(c.name)
        return done

    def sidecars(self) -> list[str]:
        return [c.url for c in self.cluster.load().sidecars()]

    def _nats(self, state: ClusterState) -> Component:
        nats = state.component("nats")
        if nats is None:
            raise ClusterError(
                "the cluster runs no event stream (nats-server is missing, or"
                " it was started --without nats)"
            )
        return nats

    def stop_event_stream(self) -> dict[str, Any]:
        with self.paths.locked():
            nats = self._nats(self.cluster.load())
            at = time.time()
            killed = procs.kill(proc_of(nats))
        return {
            "platform": self.name,
            "stopped": nats.name if killed else None,
            "already_down": not killed,
            "at": at,
        }

    def restore_event_stream(self, timeout: float = 60.0) -> dict[str, Any]:
        started = time.perf_counter()
        with self.paths.locked():
            state = self.cluster.load()
            nats = self._nats(state)
            down = not procs.alive(proc_of(nats))
            if down:
                self.cluster.start(state, [nats], timeout)
            self.cluster.wait_ready([nats], timeout)
        return {
            "platform": self.name,
            "started": nats.name if down else None,
            "ready_at": time.time(),
            "duration_seconds": round(time.perf_counter() - started, 4),
        }

    def _data_members(self, state: ClusterState) -> list[Component]:
        members = state.data_members()
        if not members:
            raise ClusterError(
                "no data tier: start the cluster with `meshsre up --storage patroni`"
            )
        return members

    def fail_primary(self) -> dict[str, Any]:
        """The PostgreSQL primary fails, wherever it is: its Patroni and its PostgreSQL are
        killed at once (SIGKILL), so its leader key in etcd has to expire."""
        started = time.perf_counter()
        with self.paths.locked():
            state = self.cluster.load()
            members = self._data_members(state)
            leader = datatier.primary(members)
            if leader is None:
                raise ClusterError("no member of the data tier is the primary: nothing to fail")
            at = time.time()
            killed = [leader.name] if procs.kill(proc_of(leader)) else []
            if datatier.kill_postgres(self.paths, leader, str(self.paths.root)):
                killed.append(f"{leader.name} postgres")
        return {
            "platform": self.name,
            "primary": leader.name,
            "zone": leader.zone,
            "killed": killed,
            "at": at,
            "duration_seconds": round(time.perf_counter() - started, 4),
        }

    def restore_data_tier(self, timeout: float = 90.0) -> dict[str, Any]:
        """Start every data-tier member that is down (a failed primary rejoins as a standby,
        rewound by Patroni) and wait until each runs; idempotent."""
        started = time.perf_counter()
        with self.paths.locked():
            state = self.cluster.load()
            members = [c for c in state.components if c.kind in datatier.KINDS]
            if not members:
                self._data_members(state)
            down = [c for c in members if not procs.alive(proc_of(c))]
            self.cluster.start(state, down, timeout)
        return {
            "platform": self.name,
            "started": [c.name for c in down],
            "ready_at": time.time(),
            "duration_seconds": round(time.perf_counter() - started, 4),
        }
