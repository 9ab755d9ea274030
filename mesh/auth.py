"""Who is asking: the admin (bearer token) or an agent (Ed25519-signed request headers).

A signed request covers method, path, timestamp and a digest of the body; it is accepted for
``proof_max_age_seconds`` either side of the server's clock.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from mesh.errors import Forbidden, Unauthorized
from mesh.runtime import Mesh
from meshsre import identity

__all__ = ["ADMIN", "Caller", "authenticate"]

ADMIN = "admin"


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
            f"{identity.TIMESTAMP_HEADER}, {identity.SIGNATURE_HEADER}) or send the admin token",
            field="header.x-mesh-agent",
        )
    if subject is not None and did != subject:
        raise Forbidden(f"agent {did} may not act for {subject}", field="header.x-mesh-agent")
    ts_text = request.headers.get(identity.TIMESTAMP_HEADER, "")
    if not re.fullmatch(r"-?[0-9]{1,12}", ts_text):
        raise Unauthorized("timestamp header must be unix seconds", field="header.x-mesh-timestamp")
    if abs(time.time() - int(ts_text)) > mesh.settings.proof_max_age_seconds:
        raise Unauthorized(
            "signed request is older than 5 minutes (or from the future)",
            field="header.x-mesh-timestamp",
        )
    try:
        signature = identity.b64decode(request.headers.get(identity.SIGNATURE_HEADER, ""))
    except ValueError as exc:
        raise Unauthorized(
            "signature header is not valid base64", field="header.x-mesh-signature"
        ) from exc
    agent = await mesh.agents.get(did)
    if agent is None:
        raise Unauthorized(f"unknown agent {did}", field="header.x-mesh-agent")
    message = identity.request_message(
        request.method, request.url.path, int(ts_text), await request.body()
    )
    public_key = identity.b64decode(agent["public_key"])
    if not identity.verify(public_key, signature, message):
        raise Unauthorized(
            "request signature does not verify with the agent's key",
            field="header.x-mesh-signature",
        )
    return Caller(did, agent)
