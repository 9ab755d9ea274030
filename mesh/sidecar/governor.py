"""What a sidecar knows about its agent's standing in the mesh: allowed decisions it may reuse,
the credential it presents to tools, and whether the mesh answers.

A tool call is authorised by a cached allowed decision, else by asking the mesh. A decision is
kept for its TTL while the event stream runs (the stream is what would say it no longer
holds); while the stream is down, for at most the fallback poll interval, so a trust change is
enforced within that interval, and a busy agent does not turn every call into a decision (and
a rate-limit denial, and a trust penalty). When the mesh
does not answer, a decision held in the cache, even an expired one, is still honoured for the
grace period; past it, or with nothing cached, the call is refused: the sidecar fails closed.
Denials are never cached. ``drop`` is what the event stream (or the fallback poll) calls on a
revocation or a trust change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from mesh.sidecar.settings import SidecarSettings
from mesh.telemetry import SidecarMetrics
from meshsre.identity import AgentKey

__all__ = ["Credential", "Governor", "Refused", "Verdict"]

log = logging.getLogger("mesh.sidecar")
ROTATE_BEFORE_S = 60.0  # a credential is renewed this long before it expires (the PRD's)
REFRESH_AT = 0.8  # share of a decision's TTL after which using it also renews it
_DECIDE = "/v1/policy/decide"


class Refused(Exception):
    """A tool call the sidecar will not forward: an HTTP status and a JSON body."""

    def __init__(
        self,
        status: int,
        code: str,
        outcome: str,
        message: str,
        policy: str = "unknown",
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.outcome, self.policy = status, code, outcome, policy
        self.body = {"error": code, "message": message, **extra}


class MeshUnreachable(Exception):
    pass


@dataclass(frozen=True)
class Verdict:
    outcome: str  # cached, decided, stale
    policy: str
    rule: str


@dataclass(frozen=True)
class Allowed:
    policy: str
    rule: str
    expires: float  # monotonic
    refresh: float  # from then on, a use asks the mesh again in the background


@dataclass(frozen=True)
class Credential:
    token: str
    jti: str
    expires_at: float  # unix


class Governor:
    def __init__(
        self,
        settings: SidecarSettings,
        key: AgentKey,
        metrics: SidecarMetrics,
        session: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.key = key
        self.did = key.did
        self.metrics = metrics
        self.session = session
        self.decisions: dict[tuple[str, str], Allowed] = {}
        self.credential: Credential | None = None
        self.stream_up = False
        self.down_since: float | None = None  # monotonic; None while the mesh answers
        self._issuing: asyncio.Lock = asyncio.Lock()
        self._deciding: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._drops = 0  # bumped by every drop: a decision fetched across one is not kept
        metrics.cached.set_function(lambda: len(self.decisions))
        metrics.fail_closed.set_function(lambda: 1 if self.fail_closed else 0)
        metrics.mesh_reachable.set(0)

    # -- state ---------------------------------------------------------------------------------
    @property
    def fail_closed(self) -> bool:
        down = self.down_since
        return down is not None and time.monotonic() - down > self.settings.grace_seconds

    def status(self) -> dict[str, Any]:
        ready = self.credential is not None and not self.fail_closed
        return {
            "ready": ready,
            "did": self.did,
            "mesh_reachable": self.down_since is None,
            "fail_closed": self.fail_closed,
            "event_stream": "jetstream" if self.stream_up else "fallback",
            "credential_jti": self.credential.jti if self.credential else None,
            "cached_decisions": len(self.decisions),
            "tools": sorted(self.settings.tools),
        }

    def _reached(self, ok: bool) -> None:
        if ok:
            self.down_since = None
        elif self.down_since is None:
            self.down_since = time.monotonic()
        self.metrics.mesh_reachable.set(1 if ok else 0)

    def set_stream(self, up: bool) -> None:
        if not up:
            self.decisions.clear()  # nothing would tell us they stopped holding
            self._drops += 1
        self.stream_up = up
        self.metrics.stream_up.set(1 if up else 0)

    def drop(
        self,
        jti: str | None = None,
        *,
        revoked_at: float | None = None,
        channel: str = "jetstream",
        credential: bool = True,
    ) -> None:
        """Forget every cached decision and (unless only decisions are concerned) the
        credential: all of it, or only if it is ``jti``."""
        self.decisions.clear()
        self._drops += 1
        held = self.credential
        if credential and held is not None and (jti is None or held.jti == jti):
            self.credential = None
            if revoked_at is not None:
                self.metrics.enforcement.labels(channel).observe(max(0.0, time.time() - revoked_at))
            log.info("credential %s dropped (%s)", held.jti, channel)
            asyncio.get_running_loop().create_task(self._renew_quietly())

    # -- the mesh ------------------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        signed: bool = True,
        traceparent: str | None = None,
    ) -> tuple[int, Any]:
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if signed:
            headers.update(self.key.headers(method, path, raw))
        if traceparent:
            headers["traceparent"] = traceparent  # the mesh's span joins the agent's trace
        wait = aiohttp.ClientTimeout(total=self.settings.decision_timeout_seconds)
        try:
            async with self.session.request(
                method,
                self.settings.mesh_url + path,
                data=raw or None,
                headers=headers,
                timeout=wait,
            ) as resp:
                answer = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._reached(False)
            raise MeshUnreachable(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status == 429:
            self._reached(False)
            raise MeshUnreachable(f"HTTP {status}")
        self._reached(True)
        return status, answer

    async def ping(self) -> None:
        with contextlib.suppress(MeshUnreachable):
            await self._call("GET", "/health/ready", signed=False)

    async def register(self) -> None:
        s = self.settings
        if s.register_name is None:
            return
        body = self.key.registration(
            s.register_name, s.register_sponsor, list(s.register_capabilities), s.register_policy
        )
        status, answer = await self._call("POST", "/v1/agents", body, signed=False)
        if status not in (201, 409):
            raise ValueError(f"registering {self.did}: HTTP {status} {answer}")

    async def _issue(self) -> Credential:
        body = {"did": self.did, "ttl_seconds": self.settings.credential_ttl_seconds}
        status, answer = await self._call("POST", "/v1/credentials", body)
        if status in (401, 403, 404):
            raise Refused(
                403,
                "agent_revoked",
                "revoked",
                f"the mesh refuses to credential agent {self.did}: {answer.get('message')}",
            )
        if status != 201:
            raise MeshUnreachable(f"issuing a credential: HTTP {status}")
        return Credential(answer["token"], answer["jti"], float(answer["expires_at"]))

    async def token(self) -> Credential:
        """The credential to present, renewed before it expires; Refused when none can be had."""
        held = self.credential
        if held is not None and held.expires_at - time.time() > ROTATE_BEFORE_S:
            return held
        async with self._issuing:
            held = self.credential
            if held is not None and held.expires_at - time.time() > ROTATE_BEFORE_S:
                return held
            try:
                self.credential = await self._issue()
            except MeshUnreachable as exc:
                if held is not None and held.expires_at > time.time():
                    return held  # still valid: renewal is retried on the next call
                raise Refused(
                    503,
                    "mesh_unreachable",
                    "unreachable",
                    f"no credential and the mesh does not answer ({exc})",
                ) from exc
            return self.credential

    async def _renew_quietly(self) -> None:
        with contextlib.suppress(Refused):
            await self.token()

    async def verify_credential(self) -> None:
        """The fallback poll: ask the mesh whether our credential still holds."""
        held = self.credential
        if held is None:
            await self._renew_quietly()
            return
        with contextlib.suppress(MeshUnreachable):
            status, answer = await self._call(
                "POST", "/v1/credentials/verify", {"token": held.token}, signed=False
            )
            if status == 200 and not answer.get("valid") and answer.get("reason") == "revoked":
                self.drop(held.jti, channel="poll")

    # -- decisions -----------------------------------------------------------------------------
    async def _decide(self, tool: str, action: str, traceparent: str | None) -> dict[str, Any]:
        body = {"did": self.did, "tool": tool, "action": action}
        status, answer = await self._call("POST", _DECIDE, body, traceparent=traceparent)
        if status in (401, 404):
            raise Refused(
                403,
                "agent_revoked",
                "revoked",
                f"the mesh does not know agent {self.did}: {answer.get('message')}",
            )
        if status != 200:
            raise MeshUnreachable(f"HTTP {status}: {answer}")
        return dict(answer)

    async def _shared_decision(
        self,
        key: tuple[str, str],
        traceparent: str | None,
    ) -> dict[str, Any]:
        """One decision in flight per tool and action: concurrent calls wait for it."""
        pending = self._deciding.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._deciding[key] = future
        try:
            answer = await self._decide(*key, traceparent)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            del self._deciding[key]
        future.set_result(answer)
        return answer

    async def authorise(self, tool: str, action: str, traceparent: str | None = None) -> Verdict:
        key = (tool, action)
        if self.fail_closed:
            raise Refused(
                503,
                "mesh_unreachable",
                "unreachable",
                f"fail closed: the mesh has not answered for over"
                f" {self.settings.grace_seconds:g} s",
            )
        held = self.decisions.get(key)
        now = time.monotonic()
        if held is not None and held.expires > now:
            if now >= held.refresh and key not in self._deciding:
                # Refresh ahead: steady traffic never waits for a decision to expire.
                asyncio.get_running_loop().create_task(self._refresh(key, traceparent))
            return Verdict("cached", held.policy, held.rule)
        drops = self._drops
        try:
            answer = await self._shared_decision(key, traceparent)
        except MeshUnreachable as exc:
            if held is not None and not self.fail_closed:
                return Verdict("stale", held.policy, held.rule)
            closed = "fail closed: " if self.fail_closed else ""
            raise Refused(
                503,
                "mesh_unreachable",
                "unreachable",
                f"{closed}the mesh does not answer and no decision is held for"
                f" {tool}:{action} ({exc})",
            ) from exc
        policy, rule = str(answer.get("policy")), str(answer.get("rule"))
        if answer.get("decision") != "allow":
            raise Refused(
                403,
                "denied",
                "denied",
                str(answer.get("reason")),
                policy=policy,
                rule=rule,
                tool=tool,
                action=action,
            )
        if drops == self._drops:  # a drop while it was asked: the answer may predate it
            self._keep(key, answer)
        return Verdict("decided", policy, rule)

    def _keep(self, key: tuple[str, str], answer: dict[str, Any]) -> None:
        ttl = float(answer.get("ttl_seconds") or 0)
        if not self.stream_up:
            ttl = min(ttl, self.settings.fallback_poll_seconds)
        if ttl > 0 and answer.get("decision") == "allow":
            now = time.monotonic()
            self.decisions[key] = Allowed(
                str(answer.get("policy")),
                str(answer.get("rule")),
                now + ttl,
                now + ttl * REFRESH_AT,
            )

    async def _refresh(self, key: tuple[str, str], traceparent: str | None) -> None:
        drops = self._drops
        try:
            answer = await self._shared_decision(key, traceparent)
        except (MeshUnreachable, Refused):
            return  # the held decision runs out on its own; the next call asks again
        if drops == self._drops:  # not if a revocation or trust change came meanwhile
            if answer.get("decision") == "allow":
                self._keep(key, answer)
            else:
                self.decisions.pop(key, None)
