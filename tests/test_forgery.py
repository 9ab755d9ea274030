"""Forgery against a real mesh process: stolen or wrong keys, stale proofs, tampered bodies,
replayed and expired challenges, and audit rows edited or deleted straight in the database."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mesh.audit import canonical, entry_hash
from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre.identity import AGENT_HEADER, AgentKey, proof_message
from tests.apiclient import register, signed

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(mesh: MeshProcess) -> Iterator[httpx.Client]:
    with mesh.client() as c:
        yield c


def _audit_actions(client: httpx.Client, subject: str) -> list[str]:
    entries = client.get("/v1/audit", params={"limit": 1000}, headers=ADMIN).json()["entries"]
    return [e["action"] for e in entries if e["subject"] == subject]


def _gauge(client: httpx.Client, name: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not exposed")


# -- registration proofs ----------------------------------------------------------------


def test_a_registration_whose_proof_is_signed_by_another_key_is_rejected_at_body_proof(
    client: httpx.Client,
) -> None:
    victim, forger = AgentKey.generate(), AgentKey.generate()
    ts = int(time.time())
    body = victim.registration("victim", "ops@example.com", timestamp=ts)
    body["proof"] = forger.sign(proof_message(victim.public_b64, ts))
    r = client.post("/v1/agents", json=body)
    assert (r.status_code, r.json()["field"]) == (401, "body.proof")
    assert client.get(f"/v1/agents/{victim.did}").status_code == 404


@pytest.mark.parametrize("skew", [-360, 360], ids=["six-minutes-old", "six-minutes-ahead"])
def test_a_proof_six_minutes_off_is_rejected_at_body_timestamp(
    client: httpx.Client, skew: int
) -> None:
    key = AgentKey.generate()
    body = key.registration("late", "ops@example.com", timestamp=int(time.time()) + skew)
    r = client.post("/v1/agents", json=body)
    assert (r.status_code, r.json()["field"]) == (401, "body.timestamp")
    assert client.get(f"/v1/agents/{key.did}").status_code == 404


def test_a_proof_for_another_timestamp_does_not_verify(client: httpx.Client) -> None:
    key = AgentKey.generate()
    ts = int(time.time())
    body = key.registration("moved", "ops@example.com", timestamp=ts)
    body["timestamp"] = ts - 1
    r = client.post("/v1/agents", json=body)
    assert (r.status_code, r.json()["field"]) == (401, "body.proof")


# -- signed requests -------------------------------------------------------------------


def test_a_request_claiming_an_agent_but_signed_with_another_key_is_unauthorized(
    client: httpx.Client,
) -> None:
    victim, thief = register(client), register(client)
    raw = json.dumps({"did": victim.did, "ttl_seconds": 900}).encode()
    headers = {**thief.headers("POST", "/v1/credentials", raw), AGENT_HEADER: victim.did}
    r = client.post("/v1/credentials", content=raw, headers={**headers, **JSON})
    assert (r.status_code, r.json()["field"]) == (401, "header.x-mesh-signature")
    assert "credential.issued" not in _audit_actions(client, victim.did)


def test_a_body_changed_after_signing_is_unauthorized(client: httpx.Client) -> None:
    agent = register(client)
    signed_raw = json.dumps({"did": agent.did, "ttl_seconds": 60}).encode()
    sent_raw = json.dumps({"did": agent.did, "ttl_seconds": 900}).encode()
    headers = agent.headers("POST", "/v1/credentials", signed_raw)
    r = client.post("/v1/credentials", content=sent_raw, headers={**headers, **JSON})
    assert (r.status_code, r.json()["field"]) == (401, "header.x-mesh-signature")


def test_a_signature_replayed_on_another_path_is_unauthorized(client: httpx.Client) -> None:
    agent = register(client)
    raw = json.dumps({"did": agent.did}).encode()
    headers = agent.headers("POST", "/v1/handshakes/challenge", raw)
    r = client.post("/v1/credentials", content=raw, headers={**headers, **JSON})
    assert (r.status_code, r.json()["field"]) == (401, "header.x-mesh-signature")


def test_a_signed_request_older_than_five_minutes_is_unauthorized(client: httpx.Client) -> None:
    agent = register(client)
    raw = json.dumps({"did": agent.did, "tool": "search", "action": "query"}).encode()
    headers = agent.headers("POST", "/v1/policy/decide", raw, timestamp=int(time.time()) - 360)
    r = client.post("/v1/policy/decide", content=raw, headers={**headers, **JSON})
    assert (r.status_code, r.json()["field"]) == (401, "header.x-mesh-timestamp")


def test_an_agent_with_a_valid_signature_may_not_act_for_another(client: httpx.Client) -> None:
    victim, other = register(client), register(client)
    r = signed(client, other, "DELETE", f"/v1/agents/{victim.did}")
    assert (r.status_code, r.json()["field"]) == (403, "header.x-mesh-agent")
    assert client.get(f"/v1/agents/{victim.did}").status_code == 200


def test_a_wrong_admin_token_reads_no_audit(client: httpx.Client) -> None:
    r = client.get("/v1/audit/verify", headers={"Authorization": "Bearer not-the-token"})
    assert (r.status_code, r.json()["field"]) == (401, "header.authorization")


# -- handshakes ------------------------------------------------------------------------


def _challenge(client: httpx.Client, verifier: AgentKey, peer: AgentKey) -> dict[str, str]:
    r = signed(client, verifier, "POST", "/v1/handshakes/challenge", {"did": peer.did})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _answer(client: httpx.Client, ch: dict[str, str], signer: AgentKey, did: str
            ) -> httpx.Response:
    return client.post("/v1/handshakes/verify", json={
        "challenge_id": ch["challenge_id"], "did": did,
        "signature": signer.sign_challenge(ch["challenge_id"], ch["nonce"]),
    })


def test_a_challenge_answered_twice_is_rejected_as_replayed(client: httpx.Client) -> None:
    verifier, peer = register(client), register(client)
    ch = _challenge(client, verifier, peer)
    assert _answer(client, ch, peer, peer.did).json()["verified"] is True
    r = _answer(client, ch, peer, peer.did)
    assert (r.status_code, r.json()["reason"]) == (403, "replayed")


def test_a_challenge_answered_with_another_key_is_a_bad_signature(client: httpx.Client) -> None:
    verifier, peer, impostor = register(client), register(client), register(client)
    ch = _challenge(client, verifier, peer)
    # The impostor signs the message for the peer's DID with its own key.
    forged = impostor.sign(f"{ch['challenge_id']}:{ch['nonce']}:{peer.did}".encode())
    r = client.post("/v1/handshakes/verify", json={
        "challenge_id": ch["challenge_id"], "did": peer.did, "signature": forged,
    })
    assert (r.status_code, r.json()["reason"]) == (403, "bad_signature")


def test_a_challenge_answered_after_its_ttl_is_rejected_as_expired(sqlite_url: str) -> None:
    with MeshProcess(sqlite_url, env={"MESH_CHALLENGE_TTL_SECONDS": "1"}) as proc, \
            proc.client() as client:
        verifier, peer = register(client), register(client)
        ch = _challenge(client, verifier, peer)
        time.sleep(1.3)
        r = _answer(client, ch, peer, peer.did)
        assert (r.status_code, r.json()["reason"]) == (403, "expired")


# -- the audit chain, tampered with in the database itself ------------------------------

Tamper = Callable[[str], None]  # runs one SQL statement straight against the store
TAMPERED_SEQ = 2  # genesis is 0; the fixture's registrations are 1, 2, 3, ...


def _sqlite_exec(url: str) -> Tamper:
    def run(sql: str) -> None:
        conn = sqlite3.connect(Path(url.removeprefix("sqlite:///")), timeout=5)
        with conn:
            conn.execute(sql)
        conn.close()

    return run


def _pg_exec(url: str) -> Tamper:
    def run(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    return run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def chained(request: pytest.FixtureRequest, sqlite_url: str
            ) -> Iterator[tuple[httpx.Client, Tamper]]:
    """A mesh checking its chain every 0.5 s, with five registrations already verified."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    tamper = _sqlite_exec(url) if request.param == "sqlite" else _pg_exec(url)
    with MeshProcess(url, env={"MESH_AUDIT_CHECK_SECONDS": "0.5"}) as proc, \
            proc.client() as client:
        for _ in range(5):
            register(client)
        deadline = time.monotonic() + 5
        while _gauge(client, "agentmesh_audit_chain_length") < 6:
            assert time.monotonic() < deadline, "the background check never reached the head"
            time.sleep(0.1)
        assert _gauge(client, "agentmesh_audit_chain_valid") == 1
        assert client.get("/v1/audit/verify", headers=ADMIN).json()["ok"] is True
        yield client, tamper


