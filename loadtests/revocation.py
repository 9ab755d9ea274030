"""The revocation probes: revoke a credential through one replica, time how long the others
take to reject it (``RevocationProbe``), and how long a governance sidecar keeps presenting
it to its tool (``SidecarProbe``).

The mesh promises that a revocation committed on one replica is enforced by every replica
within the propagation SLO. The probe measures it from outside: issue a credential (admin),
check every replica accepts it, revoke it through one replica, then poll
``/v1/credentials/verify`` on the others until each says ``revoked``. The delay runs from the
revocation's acknowledgement to the first rejecting answer. Plain blocking httpx: it runs in a
Locust greenlet during a load test and in a chaos drill alike.

>>> probe = RevocationProbe(["http://127.0.0.1:1"], admin_token="t")  # doctest: +SKIP
>>> probe.run_once(0)  # doctest: +SKIP
[Propagation(issued_via='http://127.0.0.1:1', replica='http://127.0.0.1:1', seconds=0.002)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from meshsre.identity import AgentKey

__all__ = ["Enforcement", "ProbeError", "Propagation", "RevocationProbe", "SidecarProbe"]


class ProbeError(RuntimeError):
    """The probe could not run (a replica down, a credential refused): no delay measured."""


@dataclass(frozen=True)
class Propagation:
    issued_via: str
    replica: str
    seconds: float | None  # None: still accepted when the probe gave up

    def as_json(self) -> dict[str, object]:
        return {"issued_via": self.issued_via, "replica": self.replica,
                "seconds": None if self.seconds is None else round(self.seconds, 4)}


class RevocationProbe:
    def __init__(self, replicas: Sequence[str], admin_token: str, timeout: float = 10.0,
                 interval: float = 0.01, http_timeout: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not replicas:
            raise ValueError("the revocation probe needs at least one replica URL")
        self.replicas = [r.rstrip("/") for r in replicas]
        self.timeout, self.interval, self.sleep = timeout, interval, sleep
        headers = {"Authorization": f"Bearer {admin_token}"}
        self.clients = {r: httpx.Client(base_url=r, timeout=http_timeout, headers=headers)
                        for r in self.replicas}
        self.key = AgentKey.generate()
        self.registered_at: float | None = None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def _post(self, replica: str, path: str, body: dict[str, object]) -> httpx.Response:
        try:
            return self.clients[replica].post(path, json=body)
        except httpx.HTTPError as exc:
            raise ProbeError(f"{replica}{path}: {type(exc).__name__}: {exc}") from exc

    def _expect(self, r: httpx.Response, status: int, what: str) -> dict[str, object]:
        if r.status_code != status:
            raise ProbeError(f"{what}: HTTP {r.status_code} {r.text[:200]}")
        body: dict[str, object] = r.json()
        return body

    def register(self) -> str:
        """Register the probe's own agent once; returns its DID (an acknowledged write)."""
        if self.registered_at is None:
            body = self.key.registration("revocation-probe", "sre@example.com", [], "standard")
            r = self._post(self.replicas[0], "/v1/agents", body)
            if r.status_code != 409:  # 409: registered by an earlier, interrupted attempt
                self._expect(r, 201, "registering the probe agent")
            self.registered_at = time.time()
        return self.key.did

    def _verdict(self, replica: str, token: str) -> str:
        body = self._expect(self._post(replica, "/v1/credentials/verify", {"token": token}),
                            200, f"verifying on {replica}")
        return "valid" if body.get("valid") else str(body.get("reason"))

    def run_once(self, index: int = 0) -> list[Propagation]:
        """One probe, revoking through replica ``index`` (round robin); one delay per other
        replica (the replica itself when it is the only one)."""
        did = self.register()
        via = self.replicas[index % len(self.replicas)]
        others = [r for r in self.replicas if r != via] or [via]
        issued = self._expect(self._post(via, "/v1/credentials", {"did": did, "ttl_seconds": 120}),
                              201, f"issuing a credential on {via}")
        token, jti = str(issued["token"]), str(issued["jti"])
        for replica in others:
            verdict = self._verdict(replica, token)
            if verdict != "valid":
                raise ProbeError(f"{replica} rejects a fresh credential from {via}: {verdict}")
        self._expect(self._post(via, f"/v1/credentials/{jti}/revoke", {"reason": "superseded"}),
                     200, f"revoking on {via}")
        acknowledged = time.monotonic()
        delays: dict[str, float] = {}
        while len(delays) < len(others) and time.monotonic() - acknowledged < self.timeout:
            for replica in others:
                if replica not in delays and self._verdict(replica, token) == "revoked":
                    delays[replica] = time.monotonic() - acknowledged
            if len(delays) < len(others):
                self.sleep(self.interval)
        return [Propagation(via, r, delays.get(r)) for r in others]


