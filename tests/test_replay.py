"""Replayed signed requests, on real mesh processes: refused on the replica that saw them and
on every other one (sharing SQLite, PostgreSQL or Redis), after a restart, and whatever was
replayed; a signed query string, and the future skew."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre.identity import NONCE_HEADER, AgentKey
from tests.apiclient import register
from tests.conftest import REDIS_URL

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"content-type": "application/json"}


class Captured:
    """One signed request as it went over the wire, to be sent again."""

    def __init__(self, key: AgentKey, path: str, body: dict[str, Any]) -> None:
        self.path, self.raw = path, json.dumps(body).encode()
        self.headers = {**key.headers("POST", path, self.raw), **JSON}

    def send(self, client: httpx.Client) -> httpx.Response:
        return client.post(self.path, content=self.raw, headers=self.headers)


def _replicas(storage: str, redis: str | None = None) -> Iterator[tuple[httpx.Client, ...]]:
    with MeshProcess(storage, redis=redis, replica="0") as a, \
            MeshProcess(storage, redis=redis, replica="1") as b, \
            a.client() as ca, b.client() as cb:
        yield ca, cb


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("redis", marks=pytest.mark.redis)])
def pair(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[tuple[httpx.Client, ...]]:
    """Two replicas of one mesh; their nonces in the shared store, or in Redis."""
    if request.param == "postgresql":
        yield from _replicas(request.getfixturevalue("pg_url"))
    else:
        yield from _replicas(sqlite_url, REDIS_URL if request.param == "redis" else None)


def _count(client: httpx.Client, name: str, **labels: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(client.get("/metrics").text)
               for s in f.samples if s.name == name and labels.items() <= s.labels.items())


def test_a_credential_request_replayed_on_another_replica_mints_nothing(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    agent = register(a)
    mint = Captured(agent, "/v1/credentials", {"did": agent.did, "ttl_seconds": 60})
    assert mint.send(a).status_code == 201
    for replica in (b, a, b):
        r = mint.send(replica)
        assert r.status_code == 409, r.text
        assert (r.json()["error"], r.json()["field"]) == ("replayed", "header.x-mesh-nonce")
    issued = [e for e in a.get("/v1/audit", params={"limit": 1000}, headers=ADMIN).json()
              ["entries"] if e["action"] == "credential.issued" and e["subject"] == agent.did]
    assert len(issued) == 1
    assert _count(b, "agentmesh_signed_request_total", result="replayed") == 2


def test_a_decision_replayed_many_times_costs_the_agent_no_trust(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    agent = register(a)
    denied = Captured(agent, "/v1/policy/decide",
                      {"did": agent.did, "tool": "shell", "action": "exec"})
    assert denied.send(a).json()["trust_score"] == 490  # the one real violation
    codes = {denied.send(client).status_code for client in (a, b) * 20}
    assert codes == {409}
    assert b.get(f"/v1/agents/{agent.did}").json()["trust_score"] == 490


def test_a_replica_restarted_still_refuses_a_replay(sqlite_url: str) -> None:
    with MeshProcess(sqlite_url) as proc, proc.client() as client:
        agent = register(client)
        challenge = Captured(agent, "/v1/handshakes/challenge", {"did": agent.did})
        assert challenge.send(client).status_code == 201
    with MeshProcess(sqlite_url) as proc, proc.client() as client:
        assert challenge.send(client).status_code == 409


def test_the_same_nonce_is_fine_for_another_agent_and_a_changed_query_is_unauthorized(
    mesh: MeshProcess,
) -> None:
    with mesh.client() as client:
        first, second = register(client), register(client)
        nonce = "same-nonce-for-two-agents"
        for agent in (first, second):
            raw = json.dumps({"did": agent.did}).encode()
            headers = {**agent.headers("POST", "/v1/handshakes/challenge", raw, nonce=nonce),
                       **JSON}
            r = client.post("/v1/handshakes/challenge", content=raw, headers=headers)
            assert r.status_code == 201, r.text
        raw = json.dumps({"did": first.did}).encode()
        headers = {**first.headers("POST", "/v1/handshakes/challenge?x=1", raw), **JSON}
        r = client.post("/v1/handshakes/challenge?x=2", content=raw, headers=headers)
        assert (r.status_code, r.json()["field"]) == (401, "header.x-mesh-signature")
        r = client.post("/v1/handshakes/challenge?x=1", content=raw, headers=headers)
        assert r.status_code == 201, r.text


@pytest.mark.parametrize(("ahead", "status"), [(5, 201), (30, 401)])
def test_a_request_dated_ahead_is_accepted_only_within_the_skew(
    mesh: MeshProcess, ahead: int, status: int,
) -> None:
    with mesh.client() as client:
        agent = register(client)
        raw = json.dumps({"did": agent.did}).encode()
        headers = {**agent.headers("POST", "/v1/handshakes/challenge", raw,
                                   timestamp=int(time.time()) + ahead), **JSON}
        r = client.post("/v1/handshakes/challenge", content=raw, headers=headers)
        assert r.status_code == status, r.text


def test_a_request_without_a_nonce_is_unauthorized_naming_the_header(mesh: MeshProcess) -> None:
    with mesh.client() as client:
        agent = register(client)
        raw = json.dumps({"did": agent.did}).encode()
        headers = {**agent.headers("POST", "/v1/handshakes/challenge", raw), **JSON}
        del headers[NONCE_HEADER]
        r = client.post("/v1/handshakes/challenge", content=raw, headers=headers)
        assert (r.status_code, r.json()["field"]) == (401, "header.x-mesh-nonce")
