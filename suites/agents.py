"""A client that talks to a live mesh as agents do: it holds their keys, signs their writes,
and deregisters every agent it registered when the suites end, so a validated deployment keeps
no test agents behind."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

import httpx

from meshsre.identity import AgentKey

__all__ = ["SPONSOR", "MeshClient"]

SPONSOR = "meshsre-suites@example.com"


class MeshClient:
    def __init__(self, http: httpx.Client, admin_token: str | None = None) -> None:
        self.http = http
        self.admin_token = admin_token
        self.registered: list[AgentKey] = []

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def signed(self, key: AgentKey, method: str, path: str,
               body: dict[str, Any] | None = None) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = {**key.headers(method, path, raw), "content-type": "application/json"}
        return self.http.request(method, path, content=raw, headers=headers)

    def register(self, policy: str = "standard",
                 capabilities: list[str] | None = None) -> AgentKey:
        key = AgentKey.generate()
        name = f"suite-{uuid.uuid4().hex[:8]}"
        r = self.http.post("/v1/agents", json=key.registration(
            name, SPONSOR, capabilities or ["search"], policy))
        if r.status_code != 201:
            raise AssertionError(f"registration answered {r.status_code}: {r.text[:300]}")
        self.registered.append(key)
        return key

    def handshake(self, verifier: AgentKey, peer: AgentKey) -> httpx.Response:
        ch = self.signed(verifier, "POST", "/v1/handshakes/challenge", {"did": peer.did})
        if ch.status_code != 201:
            raise AssertionError(f"challenge answered {ch.status_code}: {ch.text[:300]}")
        c = ch.json()
        return self.http.post("/v1/handshakes/verify", json={
            "challenge_id": c["challenge_id"], "did": peer.did,
            "signature": peer.sign_challenge(c["challenge_id"], c["nonce"]),
        })

    def wait_until_rejected(self, token: str, timeout: float = 5.0) -> dict[str, Any]:
        """Verify ``token`` until some replica behind the target rejects it (revocation
        propagates between replicas; the SLO is well under the 5 s allowed here)."""
        deadline = time.monotonic() + timeout
        while True:
            verdict: dict[str, Any] = self.http.post(
                "/v1/credentials/verify", json={"token": token}).json()
            if not verdict.get("valid") or time.monotonic() > deadline:
                return verdict
            time.sleep(0.05)

    def exercise(self, spread: int = 1) -> None:
        """Every kind of event the SLOs count: registrations, handshakes, allowed and denied
        decisions, a credential issued, verified and revoked. ``spread`` repeats the cheap
        ones, so that behind a load balancer most replicas see each kind: a counter that is
        new on a replica shows no increase until a later scrape sees it grow."""
        keys = [self.register() for _ in range(max(2, spread))]
        a, b = keys[0], keys[1]
        for _ in range(spread):
            verified = self.handshake(a, b)
            assert verified.status_code == 200, verified.text
            r = self.signed(a, "POST", "/v1/policy/decide",
                            {"did": a.did, "tool": "search", "action": "query"})
            assert r.status_code == 200, r.text
            # A fourth request: with three replicas in round robin, the next handshake's
            # verify then lands on another replica than this one's.
            self.http.get(f"/v1/agents/{b.did}")
        r = self.signed(a, "POST", "/v1/policy/decide",
                        {"did": a.did, "tool": "shell", "action": "exec"})
        assert r.status_code == 200, r.text
        cred = self.signed(b, "POST", "/v1/credentials", {"did": b.did, "ttl_seconds": 60})
        assert cred.status_code == 201, cred.text
        token, jti = cred.json()["token"], cred.json()["jti"]
        self.http.post("/v1/credentials/verify", json={"token": token})
        r = self.signed(b, "POST", f"/v1/credentials/{jti}/revoke", {"reason": "superseded"})
        assert r.status_code == 200, r.text
        self.wait_until_rejected(token)

    def cleanup(self) -> None:
        for key in self.registered:
            # A target that went away has nothing left to clean; a 404 means already gone.
            with contextlib.suppress(httpx.HTTPError):
                self.signed(key, "DELETE", f"/v1/agents/{key.did}")
        self.registered.clear()
