"""The kubernetes suite's checks (`suites.kubechecks`) on the manifests `kubectl kustomize`
renders: the overlays pass every check, each check catches the mistake it exists for, and
objects that went through the official client's models (as the live suite reads them) are
judged the same."""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client

from mesh.deploy.sync import DEPLOY_DIR, REPO_ROOT
from suites.kubechecks import CHECKS, ZONE_KEY, Objects, selects, zone_problems

Mutation = Callable[[Objects], None]


def _render(path: str) -> Objects:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (it renders kustomizations offline)"
    done = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True,
                          timeout=60, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def overlays() -> dict[str, Objects]:
    return {name: _render(str(DEPLOY_DIR / "overlays" / name))
            for name in ("staging", "production")}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("overlay", ["staging", "production"])
def test_every_overlay_passes_every_check(overlays: dict[str, Objects], overlay: str,
                                         check: str) -> None:
    assert CHECKS[check](overlays[overlay]) == []


def test_the_locust_workloads_are_hardened_and_have_resources() -> None:
    locust = _render(str(REPO_ROOT / "loadtests" / "k8s"))
    assert CHECKS["hardening"](locust) == []
    assert CHECKS["resources"](locust) == []


def _one(kind: str) -> Callable[[Objects], dict[str, Any]]:
    return lambda objs: next(o for o in objs if o["kind"] == kind)


def _pod(objs: Objects) -> Any:
    return _one("Deployment")(objs)["spec"]["template"]["spec"]


def _container(objs: Objects) -> Any:
    return _pod(objs)["containers"][0]


def _drop(kind: str) -> Mutation:
    return lambda objs: objs.remove(_one(kind)(objs))


MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("replicas", lambda o: _one("Deployment")(o)["spec"].update(replicas=1), "1 replicas"),
    ("zone spread", lambda o: _pod(o).pop("topologySpreadConstraints"), "no topology spread"),
    ("zone spread", lambda o: _pod(o)["topologySpreadConstraints"][0].update(
        whenUnsatisfiable="ScheduleAnyway"), "DoNotSchedule"),
    ("zone spread", lambda o: _pod(o).pop("affinity"), "anti-affinity"),
    ("probes", lambda o: _container(o)["readinessProbe"]["httpGet"].update(path="/health/live"),
     "readinessProbe must GET /health/ready"),
    ("probes", lambda o: _container(o).pop("livenessProbe"), "livenessProbe"),
    ("resources", lambda o: _container(o)["resources"].pop("limits"), "no cpu in limits"),
    ("resources", lambda o: _container(o)["resources"]["requests"].update(memory="4Gi"),
     "memory request 4Gi over its limit"),
    ("hardening", lambda o: _container(o)["securityContext"].update(
        readOnlyRootFilesystem=False), "root filesystem is writable"),
    ("hardening", lambda o: _container(o)["securityContext"].update(runAsUser=0), "uid 0"),
    ("hardening", lambda o: (_pod(o)["securityContext"].pop("runAsNonRoot"),
                             _container(o)["securityContext"].pop("runAsNonRoot")),
     "runAsNonRoot is not true"),
    ("hardening", lambda o: _container(o)["securityContext"].pop("capabilities"),
     "capabilities not dropped"),
    ("pdb", _drop("PodDisruptionBudget"), "no PodDisruptionBudget"),
    ("pdb", lambda o: _one("PodDisruptionBudget")(o)["spec"].update(maxUnavailable=0),
     "allows no disruption"),
    ("hpa", _drop("HorizontalPodAutoscaler"), "no HorizontalPodAutoscaler"),
    ("hpa", lambda o: _one("HorizontalPodAutoscaler")(o)["spec"].update(minReplicas=1),
     "minReplicas 1"),
    ("network policy", _drop("NetworkPolicy"), "no NetworkPolicy"),
    ("network policy", lambda o: _one("NetworkPolicy")(o)["spec"].update(
        podSelector={"matchLabels": {"app": "other"}}), "no NetworkPolicy selects"),
    ("service monitor", _drop("ServiceMonitor"), "no ServiceMonitor"),
    ("service monitor", lambda o: _one("ServiceMonitor")(o)["spec"]["endpoints"][0].update(
        port="metrics"), "'metrics' is not a port"),
    ("service monitor", lambda o: _one("ServiceMonitor")(o)["spec"]["endpoints"][0].update(
        relabelings=[]), "no zone label"),
    ("prometheus rule", _drop("PrometheusRule"), "no PrometheusRule holds"),
    ("prometheus rule", lambda o: _one("PrometheusRule")(o)["spec"]["groups"].pop(),
     "no PrometheusRule holds the generated group"),
    ("crd", _drop("CustomResourceDefinition"), "is not installed"),
    ("crd", lambda o: _one("CustomResourceDefinition")(o)["spec"]["versions"][0][
        "additionalPrinterColumns"].pop(1), "no printer column for .status.trustScore"),
]


