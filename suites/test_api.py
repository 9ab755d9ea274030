"""The api suite: health, OpenAPI, authentication, input validation and the full agent flow,
against a live mesh (`--target`). Agents it registers are deregistered at the end."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from mesh.telemetry import ROUTES
from meshsre.identity import AGENT_HEADER, AgentKey, proof_message
from suites.agents import SPONSOR, MeshClient

UNKNOWN_DID = "did:mesh:" + "0" * 32
JSON = {"content-type": "application/json"}


def _error(r: httpx.Response, status: int | tuple[int, ...]) -> dict[str, object]:
    """The response is the expected 4xx with the error contract's JSON body."""
    allowed = (status,) if isinstance(status, int) else status
    assert r.status_code in allowed, f"{r.request.method} {r.request.url.path}: {r.status_code}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    return dict(body)


def test_liveness_and_readiness_answer_200(mesh: MeshClient) -> None:
    live = mesh.http.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "ok", live.text
    ready = mesh.http.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text


def test_the_openapi_document_lists_every_api_route(mesh: MeshClient) -> None:
    r = mesh.http.get("/openapi.json")
    assert r.status_code == 200, r.status_code
    paths = set(r.json()["paths"])
    missing = sorted(route for route in ROUTES if route.startswith("/v1/") and route not in paths)
    assert not missing, f"routes missing from /openapi.json: {missing}"


def test_writes_without_credentials_are_rejected_with_401(mesh: MeshClient) -> None:
    for method, path, body in (
        ("POST", "/v1/handshakes/challenge", {"did": UNKNOWN_DID}),
        ("POST", "/v1/policy/decide", {"did": UNKNOWN_DID, "tool": "search", "action": "read"}),
        ("POST", "/v1/credentials", {"did": UNKNOWN_DID, "ttl_seconds": 60}),
        ("DELETE", f"/v1/agents/{UNKNOWN_DID}", None),
        ("PUT", f"/v1/agents/{UNKNOWN_DID}/trust", {"score": 900}),
    ):
        r = mesh.http.request(method, path, json=body)
        _error(r, 401)
    _error(mesh.http.get("/v1/audit"), 401)
    _error(mesh.http.get("/v1/audit", headers={"Authorization": "Bearer not-the-token"}), 401)


def test_forged_writes_are_rejected(mesh: MeshClient) -> None:
    victim, intruder = mesh.register(), mesh.register()
    # A registration whose proof another key made.
    stranger, forger = AgentKey.generate(), AgentKey.generate()
    ts = int(time.time())
    body = stranger.registration("forged", SPONSOR, timestamp=ts)
    body["proof"] = forger.sign(proof_message(stranger.public_b64, ts))
    _error(mesh.http.post("/v1/agents", json=body), 401)
    assert mesh.http.get(f"/v1/agents/{stranger.did}").status_code == 404
    # A write claiming the victim, signed with the intruder's key.
    raw = json.dumps({"did": victim.did, "ttl_seconds": 60}).encode()
    headers = {**intruder.headers("POST", "/v1/credentials", raw), AGENT_HEADER: victim.did}
    _error(mesh.http.post("/v1/credentials", content=raw, headers={**headers, **JSON}), 401)
    # A correctly signed intruder acting on the victim.
    _error(mesh.signed(intruder, "DELETE", f"/v1/agents/{victim.did}"), 403)
    # A signature replayed on another path.
    raw = json.dumps({"did": victim.did}).encode()
    headers = victim.headers("POST", "/v1/handshakes/challenge", raw)
    _error(mesh.http.post("/v1/credentials", content=raw, headers={**headers, **JSON}), 401)
    assert mesh.http.get(f"/v1/agents/{victim.did}").status_code == 200


@pytest.mark.parametrize(("content", "status"), [
    (b"{not json", 400),
    (b"[1, 2]", (400, 422)),
    (json.dumps({"public_key": "AA==", "timestamp": 0, "proof": "AA==", "name": "n",
                 "sponsor": "not-an-email"}).encode(), 422),
    (json.dumps({"public_key": "AA==", "timestamp": 0, "proof": "AA==", "name": "n",
                 "sponsor": "a@b.co", "policy": "lenient"}).encode(), 422),
    (b"x" * (64 * 1024 + 1), 413),
], ids=["malformed-json", "not-an-object", "bad-sponsor", "unknown-policy", "over-64-kib"])
def test_bad_input_gets_a_4xx_json_error(mesh: MeshClient, content: bytes,
                                         status: int | tuple[int, ...]) -> None:
    _error(mesh.http.post("/v1/agents", content=content, headers=JSON), status)


def test_unknown_agents_and_routes_get_404_json(mesh: MeshClient) -> None:
    _error(mesh.http.get(f"/v1/agents/{UNKNOWN_DID}"), 404)
    _error(mesh.http.get("/v1/no-such-route"), 404)


def test_register_handshake_decide_credential_revoke_flow(mesh: MeshClient) -> None:
    verifier = mesh.register()
    peer = mesh.register(policy="standard", capabilities=["search"])
    record = mesh.http.get(f"/v1/agents/{peer.did}").json()
    assert (record["did"], record["sponsor"], record["policy"]) == (peer.did, SPONSOR, "standard")

    first = mesh.handshake(verifier, peer)
    assert first.status_code == 200 and first.json()["verified"] is True, first.text
    assert first.json()["trust_score"] == record["trust_score"]

    allow = mesh.signed(peer, "POST", "/v1/policy/decide",
                        {"did": peer.did, "tool": "search", "action": "query"})
    assert allow.status_code == 200 and allow.json()["decision"] == "allow", allow.text
    deny = mesh.signed(peer, "POST", "/v1/policy/decide",
                       {"did": peer.did, "tool": "shell", "action": "exec"})
    assert deny.status_code == 200 and deny.json()["decision"] == "deny", deny.text

    issued = mesh.signed(peer, "POST", "/v1/credentials", {"did": peer.did, "ttl_seconds": 120})
    assert issued.status_code == 201, issued.text
    cred = issued.json()
    assert cred["expires_at"] - cred["issued_at"] == 120
    verdict = mesh.http.post("/v1/credentials/verify", json={"token": cred["token"]}).json()
    assert verdict["valid"] is True and verdict["claims"]["sub"] == peer.did, verdict
    revoked = mesh.signed(peer, "POST", f"/v1/credentials/{cred['jti']}/revoke",
                          {"reason": "superseded"})
    assert revoked.status_code == 200, revoked.text
    # Through a load balancer the next verify may reach another replica: allow it to converge.
    verdict = mesh.wait_until_rejected(cred["token"])
    assert (verdict["valid"], verdict["reason"]) == (False, "revoked"), verdict

    gone = mesh.signed(peer, "DELETE", f"/v1/agents/{peer.did}")
    assert gone.status_code == 200, gone.text
    assert mesh.http.get(f"/v1/agents/{peer.did}").status_code == 404


def test_the_audit_chain_verifies_end_to_end(mesh: MeshClient, admin_token: str) -> None:
    mesh.register()
    check = mesh.http.get("/v1/audit/verify", headers=mesh.admin)
    assert check.status_code == 200, check.text
    body = check.json()
    assert body["ok"] is True and body["first_bad_index"] is None, body
    assert body["length"] > 1, body
