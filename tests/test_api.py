"""The HTTP API of a real mesh process, end to end, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from mesh.process import MeshProcess
from meshsre.identity import AgentKey
from tests.apiclient import handshake, register, signed
from tests.conftest import temporary_database


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                                 marks=pytest.mark.postgres)])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[MeshProcess]:
    if request.param == "sqlite":
        with MeshProcess(f"sqlite:///{tmp_path_factory.mktemp('api') / 'mesh.db'}") as proc:
            yield proc
        return
    with temporary_database() as url, MeshProcess(url) as proc:
        yield proc


@pytest.fixture
def client(mesh: MeshProcess) -> httpx.Client:
    with mesh.client() as c:
        yield c  # type: ignore[misc]


def test_registration_derives_the_did_and_starts_trust_at_500(client: httpx.Client) -> None:
    key = AgentKey.generate()
    r = client.post("/v1/agents", json=key.registration("a", "ops@example.com", ["http"]))
    assert r.status_code == 201
    body = r.json()
    assert (body["did"], body["trust_score"], body["policy"]) == (key.did, 500, "standard")
    assert client.get(f"/v1/agents/{key.did}").json()["capabilities"] == ["http"]


def test_a_second_registration_of_the_same_key_is_a_conflict(client: httpx.Client) -> None:
    key = register(client)
    r = client.post("/v1/agents", json=key.registration("again", "ops@example.com"))
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    assert r.json()["field"] == "body.public_key"
    assert r.json()["message"] == f"agent {key.did} is already registered"


@pytest.mark.parametrize(("body", "field"), [
    ({"public_key": "%%%", "timestamp": 0, "proof": "AA==", "name": "n",
      "sponsor": "a@b.co"}, "body.public_key"),
    ({"public_key": "AAAA", "timestamp": 0, "proof": "AA==", "name": "n",
      "sponsor": "a@b.co"}, "body.public_key"),
    ({"public_key": "AA==", "timestamp": "soon", "proof": "AA==", "name": "n",
      "sponsor": "a@b.co"}, "body.timestamp"),
    ({"public_key": "AA==", "timestamp": 0, "proof": "AA==", "name": "n",
      "sponsor": "not-an-email"}, "body.sponsor"),
    ({"public_key": "AA==", "timestamp": 0, "proof": "AA==", "name": "n",
      "sponsor": "a@b.co", "policy": "lenient"}, "body.policy"),
    ({"public_key": "AA==", "timestamp": 0, "proof": "AA==", "name": "n",
      "sponsor": "a@b.co", "extra": 1}, "body.extra"),
])
def test_bad_registrations_name_the_field(client: httpx.Client, body: dict[str, object],
                                          field: str) -> None:
    r = client.post("/v1/agents", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_malformed_json_and_non_objects_get_400_naming_the_body(client: httpx.Client) -> None:
    for raw in (b"{not json", b"[1, 2]"):
        r = client.post("/v1/agents", content=raw, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422)
        assert r.json()["field"].startswith("body")
    r = client.post("/v1/agents", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (400, "malformed_json")


def test_bodies_over_64_kib_are_refused_before_parsing(client: httpx.Client) -> None:
    r = client.post("/v1/agents", content=b"x" * (64 * 1024 + 1),
                    headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (413, "body_too_large")

    def chunks():  # no content-length: the limit applies while streaming
        for _ in range(20):
            yield b"x" * 4096

    r = client.post("/v1/agents", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_listing_pages_with_a_cursor_and_filters_by_capability(client: httpx.Client) -> None:
    tagged = {register(client, capabilities=["listing-test"]).did for _ in range(3)}
    seen, cursor = set(), None
    while True:
        params = {"capability": "listing-test", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/agents", params=params).json()
        seen |= {a["did"] for a in page["items"]}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == tagged


def test_unauthenticated_and_foreign_writes_are_rejected(client: httpx.Client,
                                                         admin: dict[str, str]) -> None:
    victim, intruder = register(client), register(client)
    assert client.delete(f"/v1/agents/{victim.did}").status_code == 401
    r = signed(client, intruder, "DELETE", f"/v1/agents/{victim.did}")
    assert r.status_code == 403
    bad_token = {"Authorization": "Bearer wrong"}
    assert client.put(f"/v1/agents/{victim.did}/trust", json={"score": 900},
                      headers=bad_token).status_code == 401
    assert client.get("/v1/audit", headers=bad_token).status_code == 401
    assert signed(client, victim, "DELETE", f"/v1/agents/{victim.did}").status_code == 200
    assert client.get(f"/v1/agents/{victim.did}").status_code == 404
    assert client.delete(f"/v1/agents/{intruder.did}", headers=admin).status_code == 200


def test_a_handshake_succeeds_once_and_its_replay_is_rejected(client: httpx.Client) -> None:
    verifier, peer = register(client), register(client)
    ch = signed(client, verifier, "POST", "/v1/handshakes/challenge", {"did": peer.did}).json()
    assert len(bytes.fromhex(ch["nonce"])) == 32
    assert 29 <= ch["expires_at"] - time.time() <= 30
    answer = {"challenge_id": ch["challenge_id"], "did": peer.did,
              "signature": peer.sign_challenge(ch["challenge_id"], ch["nonce"])}
    first = client.post("/v1/handshakes/verify", json=answer)
    assert first.status_code == 200 and first.json()["trust_score"] == 500
    again = client.post("/v1/handshakes/verify", json=answer)
    assert (again.status_code, again.json()["reason"]) == (403, "replayed")


def test_handshakes_check_trust_from_the_registry(client: httpx.Client,
                                                  admin: dict[str, str]) -> None:
    verifier, strict = register(client), register(client, policy="strict")
    r = handshake(client, verifier, strict)
    assert (r.status_code, r.json()["reason"]) == (403, "low_trust")
    client.put(f"/v1/agents/{strict.did}/trust", json={"score": 750}, headers=admin)
    assert handshake(client, verifier, strict).status_code == 200


def test_a_signature_by_another_key_fails_the_handshake(client: httpx.Client) -> None:
    verifier, peer, impostor = register(client), register(client), AgentKey.generate()
    ch = signed(client, verifier, "POST", "/v1/handshakes/challenge", {"did": peer.did}).json()
    r = client.post("/v1/handshakes/verify", json={
        "challenge_id": ch["challenge_id"], "did": peer.did,
        "signature": impostor.sign_challenge(ch["challenge_id"], ch["nonce"])})
    assert (r.status_code, r.json()["reason"]) == (403, "bad_signature")


def test_a_revoked_credential_fails_the_handshake(client: httpx.Client,
                                                  admin: dict[str, str]) -> None:
    verifier, peer = register(client), register(client)
    cred = signed(client, peer, "POST", "/v1/credentials", {"did": peer.did}).json()
    signed(client, peer, "POST", f"/v1/credentials/{cred['jti']}/revoke",
           {"reason": "key_compromise"})
    ch = signed(client, verifier, "POST", "/v1/handshakes/challenge", {"did": peer.did}).json()
    r = client.post("/v1/handshakes/verify", json={
        "challenge_id": ch["challenge_id"], "did": peer.did, "credential": cred["token"],
        "signature": peer.sign_challenge(ch["challenge_id"], ch["nonce"])})
    assert (r.status_code, r.json()["reason"]) == (403, "revoked")


def test_a_violation_is_denied_lowers_trust_and_is_audited(client: httpx.Client,
                                                           admin: dict[str, str]) -> None:
    key = register(client)
    allow = signed(client, key, "POST", "/v1/policy/decide",
                   {"did": key.did, "tool": "http", "action": "get"}).json()
    assert (allow["decision"], allow["trust_score"]) == ("allow", 500)
    deny = signed(client, key, "POST", "/v1/policy/decide",
                  {"did": key.did, "tool": "shell", "action": "exec"}).json()
    assert (deny["decision"], deny["rule"], deny["trust_score"]) == \
        ("deny", "standard.denylist", 490)
    entries = client.get("/v1/audit", params={"limit": 1000}, headers=admin).json()["entries"]
    violations = [e for e in entries if e["action"] == "policy.violation"
                  and e["subject"] == key.did]
    assert violations and violations[-1]["data"]["rule"] == "standard.denylist"


def test_credentials_issue_verify_and_revoke(client: httpx.Client) -> None:
    key = register(client)
    r = signed(client, key, "POST", "/v1/credentials", {"did": key.did, "ttl_seconds": 120})
    assert r.status_code == 201
    cred = r.json()
    assert cred["expires_at"] - cred["issued_at"] == 120
    assert client.post("/v1/credentials/verify", json={"token": cred["token"]}).json()["valid"]
    r = signed(client, key, "POST", f"/v1/credentials/{cred['jti']}/revoke",
               {"reason": "superseded"})
    assert r.status_code == 200
    verdict = client.post("/v1/credentials/verify", json={"token": cred["token"]}).json()
    assert (verdict["valid"], verdict["reason"]) == (False, "revoked")
    too_long = signed(client, key, "POST", "/v1/credentials", {"did": key.did,
                                                               "ttl_seconds": 901})
    assert (too_long.status_code, too_long.json()["field"]) == (422, "body.ttl_seconds")


def test_audit_chain_verifies_after_all_of_the_above(client: httpx.Client,
                                                     admin: dict[str, str]) -> None:
    register(client)
    check = client.get("/v1/audit/verify", headers=admin).json()
    assert check["ok"] is True and check["first_bad_index"] is None and check["length"] > 1
    first = client.get("/v1/audit", params={"limit": 1}, headers=admin).json()["entries"][0]
    assert (first["seq"], first["action"]) == (0, "genesis")


def test_health_metrics_and_openapi_are_served(client: httpx.Client) -> None:
    assert client.get("/health/live").json()["status"] == "ok"
    ready = client.get("/health/ready").json()
    assert ready["status"] == "ready"
    spec = client.get("/openapi.json").json()
    assert "/v1/handshakes/verify" in spec["paths"]
    text = client.get("/metrics").text
    assert f'agentmesh_build_info{{backend="{ready["store"]}"' in text


def test_responses_carry_request_and_trace_ids_honouring_traceparent(
    client: httpx.Client,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = client.get("/health/live", headers={
        "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "x-request-id": "req-1"})
    assert r.headers["x-trace-id"] == trace_id
    assert r.headers["x-request-id"] == "req-1"


def test_routing_answers_404_and_405_whatever_the_route_order(client: httpx.Client) -> None:
    # Routes are prefiltered by their literal prefix (mesh.app): these must still hold.
    assert (client.get("/v1/nowhere").status_code, client.get("/v1/nowhere").json()["error"]) \
        == (404, "not_found")
    r = client.get("/v1/policy/decide")  # a POST route, first in the list
    assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")
    assert client.delete("/v1/agents").status_code == 405
    assert client.get("/v1/agents/did:mesh:" + "0" * 32).status_code == 404  # a path parameter
    assert client.get("/openapi.json").status_code == 200  # the docs routes come last