@pytest.mark.parametrize(("check", "mutate", "expected"), MUTATIONS,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(MUTATIONS)])
def test_each_check_catches_its_mistake(overlays: dict[str, Objects], check: str,
                                        mutate: Mutation, expected: str) -> None:
    objs = copy.deepcopy(overlays["production"])
    mutate(objs)
    problems = CHECKS[check](objs)
    assert any(expected in p for p in problems), problems


def test_objects_read_through_the_kubernetes_client_are_judged_alike(
    overlays: dict[str, Objects],
) -> None:
    api = client.ApiClient()
    models = {"Deployment": "V1Deployment", "Service": "V1Service",
              "PodDisruptionBudget": "V1PodDisruptionBudget",
              "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
              "NetworkPolicy": "V1NetworkPolicy",
              "CustomResourceDefinition": "V1CustomResourceDefinition"}
    live = []
    for obj in overlays["production"]:
        if obj["kind"] in models:
            # What the client does with an API response; then what suites.kubelive does.
            model = api._ApiClient__deserialize(obj, models[obj["kind"]])  # type: ignore[attr-defined]
            obj = {**api.sanitize_for_serialization(model), "kind": obj["kind"],
                   "apiVersion": obj["apiVersion"]}
        live.append(obj)
    for name, check in CHECKS.items():
        assert check(live) == [], name


def _pod_on(node: str, ready: bool = True) -> dict[str, Any]:
    status = "True" if ready else "False"
    return {"spec": {"nodeName": node}, "status": {"conditions": [
        {"type": "Ready", "status": status}]}}


NODES = [{"metadata": {"name": f"node-{z}", "labels": {ZONE_KEY: f"eu-west-1{z}"}}}
         for z in "abc"]


def test_three_ready_pods_in_three_zones_pass() -> None:
    pods = [_pod_on("node-a"), _pod_on("node-b"), _pod_on("node-c")]
    assert zone_problems(pods, NODES) == []


def test_pods_crowded_into_two_zones_fail() -> None:
    pods = [_pod_on("node-a"), _pod_on("node-a"), _pod_on("node-b")]
    assert zone_problems(pods, NODES) == [
        "ready mesh pods run in 2 zones (eu-west-1a, eu-west-1b), at least 3 needed"]


def test_pods_that_are_not_ready_do_not_count() -> None:
    pods = [_pod_on("node-a"), _pod_on("node-b"), _pod_on("node-c", ready=False)]
    assert "2 ready mesh pods, at least 3 needed" in zone_problems(pods, NODES)


def test_selectors_follow_kubernetes_semantics() -> None:
    labels = {"app": "mesh", "tier": "api"}
    assert selects({}, labels) and selects(None, labels)
    assert selects({"matchLabels": {"app": "mesh"}}, labels)
    assert not selects({"matchLabels": {"app": "other"}}, labels)
    assert selects({"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["api", "web"]},
        {"key": "canary", "operator": "DoesNotExist"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                              "values": ["api"]}]}, labels)
