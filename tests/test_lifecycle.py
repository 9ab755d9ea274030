"""An agent's lifecycle holes, closed, on real mesh processes: deregistering revokes its
credentials everywhere; registering the same key again keeps its trust (penalties included);
a registration replayed after a deregistration is refused; and credentials that a holder of
the issuer key could forge (too long-lived, for no agent) are refused though well signed."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from mesh.credentials import Issuer
from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre.identity import AgentKey
from tests.apiclient import register, signed

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SEED = os.urandom(32)


@pytest.fixture
def pair(sqlite_url: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    env = {"MESH_ISSUER_KEY": base64.b64encode(SEED).decode()}
    with MeshProcess(sqlite_url, replica="0", env=env) as a, \
            MeshProcess(sqlite_url, replica="1", env=env) as b, \
            a.client() as ca, b.client() as cb:
        yield ca, cb


def _verdict(client: httpx.Client, token: str) -> str:
    body = client.post("/v1/credentials/verify", json={"token": token}).json()
    return "valid" if body["valid"] else str(body["reason"])


def _until(check: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_deregistering_revokes_the_agents_credentials_on_every_replica(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    agent = register(a)
    tokens = [signed(a, agent, "POST", "/v1/credentials", {"did": agent.did}).json()["token"]
              for _ in range(2)]
    assert [_verdict(b, t) for t in tokens] == ["valid", "valid"]
    r = signed(a, agent, "DELETE", f"/v1/agents/{agent.did}")
    assert r.status_code == 200 and len(r.json()["revoked_credentials"]) == 2, r.text
    _until(lambda: [_verdict(b, t) for t in tokens] == ["revoked", "revoked"])
    entry = a.get("/v1/audit", params={"limit": 1000}, headers=ADMIN).json()["entries"][-1]
    assert (entry["action"], sorted(entry["data"]["revoked"])) == (
        "agent.deregistered", sorted(r.json()["revoked_credentials"]))


def test_registering_the_same_key_again_keeps_its_trust(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    agent = register(a)
    for _ in range(3):  # three violations: 500 -> 470
        signed(a, agent, "POST", "/v1/policy/decide",
               {"did": agent.did, "tool": "shell", "action": "exec"})
    assert signed(a, agent, "DELETE", f"/v1/agents/{agent.did}").status_code == 200
    assert b.get(f"/v1/agents/{agent.did}").status_code == 404
    time.sleep(1.0)  # a proof from a later second than the deregistration
    r = b.post("/v1/agents", json=agent.registration("again", "ops@example.com"))
    assert (r.status_code, r.json()["trust_score"]) == (201, 470), r.text
    assert a.get(f"/v1/agents/{agent.did}").json()["trust_score"] == 470
    r = b.post("/v1/agents", json=agent.registration("twice", "ops@example.com"))
    assert (r.status_code, r.json()["field"]) == (409, "body.public_key")


def test_a_registration_replayed_after_the_deregistration_is_refused(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    key = AgentKey.generate()
    captured = key.registration("victim", "ops@example.com")
    assert a.post("/v1/agents", json=captured).status_code == 201
    assert signed(a, key, "DELETE", f"/v1/agents/{key.did}").status_code == 200
    r = b.post("/v1/agents", json=captured)
    assert (r.status_code, r.json()["field"]) == (401, "body.timestamp"), r.text
    assert b.get(f"/v1/agents/{key.did}").status_code == 404


def test_credentials_signed_with_the_issuer_key_but_too_long_or_for_no_agent_are_refused(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    agent = register(a)
    forger = Issuer(SEED)  # what a stolen key or backup would allow
    assert _verdict(b, forger.issue(agent.did, 900)["token"]) == "valid"
    assert _verdict(b, forger.issue(agent.did, 30 * 86_400)["token"]) == "lifetime_exceeded"
    ahead = forger.issue(agent.did, 900, now=time.time() + 3600)["token"]
    assert _verdict(b, ahead) == "lifetime_exceeded"
    assert _verdict(b, forger.issue("did:mesh:" + "0" * 32, 900)["token"]) == "unknown_subject"
    assert signed(a, agent, "DELETE", f"/v1/agents/{agent.did}").status_code == 200
    late = forger.issue(agent.did, 900)["token"]  # never issued, so never revoked
    _until(lambda: _verdict(b, late) == "unknown_subject")
