"""Agent registry: register with a proof of possession, read, list, deregister, set trust."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from mesh import events
from mesh.api.common import body_schema, decode_b64, mesh_of, read_body
from mesh.api.models import Registration, TrustUpdate
from mesh.auth import authenticate
from mesh.errors import Conflict, NotFound, Unauthorized
from mesh.runtime import Mesh
from mesh.store import records
from meshsre import identity

router = APIRouter(tags=["agents"])
NEW_AGENT_TRUST = 500
# Path text reaches the store: PostgreSQL text cannot hold U+0000.
DidPath = Annotated[str, Path(max_length=100, pattern=r"^[^\x00]*$")]


@router.post("/v1/agents", status_code=201, openapi_extra=body_schema(Registration))
async def register(request: Request) -> JSONResponse:
    body = await read_body(request, Registration)
    mesh = mesh_of(request)
    public_key = decode_b64(body.public_key, "body.public_key", 32)
    proof = decode_b64(body.proof, "body.proof", 64)
    if not mesh.settings.in_window(body.timestamp, time.time()):
        raise Unauthorized(
            "proof timestamp is older than 5 minutes or ahead of the server's clock",
            field="body.timestamp",
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
        record["trust_score"] = await _register_again(mesh, record, body.timestamp)
    mesh.metrics.appended("agent.registered")
    # Encoded here: FastAPI's jsonable_encoder walk of the record cost about 2% of a
    # registration (py-spy under `make bench`), for a dict of plain values.
    return JSONResponse(record, status_code=201)


async def _register_again(mesh: Mesh, record: dict[str, Any], proof_at: int) -> int:
    """The trust score of a deregistered agent registering again with the same key."""
    did = record["did"]
    outcome, value = await mesh.store.call(
        "reregister_agent", records.reregister_agent(record, proof_at, did), write=True
    )
    if outcome == "stale":
        raise Unauthorized(
            f"the proof was signed before agent {did} was deregistered (at {value:.0f}):"
            " sign a new one",
            field="body.timestamp",
        )
    if outcome != "registered":
        raise Conflict(f"agent {did} is already registered", field="body.public_key")
    return int(value)


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
    revoked = await mesh.store.call(
        "deregister_agent",
        records.deregister_agent(did, caller.actor, now, notify=mesh.store.backend == "postgresql"),
        write=True,
    )
    mesh.agents.drop(did)
    if revoked is None:
        raise NotFound(f"no agent {did}", field="path.did")
    for jti in revoked:
        await mesh.revocations.publish(jti, now)
    if revoked:
        mesh.metrics.revoked.labels(records.DEREGISTERED_REASON).inc(len(revoked))
    mesh.metrics.appended("agent.deregistered")
    # Sidecars drop the agent's credentials and decisions on this event: no event per jti.
    mesh.events.publish(events.deregistered(did, now, mesh.node))
    return {"did": did, "deleted": True, "revoked_credentials": revoked}


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
    mesh.metrics.appended("trust.changed")
    mesh.events.publish(events.trust_changed(did, score, body.reason, now, mesh.node))
    return {"did": did, "trust_score": score}
