"""Policy decisions on tool calls. Every decision is counted; a denial lowers the agent's
trust score and is audited in the same transaction."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request

from mesh import events
from mesh.api.common import body_schema, mesh_of, read_body
from mesh.api.models import DecisionRequest
from mesh.auth import authenticate
from mesh.errors import NotFound
from mesh.policy import decide
from mesh.store import records

router = APIRouter(tags=["policy"])
log = logging.getLogger("mesh.policy")


@router.post("/v1/policy/decide", openapi_extra=body_schema(DecisionRequest))
async def decide_tool_call(request: Request) -> dict[str, Any]:
    body = await read_body(request, DecisionRequest)
    mesh = mesh_of(request)
    caller = await authenticate(mesh, request, subject=body.did)
    started = time.perf_counter()
    agent = caller.agent or await mesh.agents.get(body.did)
    if agent is None:
        raise NotFound(f"no agent {body.did}", field="body.did")
    decision = decide(agent, body.tool, body.action, mesh.settings.policy_denylist)
    trust = agent["trust_score"]
    policy = agent["policy"]
    if not decision.allowed:
        penalty = -mesh.settings.violation_penalty
        now = time.time()
        new = await mesh.store.call(
            "change_trust",
            records.change_trust(
                body.did,
                caller.actor,
                now,
                delta=penalty,
                reason=decision.reason,
                rule=decision.rule,
            ),
            write=True,
        )
        mesh.agents.drop(body.did)
        trust = trust if new is None else new
        mesh.metrics.violations.labels(policy, decision.rule).inc()
        mesh.metrics.appended("policy.violation")
        mesh.events.publish(
            events.violation(
                body.did, policy, decision.rule, body.tool, body.action, now, mesh.node
            )
        )
        if new is not None:
            mesh.events.publish(
                events.trust_changed(body.did, new, decision.reason, now, mesh.node)
            )
    elif policy == "permissive":
        log.info(
            "permissive allow", extra={"did": body.did, "tool": body.tool, "action": body.action}
        )
    mesh.metrics.tool_calls.labels(policy, decision.decision).inc()
    mesh.metrics.decision_duration.labels(policy).observe(time.perf_counter() - started)
    return {
        "decision": decision.decision,
        "rule": decision.rule,
        "reason": decision.reason,
        "policy": policy,
        "trust_score": trust,
        # A sidecar may reuse an allowed decision this long (never a denial).
        "ttl_seconds": mesh.settings.decision_ttl_seconds if decision.allowed else 0,
    }
