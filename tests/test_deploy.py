"""The Kubernetes deployment, proven offline: `kubectl kustomize` renders every overlay (and the
Locust manifests), every object validates against the Kubernetes 1.32 schemas with
kubernetes-validate, the prometheus-operator objects against its API types, and the generated
copies in the base match alerts/build and dashboards/build."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as monitoring

from mesh.deploy.sync import COPIES, DEPLOY_DIR, REPO_ROOT, stale, write

KUSTOMIZATIONS = {
    "base": DEPLOY_DIR / "base",
    "staging": DEPLOY_DIR / "overlays" / "staging",
    "production": DEPLOY_DIR / "overlays" / "production",
    "locust": REPO_ROOT / "loadtests" / "k8s",
}
K8S_VERSION = "1.32.0"
VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))
MESH_KINDS = {
    "Namespace", "CustomResourceDefinition", "ServiceAccount", "ConfigMap", "Service",
    "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
    "ServiceMonitor", "PrometheusRule",
}


def kustomize(path: Path) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (it renders kustomizations offline)"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def validate(tmp_path: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return subprocess.run([VALIDATE, "--strict", "-k", K8S_VERSION, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: objects(kustomize(path)) for name, path in KUSTOMIZATIONS.items()}


def test_kubectl_kustomize_renders_every_overlay(rendered: dict[str, Any]) -> None:
    for name in ("staging", "production"):
        assert {o["kind"] for o in rendered[name]} == MESH_KINDS, name
    assert {o["kind"] for o in rendered["base"]} == MESH_KINDS - {"Namespace"}
    locust = rendered["locust"]
    assert sorted(o["kind"] for o in locust) == ["ConfigMap", "Deployment", "Deployment",
                                                  "Service"]
    assert {o["metadata"]["name"] for o in locust if o["kind"] == "Deployment"} == {
        "locust-master", "locust-worker"}


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_every_rendered_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], name: str, tmp_path: Path
) -> None:
    done = validate(tmp_path, rendered[name])
    assert done.returncode == 0, done.stdout + done.stderr
    passed = done.stdout.count(" passed for resource ")
    # Only the prometheus-operator kinds have no built-in schema (checked below instead).
    unchecked = {o["kind"] for o in rendered[name]} & {"ServiceMonitor", "PrometheusRule"}
    assert passed == len(rendered[name]) - len(unchecked), done.stdout


def test_kubernetes_validate_rejects_an_unknown_field_and_a_wrong_type(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = copy.deepcopy(rendered["production"])
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    done = validate(tmp_path, docs)
    assert done.returncode == 1 and "readinessProbes" in done.stdout + done.stderr
    deployment["spec"]["template"]["spec"]["containers"][0].pop("readinessProbes")
    deployment["spec"]["replicas"] = "three"
    assert validate(tmp_path, docs).returncode == 1


def test_overlays_set_their_namespace_and_scale(rendered: dict[str, Any]) -> None:
    for name, namespace, replicas, floor in (("staging", "agentmesh-staging", 3, 3),
                                             ("production", "agentmesh", 6, 6)):
        namespaced = [o for o in rendered[name]
                      if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
        assert {o["metadata"]["namespace"] for o in namespaced} == {namespace}, name
        by_kind = {o["kind"]: o for o in rendered[name]}
        assert by_kind["Deployment"]["spec"]["replicas"] == replicas
        assert by_kind["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == floor


def test_secrets_are_referenced_never_shipped(rendered: dict[str, Any]) -> None:
    for name in ("staging", "production"):
        assert not [o for o in rendered[name] if o["kind"] == "Secret"]
        deployment = next(o for o in rendered[name] if o["kind"] == "Deployment")
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        for var in ("MESH_STORAGE_URL", "MESH_REDIS_URL", "MESH_ADMIN_TOKEN"):
            assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "agentmesh-secrets", var


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_operator_objects_match_the_prometheus_operator_api_exactly(
    rendered: dict[str, Any], kind: str
) -> None:
    obj = next(o for o in rendered["production"] if o["kind"] == kind)
    model = getattr(monitoring, kind).model_validate(obj)
    # The models ignore unknown fields: a round trip that loses or changes nothing is strict.
    assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == obj


def test_an_unknown_servicemonitor_field_does_not_survive_the_round_trip(
    rendered: dict[str, Any],
) -> None:
    obj = copy.deepcopy(next(o for o in rendered["production"] if o["kind"] == "ServiceMonitor"))
    obj["spec"]["endpoints"][0]["scrapeEvery"] = "15s"
    model = monitoring.ServiceMonitor.model_validate(obj)
    assert model.model_dump(by_alias=True, exclude_none=True, mode="json") != obj


def test_the_generated_copies_are_in_sync_with_alerts_and_dashboards(tmp_path: Path) -> None:
    assert stale() == [], "run `python -m mesh.deploy`"
    write(tmp_path)
    for copy_ in COPIES:
        regenerated = (tmp_path / copy_.target).read_text()
        assert regenerated == (DEPLOY_DIR / copy_.target).read_text(), copy_.target
        assert regenerated.startswith("# DO NOT EDIT")
        assert regenerated.split("\n", 1)[1] == (REPO_ROOT / copy_.source).read_text()


def test_a_changed_source_makes_the_copy_stale(tmp_path: Path) -> None:
    for copy_ in COPIES:
        source = tmp_path / copy_.source
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text((REPO_ROOT / copy_.source).read_text() + "# changed\n")
    assert stale(DEPLOY_DIR, tmp_path) == [c.target for c in COPIES]


def test_the_generator_command_reports_the_copies_in_sync() -> None:
    done = subprocess.run([sys.executable, "-m", "mesh.deploy", "--check"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "")
