"""The telemetry contract holds: every metric it lists is exposed, with its type and labels,
and nothing carries a per-agent label."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mesh.process import MeshProcess
from mesh.telemetry import CONTRACT, LATENCY_BUCKETS, exposed_names, spec
from tests.apiclient import handshake, register, signed

# The text format has no gauge-histogram type; such families are exposed as histograms.
TEXT_TYPE = {"gaugehistogram": "histogram"}


def _exercise(client: httpx.Client, admin: dict[str, str]) -> None:
    a, b = register(client), register(client)
    handshake(client, a, b)
    signed(client, a, "POST", "/v1/policy/decide", {"did": a.did, "tool": "shell",
                                                     "action": "exec"})
    cred = signed(client, a, "POST", "/v1/credentials", {"did": a.did}).json()
    client.post("/v1/credentials/verify", json={"token": cred["token"]})
    signed(client, a, "POST", f"/v1/credentials/{cred['jti']}/revoke", {"reason": "superseded"})
    client.get("/v1/audit/verify", headers=admin)
    client.post("/v1/agents", content=b"x" * 70000)


def test_every_contract_metric_is_exposed_with_its_type_and_labels(
    mesh: MeshProcess, admin: dict[str, str]
) -> None:
    with mesh.client() as client:
        _exercise(client, admin)
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for metric in CONTRACT:
        if metric.name == "agentmesh_revocation_propagation_seconds":
            continue  # observed only when another replica revokes: see test_replicas
        family = families.get(metric.name)
        assert family is not None, f"{metric.name} not exposed"
        assert family.type == TEXT_TYPE.get(metric.kind, metric.kind), metric.name
        if family.samples:  # a labelled counter with no events yet has no samples
            labels = {k for s in family.samples for k in s.labels} - {"le"}
            assert labels == set(metric.labels), (metric.name, labels)
    assert families["agentmesh_requests_rejected"].samples  # the 70 kB body was refused


def test_no_metric_is_labelled_per_agent() -> None:
    for metric in CONTRACT:
        assert not {"did", "agent", "agent_did", "jti"} & set(metric.labels), metric.name


def test_the_policy_slo_threshold_is_a_bucket_boundary() -> None:
    assert 0.005 in LATENCY_BUCKETS
    assert spec("agentmesh_policy_decision_duration_seconds").buckets == LATENCY_BUCKETS
    assert 5.0 in spec("agentmesh_revocation_propagation_seconds").buckets


def test_exposed_names_follow_prometheus_suffix_rules() -> None:
    names = exposed_names()
    assert "agentmesh_handshake_total" in names
    assert "agentmesh_api_request_duration_seconds_bucket" in names
    assert "agentmesh_registry_size" in names
