"""The GovernedAgent CRD judged by its own openAPIV3Schema: the sample is accepted, bad agents
and bad statuses are rejected, and the schema is structural (the API server refuses a CRD
whose schema nodes lack a type)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, FormatChecker

from mesh.deploy.sync import DEPLOY_DIR

CRD = yaml.safe_load((DEPLOY_DIR / "base" / "crd-governedagent.yaml").read_text())
SAMPLE = yaml.safe_load((DEPLOY_DIR / "examples" / "governedagent.yaml").read_text())
Doc = dict[str, Any]


def _strict(schema: Doc) -> Doc:
    """The schema as `kubectl apply` enforces it: field validation is strict by default since
    Kubernetes 1.27, so an unknown field is an error rather than silently pruned."""
    schema = copy.deepcopy(schema)

    def visit(node: Doc) -> None:
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for child in node.get("properties", {}).values():
            visit(child)
        if isinstance(node.get("items"), dict):
            visit(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            visit(node["additionalProperties"])

    visit(schema)
    return schema


def _version() -> Doc:
    (v1,) = CRD["spec"]["versions"]
    return dict(v1)


# jsonschema checks date-time only with an optional package; the API server always does.
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


VALIDATOR = Draft7Validator(_strict(_version()["schema"]["openAPIV3Schema"]),
                            format_checker=FORMATS)


def errors(doc: Doc) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def test_the_crd_names_the_agentmesh_group_and_kind() -> None:
    assert CRD["metadata"]["name"] == "governedagents.mesh.agentmesh.ai"
    assert (CRD["spec"]["group"], CRD["spec"]["names"]["kind"]) == ("mesh.agentmesh.ai",
                                                                    "GovernedAgent")
    v1 = _version()
    assert v1["name"] == "v1" and v1["served"] and v1["storage"]
    assert "status" in v1["subresources"]


def test_the_sample_governed_agent_is_accepted() -> None:
    assert SAMPLE["apiVersion"] == "mesh.agentmesh.ai/v1"
    assert errors(SAMPLE) == []


def test_a_minimal_agent_needs_only_image_and_sponsor() -> None:
    doc = {**SAMPLE, "spec": {"image": "agent:1", "sponsor": "ops@example.com"}}
    assert errors(doc) == []


def _without(key: str) -> Callable[[Doc], None]:
    return lambda spec: spec.pop(key)


def _set(key: str, value: object) -> Callable[[Doc], None]:
    return lambda spec: spec.__setitem__(key, value)


@pytest.mark.parametrize(("mutate", "field"), [
    (_without("sponsor"), ""),
    (_without("image"), ""),
    (_set("sponsor", "not-an-email"), "sponsor"),
    (_set("image", ""), "image"),
    (_set("policy", "yolo"), "policy"),
    (_set("replicas", 101), "replicas"),
    (_set("replicas", -1), "replicas"),
    (_set("capabilities", ["rm -rf /"]), "capabilities.0"),
    (_set("trust", {"initial": 1500, "minimum": 300}), "trust.initial"),
    (_set("resources", {"limits": {"cpu": "lots"}}), "resources.limits.cpu"),
    (_set("sponsr", "ops@example.com"), ""),
], ids=["no-sponsor", "no-image", "bad-sponsor", "empty-image", "unknown-policy",
        "too-many-replicas", "negative-replicas", "bad-capability", "trust-over-1000",
        "bad-quantity", "unknown-field"])
def test_a_bad_governed_agent_is_rejected(mutate: Callable[[Doc], None], field: str) -> None:
    doc = copy.deepcopy(SAMPLE)
    mutate(doc["spec"])
    found = errors(doc)
    assert found, "accepted"
    assert any(e.startswith(f"spec.{field}".rstrip(".") + ":") for e in found), found


STATUS = {
    "phase": "Running", "replicas": 2, "agentDID": "did:mesh:" + "ab" * 16, "trustScore": 720,
    "policyViolations": 3, "lastActivity": "2026-01-05T10:00:00Z", "observedGeneration": 4,
    "conditions": [{"type": "Ready", "status": "True", "reason": "Registered",
                    "message": "agent registered with the mesh",
                    "lastTransitionTime": "2026-01-05T09:59:00Z"}],
}


def test_a_status_as_the_mesh_reports_it_is_accepted() -> None:
    assert errors({**SAMPLE, "status": STATUS}) == []


@pytest.mark.parametrize(("key", "value"), [
    ("phase", "Sleeping"), ("trustScore", 1001), ("agentDID", "did:key:z6Mk"),
    ("policyViolations", -1), ("lastActivity", "yesterday"),
])
def test_a_bad_status_is_rejected(key: str, value: object) -> None:
    found = errors({**SAMPLE, "status": {**STATUS, key: value}})
    assert any(e.startswith(f"status.{key}:") for e in found), found


def _nodes(node: Doc, path: str = "") -> Iterator[tuple[str, Doc]]:
    yield path or "(root)", node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _nodes(node[key], f"{path}[{key}]")


def test_the_schema_is_structural() -> None:
    untyped = [path for path, node in _nodes(_version()["schema"]["openAPIV3Schema"])
               if "type" not in node and not node.get("x-kubernetes-int-or-string")
               and not node.get("x-kubernetes-preserve-unknown-fields")]
    assert untyped == []


def test_kubectl_get_prints_phase_trust_and_violations() -> None:
    columns = {c["name"]: c["jsonPath"] for c in _version()["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Trust"] == ".status.trustScore"
    assert columns["Violations"] == ".status.policyViolations"