def test_an_audit_row_edited_in_the_database_is_reported_at_its_seq(
    chained: tuple[httpx.Client, Tamper],
) -> None:
    client, tamper = chained
    tamper(f"UPDATE audit SET data = '{{\"name\":\"nobody\"}}' WHERE seq = {TAMPERED_SEQ}")
    verdict = client.get("/v1/audit/verify", headers=ADMIN).json()
    assert (verdict["ok"], verdict["first_bad_index"], verdict["length"]) == (
        False, TAMPERED_SEQ, 6)


def test_an_audit_row_edited_and_rehashed_is_caught_at_its_own_index(
    chained: tuple[httpx.Client, Tamper],
) -> None:
    # A forger who recomputes the edited row's own hash makes that row self-consistent, but
    # cannot sign the new hash with the log key: its signature fails, at its own index
    # (the hash chain alone breaks only at the next link).
    client, tamper = chained
    entries = client.get("/v1/audit", params={"limit": 10}, headers=ADMIN).json()["entries"]
    row = entries[TAMPERED_SEQ]
    data = canonical({**row["data"], "sponsor": "mallory@example.com"})
    digest = entry_hash(row["seq"], row["ts"], row["actor"], row["action"], row["subject"],
                        data, row["prev_hash"])
    tamper(f"UPDATE audit SET data = '{data}', hash = '{digest}' WHERE seq = {TAMPERED_SEQ}")
    verdict = client.get("/v1/audit/verify", headers=ADMIN).json()
    assert (verdict["ok"], verdict["first_bad_index"], verdict["reason"]) == (
        False, TAMPERED_SEQ, "signature")


