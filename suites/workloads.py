"""Checks that hold for every workload of a deployment (the mesh's and Locust's alike):
requests and limits on every container, and the restricted Pod Security Standard plus a
read-only root filesystem. Same shape as `suites.kubechecks`: objects in, problems out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubernetes.utils.quantity import parse_quantity

__all__ = ["check_hardening", "check_resources"]

_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def _workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o.get("kind") in _KINDS)


def _name(o: dict[str, Any]) -> str:
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def _containers(w: dict[str, Any]) -> list[dict[str, Any]]:
    spec = w["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def check_resources(objects: list[dict[str, Any]]) -> list[str]:
    out = []
    for w in _workloads(objects):
        for c in _containers(w):
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        out.append(f"{_name(w)} container {c['name']}: no {r} in {kind}")
            for r in ("cpu", "memory"):
                req, lim = (res.get("requests") or {}).get(r), (res.get("limits") or {}).get(r)
                if req and lim and parse_quantity(req) > parse_quantity(lim):
                    out.append(f"{_name(w)} container {c['name']}: {r} request {req} over "
                               f"its limit {lim}")
    return out


def check_hardening(objects: list[dict[str, Any]]) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, a
    seccomp profile: the restricted Pod Security Standard, plus the read-only filesystem."""
    out = []
    for w in _workloads(objects):
        pod = w["spec"]["template"]["spec"].get("securityContext") or {}
        for c in _containers(w):
            sc = c.get("securityContext") or {}
            where = f"{_name(w)} container {c['name']}"
            # A container setting overrides the pod's.
            setting = {k: sc.get(k, pod.get(k))
                       for k in ("runAsNonRoot", "runAsUser", "seccompProfile")}
            if setting["runAsNonRoot"] is not True:
                out.append(f"{where}: runAsNonRoot is not true")
            if setting["runAsUser"] == 0:
                out.append(f"{where}: runs as uid 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{where}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                out.append(f"{where}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                out.append(f"{where}: capabilities not dropped (drop: [ALL])")
            if (setting["seccompProfile"] or {}).get("type") not in ("RuntimeDefault",
                                                                     "Localhost"):
                out.append(f"{where}: no seccomp profile (RuntimeDefault)")
    return out
