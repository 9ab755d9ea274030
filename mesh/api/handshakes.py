"""Challenge-response handshakes. The verifier reads the trust score from the registry, never
from the peer, and a challenge answers once: a second answer is a replay."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mesh.api.common import body_schema, decode_b64, mesh_of, read_body
from mesh.api.credentials import judge
from mesh.api.models import ChallengeRequest, VerifyHandshake
from mesh.auth import authenticate
from mesh.errors import NotFound
from mesh.policy import MIN_TRUST
from mesh.store import records
from meshsre import identity

router = APIRouter(tags=["handshakes"])


@router.post(
    "/v1/handshakes/challenge", status_code=201, openapi_extra=body_schema(ChallengeRequest)
)
async def challenge(request: Request) -> dict[str, Any]:
    body = await read_body(request, ChallengeRequest)
    mesh = mesh_of(request)
    await authenticate(mesh, request)
    if await mesh.agents.get(body.did) is None:
        raise NotFound(f"no agent {body.did}", field="body.did")
    now = time.time()
    challenge_id, nonce = uuid.uuid4().hex, secrets.token_hex(32)
    expires_at = now + mesh.settings.challenge_ttl_seconds
    await mesh.store.call(
        "create_challenge",
        records.create_challenge(challenge_id, body.did, nonce, expires_at, now),
        write=True,
    )
    return {"challenge_id": challenge_id, "nonce": nonce, "did": body.did, "expires_at": expires_at}


@router.post(
    "/v1/handshakes/verify",
    responses={403: {"description": "handshake rejected"}},
    openapi_extra=body_schema(VerifyHandshake),
)
async def verify(request: Request) -> Any:
    body = await read_body(request, VerifyHandshake)
    mesh = mesh_of(request)
    signature = decode_b64(body.signature, "body.signature")
    result, agent = await _judge(body, signature, mesh_of(request))
    mesh.metrics.handshakes.labels(result).inc()
    if result != "success":
        return JSONResponse(
            status_code=403,
            content={
                "error": "handshake_rejected",
                "reason": result,
                "verified": False,
                "message": f"handshake rejected: {result.replace('_', ' ')}",
            },
        )
    assert agent is not None
    return {
        "verified": True,
        "did": body.did,
        "trust_score": agent["trust_score"],
        "policy": agent["policy"],
    }


async def _judge(
    body: VerifyHandshake, signature: bytes, mesh: Any
) -> tuple[str, dict[str, Any] | None]:
    now = time.time()
    row = await mesh.store.call("get_challenge", records.get_challenge(body.challenge_id))
    if row is None:
        return "unknown_challenge", None
    did, nonce, expires_at, used_at = row
    if used_at is not None:
        return "replayed", None
    if expires_at < now:
        return "expired", None
    if did != body.did:
        return "bad_signature", None
    agent = await mesh.agents.get(did)
    if agent is None:
        return "unknown_agent", None
    message = identity.handshake_message(body.challenge_id, nonce, did)
    if not identity.verify(identity.b64decode(agent["public_key"]), signature, message):
        return "bad_signature", None
    if agent["trust_score"] < MIN_TRUST[agent["policy"]]:
        return "low_trust", None
    if body.credential is not None:
        verdict = await judge(mesh, body.credential)
        if not verdict.valid or verdict.claims.get("sub") != did:
            return ("revoked" if verdict.reason == "revoked" else "bad_signature"), None
    consumed = await mesh.store.call(
        "consume_challenge", records.consume_challenge(body.challenge_id, now), write=True
    )
    return ("success", agent) if consumed else ("replayed", None)
