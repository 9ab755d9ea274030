"""Small helpers to talk to a real mesh as an agent would (signed JSON requests)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from meshsre.identity import AgentKey


def signed(client: httpx.Client, key: AgentKey, method: str, path: str,
           body: dict[str, Any] | None = None) -> httpx.Response:
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {**key.headers(method, path, raw), "content-type": "application/json"}
    return client.request(method, path, content=raw, headers=headers)


def register(client: httpx.Client, policy: str = "standard",
             capabilities: list[str] | None = None) -> AgentKey:
    key = AgentKey.generate()
    r = client.post("/v1/agents", json=key.registration("agent", "ops@example.com",
                                                        capabilities or [], policy))
    assert r.status_code == 201, r.text
    return key


def handshake(client: httpx.Client, verifier: AgentKey, peer: AgentKey) -> httpx.Response:
    ch = signed(client, verifier, "POST", "/v1/handshakes/challenge", {"did": peer.did}).json()
    return client.post("/v1/handshakes/verify", json={
        "challenge_id": ch["challenge_id"], "did": peer.did,
        "signature": peer.sign_challenge(ch["challenge_id"], ch["nonce"]),
    })
