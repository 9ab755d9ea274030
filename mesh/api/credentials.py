"""Short-lived credentials: issue, verify, revoke. Verification consults the replica's
in-memory revocation set, which the fan-out keeps current within the propagation SLO, and the
agent registry: a deregistered agent's credentials are revoked, and fail as its subject."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from mesh import events
from mesh.api.common import body_schema, mesh_of, read_body
from mesh.api.models import CredentialRequest, RevocationRequest, VerifyCredential
from mesh.auth import authenticate
from mesh.credentials import Verdict
from mesh.errors import NotFound
from mesh.runtime import Mesh
from mesh.store import records

router = APIRouter(tags=["credentials"])


async def judge(mesh: Mesh, token: str) -> Verdict:
    """The issuer's verdict, and then whether the subject is a registered agent: a
    credential dies with its agent's registration, whatever its expiry says."""
    settings = mesh.settings
    verdict = mesh.issuer.verify(
        token,
        mesh.revocations.revoked,
        max_ttl_s=settings.credential_max_ttl_seconds,
        skew_s=settings.future_skew_seconds,
    )
    if verdict.valid and await mesh.agents.get(verdict.claims["sub"]) is None:
        return Verdict(False, "unknown_subject", verdict.claims)
    return verdict


@router.post("/v1/credentials", status_code=201, openapi_extra=body_schema(CredentialRequest))
async def issue(request: Request) -> dict[str, Any]:
    body = await read_body(request, CredentialRequest)
    mesh = mesh_of(request)
    caller = await authenticate(mesh, request, subject=body.did)
    if caller.agent is None and await mesh.agents.get(body.did) is None:
        raise NotFound(f"no agent {body.did}", field="body.did")
    credential = mesh.issuer.issue(body.did, body.ttl_seconds)
    await mesh.store.call(
        "insert_credential",
        records.insert_credential(
            credential["jti"], body.did, credential["iat"], credential["exp"], caller.actor
        ),
        write=True,
    )
    mesh.metrics.issued.inc()
    mesh.metrics.appended("credential.issued")
    return {
        "token": credential["token"],
        "jti": credential["jti"],
        "did": body.did,
        "issued_at": credential["iat"],
        "expires_at": credential["exp"],
    }


@router.post("/v1/credentials/verify", openapi_extra=body_schema(VerifyCredential))
async def verify(request: Request) -> dict[str, Any]:
    body = await read_body(request, VerifyCredential)
    mesh = mesh_of(request)
    verdict = await judge(mesh, body.token)
    mesh.metrics.verifications.labels(verdict.reason).inc()
    return {"valid": verdict.valid, "reason": verdict.reason, "claims": verdict.claims}


@router.post("/v1/credentials/{jti}/revoke", openapi_extra=body_schema(RevocationRequest))
async def revoke(
    jti: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    request: Request,
) -> dict[str, Any]:
    body = await read_body(request, RevocationRequest)
    mesh = mesh_of(request)
    row = await mesh.store.call("get_credential", records.get_credential(jti))
    if row is None:
        raise NotFound(f"no credential {jti}", field="path.jti")
    did = row[0]
    caller = await authenticate(mesh, request, subject=did)
    _, revoked_at = await mesh.store.call(
        "revoke_credential",
        records.revoke_credential(
            jti,
            did,
            body.reason,
            caller.actor,
            time.time(),
            notify=mesh.store.backend == "postgresql",
        ),
        write=True,
    )
    await mesh.revocations.publish(jti, revoked_at)
    mesh.events.publish(events.revoked(did, jti, body.reason, revoked_at, mesh.node))
    mesh.metrics.revoked.labels(body.reason).inc()
    mesh.metrics.appended("credential.revoked")
    return {"jti": jti, "did": did, "reason": body.reason, "revoked_at": revoked_at}
