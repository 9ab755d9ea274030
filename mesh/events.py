"""The mesh's event stream: every event type, its subject and its JSON body, in one place.

The mesh publishes to one JetStream stream (``MESH_EVENTS``, file storage, at-least-once);
sidecars read it. Agent events carry the agent in their subject, so a sidecar subscribes to
its own agent only (``mesh.events.agent.<did>.>``):

| kind | subject | data |
| --- | --- | --- |
| ``credential.revoked`` | ``mesh.events.agent.<did>.credential.revoked`` | jti, reason |
| ``agent.deregistered`` | ``mesh.events.agent.<did>.agent.deregistered`` | |
| ``trust.changed`` | ``mesh.events.agent.<did>.trust.changed`` | trust_score, reason |
| ``policy.violation`` | ``mesh.events.agent.<did>.policy.violation`` | policy, rule, tool, action |
| ``audit.checkpoint`` | ``mesh.events.audit.checkpoint`` | length, head |

Every body is ``{id, kind, at, did, node, data}``; ``at`` is the commit time (unix seconds),
so a reader can tell how late it learned of the change, and ``id`` is JetStream's message id
(``Nats-Msg-Id``): a retried publish is stored once.

>>> e = revoked("did:mesh:" + "0" * 32, "ab" * 16, "superseded", 1.5, "a/0")
>>> e.subject
'mesh.events.agent.did:mesh:00000000000000000000000000000000.credential.revoked'
>>> decode(e.encode()) == e
True
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHECKPOINT_SUBJECT",
    "KINDS",
    "REVOKING",
    "STREAM",
    "SUBJECTS",
    "Event",
    "EventError",
    "agent_subjects",
    "checkpoint",
    "decode",
    "deregistered",
    "revoked",
    "trust_changed",
    "violation",
]

STREAM = "MESH_EVENTS"
SUBJECTS = "mesh.events.>"
CHECKPOINT_SUBJECT = "mesh.events.audit.checkpoint"
KINDS = (
    "credential.revoked",
    "agent.deregistered",
    "trust.changed",
    "policy.violation",
    "audit.checkpoint",
)
# Events after which a sidecar may hold nothing it learned before: credentials and decisions.
REVOKING = frozenset({"credential.revoked", "agent.deregistered"})
# A DID becomes a subject token: it must hold no dot, space or wildcard.
_DID = re.compile(r"^did:mesh:[0-9a-f]{32}$")


class EventError(ValueError):
    """A message that is not a mesh event."""


@dataclass(frozen=True)
class Event:
    kind: str
    at: float  # when the change was committed
    node: str  # zone/replica that committed it
    did: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def subject(self) -> str:
        if self.did is None:
            return CHECKPOINT_SUBJECT
        return f"mesh.events.agent.{self.did}.{self.kind}"

    def encode(self) -> bytes:
        body = {
            "id": self.id,
            "kind": self.kind,
            "at": self.at,
            "did": self.did,
            "node": self.node,
            "data": self.data,
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def agent_subjects(did: str) -> str:
    """What a sidecar of agent ``did`` subscribes to."""
    if not _DID.match(did):
        raise EventError(f"not a mesh DID: {did!r}")
    return f"mesh.events.agent.{did}.>"


def decode(raw: bytes) -> Event:
    try:
        body = json.loads(raw)
        event = Event(
            kind=str(body["kind"]),
            at=float(body["at"]),
            node=str(body["node"]),
            did=body["did"],
            data=dict(body["data"]),
            id=str(body["id"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EventError(f"not a mesh event: {raw[:80]!r}") from exc
    if event.kind not in KINDS:
        raise EventError(f"unknown event kind {event.kind!r}")
    return event


def _agent(kind: str, did: str, at: float, node: str, **data: Any) -> Event:
    agent_subjects(did)  # refuses a DID that cannot be a subject token
    return Event(kind, at, node, did, data)


def revoked(did: str, jti: str, reason: str, at: float, node: str) -> Event:
    # Its id is the credential's: the same revocation published twice is stored once.
    return Event(
        "credential.revoked",
        at,
        node,
        did,
        {"jti": jti, "reason": reason},
        id=f"credential.revoked:{jti}",
    )


def deregistered(did: str, at: float, node: str) -> Event:
    return _agent("agent.deregistered", did, at, node)


def trust_changed(did: str, score: int, reason: str, at: float, node: str) -> Event:
    return _agent("trust.changed", did, at, node, trust_score=score, reason=reason)


def violation(
    did: str, policy: str, rule: str, tool: str, action: str, at: float, node: str
) -> Event:
    return _agent(
        "policy.violation", did, at, node, policy=policy, rule=rule, tool=tool, action=action
    )


def checkpoint(length: int, head: str, at: float, node: str) -> Event:
    """The audit log's verified head. Every replica verifies the same chain, so its id is the
    head's: JetStream keeps one event per checkpoint, whoever published it first."""
    return Event(
        "audit.checkpoint",
        at,
        node,
        None,
        {"length": length, "head": head},
        id=f"audit.checkpoint:{length}:{head}",
    )
