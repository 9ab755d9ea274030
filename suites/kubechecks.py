"""What a Kubernetes deployment of the mesh must have, as checks over manifest dicts.

The same functions judge objects read from a live cluster (the kubernetes suite, through the
official client) and the manifests `kubectl kustomize` renders offline (the project's tests).
Each takes every object of the deployment and returns the problems it found, as sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from suites.promchecks import expected_groups
from suites.workloads import check_hardening, check_resources

__all__ = ["APP_LABELS", "CHECKS", "CRD_NAME", "MIN_REPLICAS", "ZONE_KEY", "Check", "Objects",
           "mesh_deployment", "selects", "zone_problems"]

Objects = list[dict[str, Any]]
Check = Callable[[Objects], list[str]]

APP_LABELS = {"app.kubernetes.io/name": "agentmesh", "app.kubernetes.io/component": "server"}
ZONE_KEY = "topology.kubernetes.io/zone"
CRD_NAME = "governedagents.mesh.agentmesh.ai"
MIN_REPLICAS = 3  # one per zone, three zones: what surviving a zone failure takes


def of_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o.get("kind") == kind]


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) matches ``labels``; an empty
    selector matches everything, as in Kubernetes."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def mesh_deployment(objects: Objects) -> dict[str, Any] | None:
    for d in of_kind(objects, "Deployment"):
        labels = d["spec"]["template"].get("metadata", {}).get("labels", {})
        if all(labels.get(k) == v for k, v in APP_LABELS.items()):
            return d
    return None


def _pod_labels(d: dict[str, Any]) -> dict[str, str]:
    return dict(d["spec"]["template"].get("metadata", {}).get("labels", {}))


def _name(o: dict[str, Any]) -> str:
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def _mesh(objects: Objects) -> tuple[dict[str, Any] | None, list[str]]:
    d = mesh_deployment(objects)
    return d, [] if d else [f"no Deployment with pod labels {APP_LABELS}"]


def _hpa(objects: Objects, d: dict[str, Any]) -> dict[str, Any] | None:
    for h in of_kind(objects, "HorizontalPodAutoscaler"):
        ref = h["spec"].get("scaleTargetRef", {})
        if ref.get("kind") == "Deployment" and ref.get("name") == d["metadata"]["name"]:
            return h
    return None


def check_replicas(objects: Objects) -> list[str]:
    d, out = _mesh(objects)
    if d is None:
        return out
    replicas = d["spec"].get("replicas", 1)
    if replicas < MIN_REPLICAS:
        out.append(f"{_name(d)}: {replicas} replicas, at least {MIN_REPLICAS} needed")
    return out


def check_zone_spread(objects: Objects) -> list[str]:
    d, out = _mesh(objects)
    if d is None:
        return out
    spec, labels = d["spec"]["template"]["spec"], _pod_labels(d)
    spread = [c for c in spec.get("topologySpreadConstraints") or []
              if c.get("topologyKey") == ZONE_KEY and selects(c.get("labelSelector"), labels)]
    if not any(c.get("whenUnsatisfiable") == "DoNotSchedule" and c.get("maxSkew") == 1
               for c in spread):
        out.append(f"{_name(d)}: no topology spread over {ZONE_KEY} with maxSkew 1 and "
                   "DoNotSchedule selecting its pods")
    anti = spec.get("affinity", {}).get("podAntiAffinity", {})
    terms = [*anti.get("requiredDuringSchedulingIgnoredDuringExecution", []),
             *(t["podAffinityTerm"] for t in
               anti.get("preferredDuringSchedulingIgnoredDuringExecution", []))]
    if not any(t.get("topologyKey") == ZONE_KEY and selects(t.get("labelSelector"), labels)
               for t in terms):
        out.append(f"{_name(d)}: no pod anti-affinity over {ZONE_KEY} selecting its pods")
    return out


def check_probes(objects: Objects) -> list[str]:
    d, out = _mesh(objects)
    if d is None:
        return out
    for c in d["spec"]["template"]["spec"]["containers"]:
        ports = {p.get("name") for p in c.get("ports", [])} | {
            p["containerPort"] for p in c.get("ports", [])}
        for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path or get.get("port") not in ports:
                out.append(f"{_name(d)} container {c['name']}: {probe} must GET {path} on a "
                           "container port")
    return out


def _int_or_percent(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return -(-int(value[:-1]) * total // 100)  # Kubernetes rounds percentages up
    return int(value)


def check_pdb(objects: Objects) -> list[str]:
    d, out = _mesh(objects)
    if d is None:
        return out
    labels, replicas = _pod_labels(d), d["spec"].get("replicas", 1)
    pdbs = [p for p in of_kind(objects, "PodDisruptionBudget")
            if selects(p["spec"].get("selector"), labels)]
    if not pdbs:
        return [f"no PodDisruptionBudget selects the pods of {_name(d)}"]
    for p in pdbs:
        spec = p["spec"]
        if "maxUnavailable" in spec:
            allowed = _int_or_percent(spec["maxUnavailable"], replicas)
        else:
            allowed = replicas - _int_or_percent(spec.get("minAvailable", 0), replicas)
        if allowed < 1:
            out.append(f"{_name(p)}: allows no disruption of {replicas} replicas: drains block")
        if replicas - allowed < 2:
            out.append(f"{_name(p)}: lets {allowed} of {replicas} replicas go at once, "
                       "leaving fewer than two")
    return out


def check_hpa(objects: Objects) -> list[str]:
    d, out = _mesh(objects)
    if d is None:
        return out
    h = _hpa(objects, d)
    if h is None:
        return [f"no HorizontalPodAutoscaler scales {_name(d)}"]
    low, high = h["spec"].get("minReplicas", 1), h["spec"]["maxReplicas"]
    if low < MIN_REPLICAS:
        out.append(f"{_name(h)}: minReplicas {low}, at least {MIN_REPLICAS} needed")
    if high <= low:
        out.append(f"{_name(h)}: maxReplicas {high} leaves no room above minReplicas {low}")
    if not h["spec"].get("metrics"):
        out.append(f"{_name(h)}: no metrics to scale on")
    return out


def check_network_policy(objects: Objects) -> list[str]:
    d, out = _mesh(objects)
    if d is None:
        return out
    labels = _pod_labels(d)
    policies = [n for n in of_kind(objects, "NetworkPolicy")
                if selects(n["spec"].get("podSelector"), labels)]
    if not policies:
        return [f"no NetworkPolicy selects the pods of {_name(d)}: any pod may reach them"]
    if not any("Ingress" in (n["spec"].get("policyTypes") or ["Ingress"])
               and n["spec"].get("ingress") for n in policies):
        out.append(f"no NetworkPolicy admits ingress to {_name(d)}: clients cannot reach it")
    return out


def _service(objects: Objects, labels: dict[str, str]) -> dict[str, Any] | None:
    for s in of_kind(objects, "Service"):
        if s["spec"].get("selector") and selects({"matchLabels": s["spec"]["selector"]}, labels):
            return s
    return None


def check_service_monitor(objects: Objects) -> list[str]:
    d, out = _mesh(objects)
    if d is None:
        return out
    service = _service(objects, _pod_labels(d))
    if service is None:
        return [f"no Service selects the pods of {_name(d)}"]
    ports = {p.get("name") for p in service["spec"]["ports"]}
    monitors = [m for m in of_kind(objects, "ServiceMonitor")
                if selects(m["spec"].get("selector"), service["metadata"].get("labels", {}))]
    if not monitors:
        return [f"no ServiceMonitor selects {_name(service)}: Prometheus does not scrape the mesh"]
    for m in monitors:
        for e in m["spec"].get("endpoints", []):
            if e.get("port") not in ports:
                out.append(f"{_name(m)}: endpoint port {e.get('port')!r} is not a port of "
                           f"{_name(service)}")
            relabeled = {r.get("targetLabel"): r for r in e.get("relabelings", [])}
            if relabeled.get("job", {}).get("replacement") != "mesh":
                out.append(f"{_name(m)}: job is not relabelled to \"mesh\", which the rules use")
            if "zone" not in relabeled:
                out.append(f"{_name(m)}: no zone label on targets: zone alerts cannot work")
    return out


def check_prometheus_rule(objects: Objects) -> list[str]:
    loaded = {g["name"] for r in of_kind(objects, "PrometheusRule")
              for g in r.get("spec", {}).get("groups", [])}
    missing = sorted(set(expected_groups()) - loaded)
    return [f"no PrometheusRule holds the generated group {g}" for g in missing]


def check_crd(objects: Objects) -> list[str]:
    crds = [c for c in of_kind(objects, "CustomResourceDefinition")
            if c["metadata"]["name"] == CRD_NAME]
    if not crds:
        return [f"CustomResourceDefinition {CRD_NAME} is not installed"]
    out = []
    versions = {v["name"]: v for v in crds[0]["spec"]["versions"]}
    v1 = versions.get("v1")
    if v1 is None or not v1.get("served") or not v1.get("storage"):
        return [f"{CRD_NAME}: version v1 is not served and stored"]
    if not v1.get("schema", {}).get("openAPIV3Schema"):
        out.append(f"{CRD_NAME}: v1 has no schema")
    columns = {c["jsonPath"] for c in v1.get("additionalPrinterColumns", [])}
    for path in (".status.phase", ".status.trustScore"):
        if path not in columns:
            out.append(f"{CRD_NAME}: no printer column for {path}")
    return out


CHECKS: dict[str, Check] = {
    "replicas": check_replicas,
    "zone spread": check_zone_spread,
    "probes": check_probes,
    "resources": check_resources,
    "hardening": check_hardening,
    "pdb": check_pdb,
    "hpa": check_hpa,
    "network policy": check_network_policy,
    "service monitor": check_service_monitor,
    "prometheus rule": check_prometheus_rule,
    "crd": check_crd,
}


def zone_problems(pods: Objects, nodes: Objects, minimum: int = MIN_REPLICAS) -> list[str]:
    """Live only: at least ``minimum`` ready mesh pods, on nodes in at least ``minimum`` zones."""
    zone_of = {n["metadata"]["name"]: n["metadata"].get("labels", {}).get(ZONE_KEY)
               for n in nodes}
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in p.get("status", {}).get("conditions") or [])]
    zones = {z for p in ready if (z := zone_of.get(p["spec"].get("nodeName")))}
    out = []
    if len(ready) < minimum:
        out.append(f"{len(ready)} ready mesh pods, at least {minimum} needed")
    if len(zones) < minimum:
        out.append(f"ready mesh pods run in {len(zones)} zones ({', '.join(sorted(zones))}), "
                   f"at least {minimum} needed")
    return out
