"""The platform adapter on Kubernetes, with the official client.

A zone failure is what an AZ power interruption does to a cluster: the zone's nodes stop taking
pods and the mesh pods on them die without a graceful stop. ``fail_zone`` cordons every node
labelled ``topology.kubernetes.io/zone=Z`` and deletes the mesh pods on them with a grace
period of 0; the Deployment replaces them in the zones that are left. Nodes are annotated when
we cordon them, so ``restore_zone`` uncordons only those and never a node an operator cordoned
for maintenance. Rescheduled pods stay where they landed (only a descheduler moves them back),
so ``restore_zone`` waits for the Deployment to be fully ready, not for pods in the zone.

The store drills run as Jobs next to the mesh (``mesh.k8s.jobs``): pg_dump, pg_restore, and
the drop that plays the disaster, which a namespace must opt in to with the label
``meshsre.dev/drills=allowed``.

Settings come from the environment (defaults match ``mesh/deploy``): MESH_K8S_NAMESPACE,
MESH_K8S_SELECTOR, MESH_K8S_DEPLOYMENT, MESH_K8S_BACKUP_PVC, MESH_K8S_STORE_SECRET,
MESH_K8S_TOOLS_IMAGE. Not run against a live cluster here: tested on API objects in the
API server's wire format, served by a hand-written fake at the HTTP edge.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh import faults
from mesh.k8s import jobs, netchaos
from mesh.k8s.netchaos import ZONE_LABEL
from mesh.platform import PlatformError, Replica

__all__ = ["CORDONED_BY", "ZONE_LABEL", "KubernetesPlatform", "Settings"]
CORDONED_BY = "meshsre.dev/cordoned-for-zone-failure"
_MERGE = "application/merge-patch+json"  # JSON merge patch: null deletes a key


@dataclass(frozen=True)
class Settings:
    namespace: str = "agentmesh"
    selector: str = "app.kubernetes.io/name=agentmesh,app.kubernetes.io/component=server"
    deployment: str = "agentmesh"
    backup_claim: str = "agentmesh-backups"
    store_secret: str = "agentmesh-secrets"
    tools_image: str = "postgres:16-alpine"
    port: int = 8080
    # Governance: pods the webhook injected a sidecar into, and the event stream.
    sidecar_selector: str = "mesh.agentmesh.ai/governed=true"
    sidecar_port: int = 15001
    nats_statefulset: str = "nats"
    data_tier: tuple[str, ...] = ()  # addresses a partition cuts the zone from

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        base = cls()
        return cls(
            namespace=env.get("MESH_K8S_NAMESPACE", base.namespace),
            selector=env.get("MESH_K8S_SELECTOR", base.selector),
            deployment=env.get("MESH_K8S_DEPLOYMENT", base.deployment),
            backup_claim=env.get("MESH_K8S_BACKUP_PVC", base.backup_claim),
            store_secret=env.get("MESH_K8S_STORE_SECRET", base.store_secret),
            tools_image=env.get("MESH_K8S_TOOLS_IMAGE", base.tools_image),
            sidecar_selector=env.get("MESH_K8S_SIDECAR_SELECTOR", base.sidecar_selector),
            nats_statefulset=env.get("MESH_K8S_NATS_STATEFULSET", base.nats_statefulset),
            data_tier=tuple(a for a in env.get("MESH_K8S_DATA_TIER", "").split(",") if a),
        )


def _client_from_config() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            # KUBECONFIG as it is now: the client reads it once, when first imported.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise PlatformError(f"kubernetes: no cluster to talk to ({exc})") from exc
    return client.ApiClient()


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


REPLICAS_ANNOTATION = "meshsre.dev/replicas-before-drill"


class KubernetesPlatform:
    name = "kubernetes"

    def __init__(self, api_client: Any = None, settings: Settings | None = None) -> None:
        from kubernetes import client

        self.settings = settings or Settings.from_env()
        self.api = api_client if api_client is not None else _client_from_config()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def _nodes(self, zone: str | None = None) -> list[Any]:
        selector = f"{ZONE_LABEL}={zone}" if zone else None
        return list(self.core.list_node(label_selector=selector).items)

    def _mesh_pods(self, node: str | None = None) -> list[Any]:
        s = self.settings
        field = f"spec.nodeName={node}" if node else None
        pods = self.core.list_namespaced_pod(
            s.namespace, label_selector=s.selector, field_selector=field
        )
        return list(pods.items)

    def replicas(self) -> list[Replica]:
        zones = {
            n.metadata.name: (n.metadata.labels or {}).get(ZONE_LABEL, "") for n in self._nodes()
        }
        out = []
        for pod in self._mesh_pods():
            ip = pod.status.pod_ip if pod.status else None
            out.append(
                Replica(
                    name=pod.metadata.name,
                    zone=zones.get(pod.spec.node_name or "", ""),
                    url=f"http://{ip}:{self.settings.port}" if ip else "",
                    # The kubelet's readiness probe is GET /health/ready: its verdict is ours.
                    ready=_ready(pod),
                )
            )
        return sorted(out, key=lambda r: (r.zone, r.name))

    def fail_zone(self, zone: str, mode: str = "power") -> dict[str, Any]:
        try:
            fault = faults.parse(mode)
        except faults.FaultModeError as exc:
            raise PlatformError(f"kubernetes: {exc}") from exc
        started = time.perf_counter()
        nodes = self._nodes(zone)
        if not nodes:
            raise PlatformError(f"kubernetes: no node is labelled {ZONE_LABEL}={zone}")
        if fault.network:
            return self._network_fault(zone, fault, started)
        if fault.name != "power":
            raise PlatformError(f"kubernetes: fault mode {fault} is not supported here")
        at = time.time()
        cordoned, already, killed = [], [], []
        for node in nodes:
            name = node.metadata.name
            if node.spec is not None and node.spec.unschedulable:
                already.append(name)  # someone else's cordon: leave it to them
            else:
                body = {
                    "spec": {"unschedulable": True},
                    "metadata": {"annotations": {CORDONED_BY: zone}},
                }
                self.core.patch_node(name, body, _content_type=_MERGE)
                cordoned.append(name)
        for node in nodes:
            for pod in self._mesh_pods(node.metadata.name):
                # Grace period 0: a power loss gives no SIGTERM and no preStop.
                self.core.delete_namespaced_pod(
                    pod.metadata.name, self.settings.namespace, grace_period_seconds=0
                )
                killed.append(pod.metadata.name)
        return {
            "platform": self.name,
            "zone": zone,
            "mode": str(fault),
            "cordoned": cordoned,
            "already_cordoned": already,
            "killed": sorted(killed),
            "at": at,
            "duration_seconds": round(time.perf_counter() - started, 4),
        }

    def wait_deployment_ready(self, timeout: float) -> float:
        """Seconds until every desired replica of the Deployment is ready."""
        s, began = self.settings, time.monotonic()
        while True:
            d = self.apps.read_namespaced_deployment_status(s.deployment, s.namespace)
            want = d.spec.replicas if d.spec and d.spec.replicas is not None else 1
            have = (d.status.ready_replicas or 0) if d.status else 0
            updated = (d.status.updated_replicas or 0) if d.status else 0
            if have >= want and updated >= want:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise PlatformError(
                    f"kubernetes: deployment {s.deployment} has {have} of"
                    f" {want} replicas ready after {timeout:.0f}s"
                )
            time.sleep(1.0)

    def _network_fault(self, zone: str, fault: faults.FaultMode, started: float) -> dict[str, Any]:
        s = self.settings
        others = [
            n.metadata.name
            for n in self._nodes()
            if (n.metadata.labels or {}).get(ZONE_LABEL) not in (zone, None)
        ]
        try:
            body = netchaos.network_chaos(
                zone, fault, s.namespace, s.selector, others, list(s.data_tier)
            )
        except ValueError as exc:
            raise PlatformError(f"kubernetes: {exc}") from exc
        at = time.time()
        self.custom.create_namespaced_custom_object(
            netchaos.GROUP, netchaos.VERSION, s.namespace, netchaos.PLURAL, body
        )
        return {
            "platform": self.name,
            "zone": zone,
            "mode": str(fault),
            "network_chaos": body["metadata"]["name"],
            "killed": [],
            "at": at,
            "duration_seconds": round(time.perf_counter() - started, 4),
        }

    def _clear_network_faults(self, zone: str) -> list[str]:
        s = self.settings
        label = f"{netchaos.FAULT_LABEL}={netchaos.network_chaos_zone(zone)}"
        found: Any = self.custom.list_namespaced_custom_object(
            netchaos.GROUP, netchaos.VERSION, s.namespace, netchaos.PLURAL, label_selector=label
        )
        names = [o["metadata"]["name"] for o in found.get("items", [])]
        for name in names:
            self.custom.delete_namespaced_custom_object(
                netchaos.GROUP, netchaos.VERSION, s.namespace, netchaos.PLURAL, name
            )
        return names

    def restore_zone(self, zone: str, timeout: float = 60.0) -> dict[str, Any]:
        started = time.perf_counter()
        cleared = self._clear_network_faults(zone)
        uncordoned = []
        for node in self._nodes(zone):
            annotations = node.metadata.annotations or {}
            if annotations.get(CORDONED_BY) == zone:
                body = {
                    "spec": {"unschedulable": None},
                    "metadata": {"annotations": {CORDONED_BY: None}},
                }
                self.core.patch_node(node.metadata.name, body, _content_type=_MERGE)
                uncordoned.append(node.metadata.name)
        ready_s = self.wait_deployment_ready(timeout)
        in_zone = [r.name for r in self.replicas() if r.zone == zone and r.ready]
        return {
            "platform": self.name,
            "zone": zone,
            "uncordoned": uncordoned,
            "network_chaos_deleted": cleared,
            "started": [],
            "ready_in_zone": in_zone,
            "ready_at": time.time(),
            "replicas_ready_seconds": round(ready_s, 4),
            "duration_seconds": round(time.perf_counter() - started, 4),
        }

    # -- the store, through Jobs --------------------------------------------------------------
    def _runner(self) -> jobs.JobRunner:
        return jobs.JobRunner(self.core, self.batch, self.settings)

    def backup(self, dest: str | Path) -> dict[str, Any]:
        return {"platform": self.name, **self._runner().backup(Path(dest).name)}

    def destroy_store(self) -> dict[str, Any]:
        s = self.settings
        ns = self.core.read_namespace(s.namespace)
        labels = (ns.metadata.labels if ns.metadata else None) or {}
        if labels.get("meshsre.dev/drills") != "allowed":
            raise PlatformError(
                f"kubernetes: namespace {s.namespace} does not allow drills that"
                " destroy its store: label it meshsre.dev/drills=allowed"
            )
        return {"platform": self.name, **self._runner().destroy()}

    def restore(self, src: str | Path, timeout: float = 60.0) -> dict[str, Any]:
        result = self._runner().restore(str(src), timeout)
        # The replicas never stopped: their pools reconnect to the new database, and the
        # readiness probe takes each out of the Service until it does.
        ready_s = self.wait_deployment_ready(timeout)
        return {
            "platform": self.name,
            **result,
            "stopped": [],
            "started": [],
            "replicas_ready_seconds": round(ready_s, 4),
            "ready_at": time.time(),
        }

    # -- governance -------------------------------------------------------------------------
    def sidecars(self) -> list[str]:
        """Governed pods in every namespace (agents live outside the mesh's), by pod IP."""
        pods = self.core.list_pod_for_all_namespaces(
            label_selector=self.settings.sidecar_selector
        ).items
        return sorted(
            f"http://{p.status.pod_ip}:{self.settings.sidecar_port}"
            for p in pods
            if p.status and p.status.pod_ip and _ready(p)
        )

    def stop_event_stream(self) -> dict[str, Any]:
        """Scale the NATS StatefulSet to 0, keeping its size in an annotation to restore."""
        s = self.settings
        sts = self.apps.read_namespaced_stateful_set(s.nats_statefulset, s.namespace)
        replicas = int(sts.spec.replicas or 0)
        at = time.time()
        if replicas:
            self.apps.patch_namespaced_stateful_set(
                s.nats_statefulset,
                s.namespace,
                {
                    "metadata": {"annotations": {REPLICAS_ANNOTATION: str(replicas)}},
                    "spec": {"replicas": 0},
                },
            )
        return {
            "platform": self.name,
            "statefulset": s.nats_statefulset,
            "replicas": replicas,
            "at": at,
        }

    def restore_event_stream(self, timeout: float = 60.0) -> dict[str, Any]:
        s = self.settings
        started = time.perf_counter()
        sts = self.apps.read_namespaced_stateful_set(s.nats_statefulset, s.namespace)
        meta = sts.metadata
        kept = ((meta.annotations if meta else None) or {}).get(REPLICAS_ANNOTATION)
        want = int(kept) if kept else max(int(sts.spec.replicas or 0), 1)
        if int(sts.spec.replicas or 0) != want:
            self.apps.patch_namespaced_stateful_set(
                s.nats_statefulset, s.namespace, {"spec": {"replicas": want}}
            )
        deadline = time.monotonic() + timeout
        while True:
            sts = self.apps.read_namespaced_stateful_set(s.nats_statefulset, s.namespace)
            if int((sts.status and sts.status.ready_replicas) or 0) >= want:
                break
            if time.monotonic() > deadline:
                raise PlatformError(f"kubernetes: {s.nats_statefulset} not ready after {timeout} s")
            time.sleep(1.0)
        return {
            "platform": self.name,
            "statefulset": s.nats_statefulset,
            "replicas": want,
            "ready_at": time.time(),
            "duration_seconds": round(time.perf_counter() - started, 4),
        }
