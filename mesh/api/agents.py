"""Agent registry: register with a proof of possession, read, list, deregister, set trust."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from mesh import events
from mesh.api.common import body_schema, decode_b64, mesh_of, read_body
from mesh.api.models import Registration, TrustUpdate
from mesh.auth import authenticate
from mesh.errors import Conflict, NotFound, Unauthorized
from mesh.store import records
from meshsre import identity

router = APIRouter(tags=["agents"])
NEW_AGENT_TRUST = 500
# Path text reaches the store: PostgreSQL text cannot hold U+0000.
DidPath = Annotated[str, Path(max_length=100, pattern=r"^[^\x00]*$")]


@router.post("/v1/agents", status_code=201, openapi_extra=body_schema(Registration))
async def register(request: Request) -> dict[str, Any]:
    body = await read_body(request, Registration)
    mesh = mesh_of(request)
    public_key = decode_b64(body.public_key, "body.public_key", 32)
    proof = decode_b64(body.proof, "body.proof", 64)
    if abs(time.time() - body.timestamp) > mesh.settings.proof_max_age_seconds:
        raise Unauthorized(
            "proof timestamp is more than 5 minutes from now", field="body.timestamp"
        )
    if not identity.verify(
        public_key, proof, identity.proof_message(body.public_key, body.timestamp)
    ):
        raise Unauthorized("proof does not verify with the public key", field="body.proof")
    did = identity.did_for(public_key)
    record = {
        "did": did,
        "public_key": body.public_key,
        "name": body.name,
        "sponsor": body.sponsor,
        "capabilities": body.capabilities,
        "policy": body.policy,
        "trust_score": NEW_AGENT_TRUST,
        "created_at": time.time(),
    }
    try:
        await mesh.store.call("create_agent", records.create_agent(record, did), write=True)
    except Conflict:
        raise Conflict(f"agent {did} is already registered", field="body.public_key") from None
    mesh.metrics.audit_appends.labels("agent.registered").inc()
    return record


@router.get("/v1/agents/{did}")
async def get_agent(did: DidPath, request: Request) -> dict[str, Any]:
    agent = await mesh_of(request).store.call("get_agent", records.get_agent(did))
    if agent is None:
        raise NotFound(f"no agent {did}", field="path.did")
    return agent


@router.get("/v1/agents")
async def list_agents(
    request: Request,
    capability: str | None = Query(default=None, max_length=100),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=100, pattern=r"^[^\x00]*$"),
) -> dict[str, Any]:
    items = await mesh_of(request).store.call(
        "list_agents", records.list_agents(capability, limit, cursor)
    )
    return {"items": items, "next_cursor": items[-1]["did"] if len(items) == limit else None}


@router.delete("/v1/agents/{did}")
async def deregister(did: DidPath, request: Request) -> dict[str, Any]:
    mesh = mesh_of(request)
    caller = await authenticate(mesh, request, subject=did)
    now = time.time()
    deleted = await mesh.store.call(
        "delete_agent", records.delete_agent(did, caller.actor, now), write=True
    )
    mesh.agents.drop(did)
    if not deleted:
        raise NotFound(f"no agent {did}", field="path.did")
    mesh.metrics.audit_appends.labels("agent.deregistered").inc()
    mesh.events.publish(events.deregistered(did, now, mesh.node))
    return {"did": did, "deleted": True}


@router.put("/v1/agents/{did}/trust", openapi_extra=body_schema(TrustUpdate))
async def set_trust(did: DidPath, request: Request) -> dict[str, Any]:
    body = await read_body(request, TrustUpdate)
    mesh = mesh_of(request)
    caller = await authenticate(mesh, request, admin_only=True)
    now = time.time()
    score = await mesh.store.call(
        "change_trust",
        records.change_trust(did, caller.actor, now, score=body.score, reason=body.reason),
        write=True,
    )
    mesh.agents.drop(did)
    if score is None:
        raise NotFound(f"no agent {did}", field="path.did")
    mesh.metrics.audit_appends.labels("trust.changed").inc()
    mesh.events.publish(events.trust_changed(did, score, body.reason, now, mesh.node))
    return {"did": did, "trust_score": score}