def test_an_audit_row_deleted_from_the_database_is_reported_at_its_index(
    chained: tuple[httpx.Client, Tamper],
) -> None:
    client, tamper = chained
    tamper(f"DELETE FROM audit WHERE seq = {TAMPERED_SEQ}")
    verdict = client.get("/v1/audit/verify", headers=ADMIN).json()
    assert (verdict["ok"], verdict["first_bad_index"], verdict["length"]) == (
        False, TAMPERED_SEQ, 5)


@pytest.mark.parametrize("sql", [
    f"UPDATE audit SET actor = 'mallory' WHERE seq = {TAMPERED_SEQ}",
    f"DELETE FROM audit WHERE seq = {TAMPERED_SEQ}",
], ids=["edited", "deleted"])
def test_the_chain_valid_gauge_drops_to_zero_when_a_verified_row_is_tampered_with(
    chained: tuple[httpx.Client, Tamper], sql: str,
) -> None:
    client, tamper = chained
    tamper(sql)
    deadline = time.monotonic() + 3  # six check periods
    while _gauge(client, "agentmesh_audit_chain_valid") != 0:
        assert time.monotonic() < deadline, (
            "agentmesh_audit_chain_valid still 1 three seconds after the chain broke "
            f"(verify says {client.get('/v1/audit/verify', headers=ADMIN).json()})"
        )
        time.sleep(0.1)
