"""Requests for the benchmark, built before the clock starts: keys, proofs and signatures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from meshsre.identity import AgentKey


def _line(method: str, path: str, body: bytes, headers: dict[str, str]) -> str:
    return "\t".join([method, path, body.decode(), *(f"{k}={v}" for k, v in headers.items())])


def registration_requests(path: Path, count: int) -> Path:
    with path.open("w") as out:
        for i in range(count):
            key = AgentKey.generate()
            body = json.dumps(key.registration(f"bench-{i}", "bench@example.com", ["http"]))
            out.write(_line("POST", "/v1/agents", body.encode(), {}) + "\n")
    return path


def _register(client: httpx.Client, policy: str = "standard") -> AgentKey:
    key = AgentKey.generate()
    r = client.post(
        "/v1/agents", json=key.registration("bench", "bench@example.com", ["http"], policy)
    )
    r.raise_for_status()
    return key


def decision_requests(url: str, paths: list[Path], agents: int, requests: int) -> list[Path]:
    """Files of signed allow decisions spread over many agents, ``requests`` in each, every
    one with a nonce of its own (signatures stay valid 5 minutes)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        keys = [_register(client) for _ in range(agents)]
    now = int(time.time())
    for path in paths:
        with path.open("w") as out:
            for i in range(requests):
                key = keys[i % agents]
                body = json.dumps({"did": key.did, "tool": "http", "action": "get"}).encode()
                headers = key.headers("POST", "/v1/policy/decide", body, now)
                out.write(_line("POST", "/v1/policy/decide", body, headers) + "\n")
    return paths


def handshake_latencies(url: str, count: int) -> list[float]:
    """Client-side latency of a whole handshake: challenge, then verify."""
    with httpx.Client(base_url=url, timeout=10) as client:
        verifier, peer = _register(client), _register(client)
        latencies = []
        for _ in range(count):
            body = json.dumps({"did": peer.did}).encode()
            start = time.perf_counter()
            ch = client.post(
                "/v1/handshakes/challenge",
                content=body,
                headers={
                    **verifier.headers("POST", "/v1/handshakes/challenge", body),
                    "content-type": "application/json",
                },
            ).json()
            r = client.post(
                "/v1/handshakes/verify",
                json={
                    "challenge_id": ch["challenge_id"],
                    "did": peer.did,
                    "signature": peer.sign_challenge(ch["challenge_id"], ch["nonce"]),
                },
            )
            latencies.append(time.perf_counter() - start)
            r.raise_for_status()
    return latencies
