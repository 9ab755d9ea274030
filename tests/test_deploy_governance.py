"""Governance on Kubernetes, proven offline: the NATS StatefulSet across zones and the sidecar
injector render and validate against the Kubernetes 1.32 schemas; the cert-manager objects
carry what cert-manager needs; and the injector itself, a real process, patches a governed
pod so that the result is still a valid pod with the sidecar in it."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mesh.deploy.sync import DEPLOY_DIR
from mesh.process import MESHSRE, Service
from mesh.sidecar.inject import CONTAINER, InjectorConfig, review
from tests.test_deploy import kustomize, objects, validate

CONFIG = InjectorConfig("ghcr.io/meshsre/meshsre:0.1.0", "http://agentmesh.agentmesh.svc:8080",
                        "nats://nats.agentmesh.svc:4222")
AGENT = yaml.safe_load((DEPLOY_DIR / "examples" / "governed-agent-deployment.yaml").read_text())


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return objects(kustomize(DEPLOY_DIR / "governance"))


def _one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"]))


def test_the_governance_objects_validate_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]], tmp_path: Path,
) -> None:
    done = validate(tmp_path, rendered)
    assert done.returncode == 0, done.stdout + done.stderr
    unchecked = [o for o in rendered if o["kind"] in ("Certificate", "Issuer")]  # CRDs
    assert done.stdout.count(" passed for resource ") == len(rendered) - len(unchecked)


def test_nats_runs_one_member_per_zone_with_a_volume_each(rendered: list[dict[str, Any]]) -> None:
    sts = _one(rendered, "StatefulSet", "nats")
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 3
    spread = pod["topologySpreadConstraints"][0]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"], spread["maxSkew"]) == (
        "topology.kubernetes.io/zone", "DoNotSchedule", 1)
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = _one(rendered, "ConfigMap")["data"]["nats.conf"]
    assert "jetstream" in conf and conf.count("nats-headless:6222") == 3
    assert _one(rendered, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # The mesh's settings point at it, and keep three copies of every event.
    base = objects(kustomize(DEPLOY_DIR / "base"))
    settings = _one(base, "ConfigMap")["data"]
    assert settings["MESH_NATS_URL"] == "nats://nats:4222"
    assert settings["MESH_EVENT_STREAM_REPLICAS"] == "3"


def test_the_webhook_is_served_with_a_cert_manager_certificate_and_fails_closed(
    rendered: list[dict[str, Any]],
) -> None:
    hook = _one(rendered, "MutatingWebhookConfiguration")
    cert = _one(rendered, "Certificate")
    namespace = cert["metadata"]["namespace"]
    assert hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{namespace}/{cert['metadata']['name']}"
    (webhook,) = hook["webhooks"]
    service = webhook["clientConfig"]["service"]
    assert f"{service['name']}.{service['namespace']}.svc" in cert["spec"]["dnsNames"]
    assert _one(rendered, "Service", service["name"])["spec"]["ports"][0]["port"] == \
        service["port"]
    assert webhook["failurePolicy"] == "Fail" and webhook["sideEffects"] == "None"
    assert webhook["objectSelector"] == {"matchLabels": {"mesh.agentmesh.ai/governed": "true"}}
    injector = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert injector["volumes"][0]["secret"]["secretName"] == cert["spec"]["secretName"]
    assert cert["spec"]["issuerRef"]["name"] == _one(rendered, "Issuer")["metadata"]["name"]


def _apply(doc: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """JSONPatch "add" as the API server applies it (all the injector emits)."""
    doc = copy.deepcopy(doc)
    for op in patch:
        assert op["op"] == "add"
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[part]
        if last == "-":
            node.append(op["value"])
        else:
            node[last] = op["value"]
    return doc


def _review(pod: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"kind": "Pod"}, "operation": "CREATE",
                        "object": pod}}


def _pod(template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(template)}


def test_the_injector_adds_the_sidecar_and_the_pod_stays_valid(tmp_path: Path) -> None:
    pod = _pod(AGENT["spec"]["template"])
    with _Injector() as injector:
        answer = httpx.post(injector.url + "/mutate", json=_review(pod), timeout=5).json()
    response = answer["response"]
    assert response["uid"] == "u-1" and response["allowed"] and response["patchType"] == "JSONPatch"
    injected = _apply(pod, json.loads(base64.b64decode(response["patch"])))
    sidecar = next(c for c in injected["spec"]["containers"] if c["name"] == CONTAINER)
    assert "--tool" in sidecar["args"] and "search=http://search.tools.svc:8080" in sidecar["args"]
    assert injected["metadata"]["annotations"]["mesh.agentmesh.ai/sidecar"] == "injected"
    deployment = copy.deepcopy(AGENT)
    deployment["spec"]["template"] = {k: v for k, v in injected.items()
                                      if k in ("metadata", "spec")}
    done = validate(tmp_path, [deployment])
    assert done.returncode == 0, done.stdout + done.stderr
    # Injecting twice adds nothing; a pod not labelled for governance is left alone.
    again = review(_review(injected), CONFIG)["response"]
    assert again["allowed"] and "patch" not in again
    plain = _pod(AGENT["spec"]["template"])
    plain["metadata"]["labels"].pop("mesh.agentmesh.ai/governed")
    assert "patch" not in review(_review(plain), CONFIG)["response"]


def test_a_governed_pod_without_a_key_is_refused_with_the_reason() -> None:
    pod = _pod(AGENT["spec"]["template"])
    pod["metadata"]["annotations"].pop("mesh.agentmesh.ai/agent-key-secret")
    response = review(_review(pod), CONFIG)["response"]
    assert response["allowed"] is False
    assert "mesh.agentmesh.ai/agent-key-secret" in response["status"]["message"]
    pod = _pod(AGENT["spec"]["template"])
    pod["metadata"]["annotations"]["mesh.agentmesh.ai/tools"] = "search"
    assert "use NAME=URL" in review(_review(pod), CONFIG)["response"]["status"]["message"]


class _Injector(Service):
    name = "sidecar-injector"

    def __init__(self) -> None:
        super().__init__()

    def command(self) -> list[str]:
        return [MESHSRE, "sidecar-injector", "--image", CONFIG.image, "--mesh", CONFIG.mesh_url,
                "--nats", CONFIG.nats_url, "--host", self.host, "--port", str(self.port)]

    def __enter__(self) -> _Injector:
        self.start()
        return self