@dataclass(frozen=True)
class Enforcement:
    sidecar: str
    revoked_via: str
    channel: str  # what the sidecar followed when the revocation was made: jetstream, fallback
    seconds: float | None  # None: still presenting the revoked credential when given up

    def as_json(self) -> dict[str, object]:
        return {"sidecar": self.sidecar, "revoked_via": self.revoked_via,
                "channel": self.channel,
                "seconds": None if self.seconds is None else round(self.seconds, 4)}


class SidecarProbe:
    """Revocation-to-enforcement at sidecars: revoke the credential a sidecar presents to its
    tool (read from ``X-Mesh-Credential-Jti`` of a tool call) through a replica, then call
    the tool through the sidecar until the revoked credential is no longer presented. The
    delay runs from the revocation's acknowledgement, as for replicas."""

    def __init__(self, sidecars: Sequence[str], replicas: Sequence[str], admin_token: str,
                 tool: str = "echo", timeout: float = 10.0, interval: float = 0.01,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not sidecars or not replicas:
            raise ValueError("the sidecar probe needs sidecar URLs and replica URLs")
        self.sidecars = [s.rstrip("/") for s in sidecars]
        self.replicas = RevocationProbe(replicas, admin_token, http_timeout=2.0)
        self.path = f"/tools/{tool}/revocation-probe"
        self.timeout, self.interval, self.sleep = timeout, interval, sleep
        self.client = httpx.Client(timeout=2.0, trust_env=False)

    def close(self) -> None:
        self.client.close()
        self.replicas.close()

    def _presented(self, sidecar: str) -> str | None:
        """The jti the tool was given; "" when the sidecar refused the call (it presented
        nothing); None when it did not answer."""
        try:
            r = self.client.get(sidecar + self.path)
        except httpx.HTTPError:
            return None
        return r.headers.get("x-mesh-credential-jti", "")

    def _channel(self, sidecar: str) -> str:
        try:
            return str(self.client.get(sidecar + "/health/ready").json().get("event_stream"))
        except (httpx.HTTPError, ValueError):
            return "unknown"

    def run_once(self, index: int = 0) -> list[Enforcement]:
        """Revoke every sidecar's credential in turn, through replica ``index + i``."""
        out = []
        for i, sidecar in enumerate(self.sidecars):
            via = self.replicas.replicas[(index + i) % len(self.replicas.replicas)]
            jti = self._presented(sidecar)
            if not jti:
                raise ProbeError(f"{sidecar} presents no credential (is it ready?)")
            channel = self._channel(sidecar)
            r = self.replicas._post(via, f"/v1/credentials/{jti}/revoke",
                                    {"reason": "superseded"})
            self.replicas._expect(r, 200, f"revoking {sidecar}'s credential on {via}")
            acknowledged = time.monotonic()
            seconds = None
            while time.monotonic() - acknowledged < self.timeout:
                if (presented := self._presented(sidecar)) is not None and presented != jti:
                    seconds = time.monotonic() - acknowledged
                    break
                self.sleep(self.interval)
            out.append(Enforcement(sidecar, via, channel, seconds))
        return out
