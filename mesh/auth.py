"""Who is asking: the admin (bearer token) or an agent (Ed25519-signed request headers).

A signed request covers method, path, query string, timestamp, nonce and a digest of the
body (``meshsre.identity.request_message``). It is accepted once: at most
``proof_max_age_seconds`` old, at most ``future_skew_seconds`` ahead of the server's clock,
and with a nonce no replica has accepted before (``mesh.replay``). Then the agent's rate
limit applies (``mesh.limits``): after the signature, so that no one else can spend it.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from mesh.errors import Forbidden, MeshError, RateLimited, Unauthorized
from mesh.runtime import Mesh
from meshsre import identity

__all__ = ["ADMIN", "Caller", "authenticate"]

ADMIN = "admin"
_TIMESTAMP = re.compile(r"-?[0-9]{1,12}")
_NONCE = re.compile(identity.NONCE_PATTERN)


@dataclass(frozen=True)
class Caller:
    actor: str  # "admin" or the agent's DID
    agent: dict[str, Any] | None  # the signing agent's record, already read

    @property
    def is_admin(self) -> bool:
        return self.actor == ADMIN


def _is_admin(mesh: Mesh, request: Request) -> bool:
    header = request.headers.get("authorization", "")
    token = mesh.settings.admin_token
    if token is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), token.get_secret_value().encode())


async def authenticate(
    mesh: Mesh, request: Request, subject: str | None = None, admin_only: bool = False
) -> Caller:
    """Admin, or the agent ``subject`` (any registered agent when ``subject`` is None)."""
    if _is_admin(mesh, request):
        return Caller(ADMIN, None)
    if admin_only:
        raise Unauthorized(
            "this endpoint needs the admin bearer token", field="header.authorization"
        )
    did = request.headers.get(identity.AGENT_HEADER)
    if not did:
        raise Unauthorized(
            f"sign the request as the agent ({identity.AGENT_HEADER}, "
            f"{identity.TIMESTAMP_HEADER}, {identity.NONCE_HEADER}, "
            f"{identity.SIGNATURE_HEADER}) or send the admin token",
            field="header.x-mesh-agent",
        )
    if subject is not None and did != subject:
        raise Forbidden(f"agent {did} may not act for {subject}", field="header.x-mesh-agent")
    agent = await _verified(mesh, request, did)
    wait = await mesh.limits.wait("agent", did, time.time())
    if wait > 0:
        mesh.metrics.rejected.labels("agent_rate").inc()
        raise RateLimited(
            f"agent {did} is over its rate limit of {mesh.settings.rate_limit_per_minute}"
            f" signed requests a minute; retry after {math.ceil(wait)} s",
            retry_after=wait,
        )
    return Caller(did, agent)


def _refused(mesh: Mesh, result: str, message: str, field: str) -> Unauthorized:
    mesh.metrics.signed_requests.labels(result).inc()
    return Unauthorized(message, field=field)


async def _verified(mesh: Mesh, request: Request, did: str) -> dict[str, Any]:
    """The signing agent's record, once the request is shown to be its own and new."""
    headers, settings = request.headers, mesh.settings
    ts_text = headers.get(identity.TIMESTAMP_HEADER, "")
    if not _TIMESTAMP.fullmatch(ts_text):
        raise _refused(
            mesh, "invalid", "timestamp header must be unix seconds", "header.x-mesh-timestamp"
        )
    timestamp = int(ts_text)
    if not settings.in_window(timestamp, time.time()):
        raise _refused(
            mesh,
            "expired",
            "signed request is older than 5 minutes, or dated ahead of the server's clock by"
            f" more than {settings.future_skew_seconds} s",
            "header.x-mesh-timestamp",
        )
    nonce = headers.get(identity.NONCE_HEADER, "")
    if not _NONCE.fullmatch(nonce):
        raise _refused(
            mesh,
            "invalid",
            "nonce header must be 16 to 64 characters of A-Z, a-z, 0-9, _ or -, new for"
            " every request",
            "header.x-mesh-nonce",
        )
    try:
        signature = identity.b64decode(headers.get(identity.SIGNATURE_HEADER, ""))
    except ValueError:
        raise _refused(
            mesh, "invalid", "signature header is not valid base64", "header.x-mesh-signature"
        ) from None
    agent = await mesh.agents.get(did)
    if agent is None:
        raise _refused(mesh, "unknown_agent", f"unknown agent {did}", "header.x-mesh-agent")
    scope = request.scope
    message = identity.request_message(
        scope["method"],
        scope["path"],
        scope["query_string"].decode("latin-1"),
        timestamp,
        nonce,
        await request.body(),
    )
    if not identity.verify(identity.b64decode(agent["public_key"]), signature, message):
        raise _refused(
            mesh,
            "bad_signature",
            "request signature does not verify with the agent's key",
            "header.x-mesh-signature",
        )
    try:
        await mesh.replays.claim(did, nonce, timestamp + settings.proof_max_age_seconds + 1)
    except MeshError as exc:
        mesh.metrics.signed_requests.labels("replayed" if exc.status == 409 else "unchecked").inc()
        raise
    mesh.metrics.signed_requests.labels("accepted").inc()
    return agent
