"""Read a live deployment of the mesh through the official Kubernetes client, as the same
manifest dicts `kubectl kustomize` renders (camelCase keys, kind and apiVersion set), so the
checks of `suites.kubechecks` judge both alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from suites.kubechecks import APP_LABELS, CRD_NAME, Objects

__all__ = ["KubeTargetError", "Live", "load"]

_SELECTOR = ",".join(f"{k}={v}" for k, v in APP_LABELS.items())


@dataclass(frozen=True)
class Live:
    objects: Objects
    pods: Objects
    nodes: Objects
    notes: tuple[str, ...]  # what could not be read, and why


class KubeTargetError(RuntimeError):
    """No way to reach the cluster that the options name."""


def _configure(context: str | None) -> None:
    try:
        config.load_kube_config(context=context)
        return
    except config.ConfigException as exc:
        if context:  # a context was named: the in-cluster identity is not it
            raise KubeTargetError(f"kubeconfig context {context!r}: {exc}") from exc
        reason = str(exc)
    try:
        config.load_incluster_config()  # running as a pod (a CI job in the cluster)
    except config.ConfigException as exc:
        raise KubeTargetError(f"no kubeconfig ({reason}) and not running in a cluster "
                              f"({exc}): set KUBECONFIG or pass --kube-context") from exc


def load(namespace: str, context: str | None = None) -> Live:
    _configure(context)
    api = client.ApiClient()
    notes: list[str] = []

    def typed(items: list[Any], kind: str, api_version: str) -> Objects:
        return [{**api.sanitize_for_serialization(i), "kind": kind, "apiVersion": api_version}
                for i in items]

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    objects = [
        *typed(apps.list_namespaced_deployment(namespace).items, "Deployment", "apps/v1"),
        *typed(core.list_namespaced_service(namespace).items, "Service", "v1"),
        *typed(client.PolicyV1Api(api).list_namespaced_pod_disruption_budget(namespace).items,
               "PodDisruptionBudget", "policy/v1"),
        *typed(client.AutoscalingV2Api(api)
               .list_namespaced_horizontal_pod_autoscaler(namespace).items,
               "HorizontalPodAutoscaler", "autoscaling/v2"),
        *typed(client.NetworkingV1Api(api).list_namespaced_network_policy(namespace).items,
               "NetworkPolicy", "networking.k8s.io/v1"),
    ]
    custom = client.CustomObjectsApi(api)
    for plural in ("servicemonitors", "prometheusrules"):
        try:
            found = cast(dict[str, Any], custom.list_namespaced_custom_object(
                "monitoring.coreos.com", "v1", namespace, plural))
            objects += found.get("items", [])
        except ApiException as exc:
            notes.append(f"cannot list {plural}: {exc.status} {exc.reason}"
                         " (is prometheus-operator installed?)")
    try:
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
        objects += typed([crd], "CustomResourceDefinition", "apiextensions.k8s.io/v1")
    except ApiException as exc:
        notes.append(f"cannot read CRD {CRD_NAME}: {exc.status} {exc.reason}")
    pods = typed(core.list_namespaced_pod(namespace, label_selector=_SELECTOR).items,
                 "Pod", "v1")
    try:
        nodes = typed(core.list_node().items, "Node", "v1")
    except ApiException as exc:
        nodes = []
        notes.append(f"cannot list nodes (their zone labels): {exc.status} {exc.reason}")
    return Live(objects, pods, nodes, tuple(notes))
