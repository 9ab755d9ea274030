"""The mesh's event stream on a real NATS JetStream: what a mesh process publishes after each
change, and that events made while NATS is away are stored once it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import DeliverPolicy

from mesh import events
from mesh.process import ADMIN_TOKEN, MeshProcess, NatsServer
from meshsre.identity import AgentKey
from tests.apiclient import signed
from tests.clusterkit import wait_for
from tests.sidecarkit import sample

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _stored(url: str) -> list[tuple[str, events.Event]]:
    async def read() -> list[tuple[str, events.Event]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            count = (await js.stream_info(events.STREAM)).state.messages
            sub = await js.subscribe(events.SUBJECTS, ordered_consumer=True,
                                     deliver_policy=DeliverPolicy.ALL)
            out = []
            for _ in range(count):
                msg = await sub.next_msg(timeout=2)
                out.append((msg.subject, events.decode(msg.data)))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def test_each_change_is_published_with_its_subject_and_commit_time(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "js") as ns, \
            MeshProcess(f"sqlite:///{tmp_path / 'm.db'}", nats=ns.url) as mesh, \
            mesh.client() as c:
        key = AgentKey.generate()
        assert c.post("/v1/agents", json=key.registration("a", "o@example.com")).status_code == 201
        cred = c.post("/v1/credentials", json={"did": key.did}, headers=ADMIN).json()
        revoked = c.post(f"/v1/credentials/{cred['jti']}/revoke", headers=ADMIN,
                         json={"reason": "key_compromise"}).json()
        signed(c, key, "POST", "/v1/policy/decide", {"did": key.did, "tool": "shell",
                                                     "action": "exec"})
        c.put(f"/v1/agents/{key.did}/trust", headers=ADMIN, json={"score": 650})
        signed(c, key, "DELETE", f"/v1/agents/{key.did}")
        wait_for(lambda: len(_stored(ns.url)) >= 6, timeout=15, every=0.2)  # + a checkpoint
        stored = _stored(ns.url)
        metrics = c.get("/metrics").text
    agent = [(s, e) for s, e in stored if e.did == key.did]
    assert [e.kind for _, e in agent] == ["credential.revoked", "policy.violation",
                                          "trust.changed", "trust.changed",
                                          "agent.deregistered"]
    assert all(s == f"mesh.events.agent.{key.did}.{e.kind}" for s, e in agent)
    first = agent[0][1]
    assert first.data == {"jti": cred["jti"], "reason": "key_compromise"}
    assert first.at == revoked["revoked_at"] and first.node == "a/0"
    assert agent[1][1].data == {"policy": "standard", "rule": "standard.denylist",
                                "tool": "shell", "action": "exec"}
    assert [e.data["trust_score"] for _, e in agent[2:4]] == [490, 650]
    checkpoints = [e for s, e in stored if s == events.CHECKPOINT_SUBJECT]
    assert checkpoints and checkpoints[-1].data["length"] >= 1
    assert sample(metrics, "agentmesh_event_published_total", kind="credential.revoked",
                  result="ok") == 1
    assert sample(metrics, "agentmesh_event_stream_up") == 1


def test_events_made_while_nats_is_down_are_stored_once_it_is_back(tmp_path: Path) -> None:
    ns = NatsServer(tmp_path / "js").start()
    try:
        with MeshProcess(f"sqlite:///{tmp_path / 'm.db'}", nats=ns.url) as mesh, \
                mesh.client() as c:
            key = AgentKey.generate()
            c.post("/v1/agents", json=key.registration("a", "o@example.com"))
            wait_for(lambda: sample(c.get("/metrics").text, "agentmesh_event_stream_up") == 1)
            ns.stop()
            wait_for(lambda: sample(c.get("/metrics").text, "agentmesh_event_stream_up") == 0)
            jtis = []
            for _ in range(3):
                cred = c.post("/v1/credentials", json={"did": key.did}, headers=ADMIN).json()
                r = c.post(f"/v1/credentials/{cred['jti']}/revoke", headers=ADMIN, json={})
                assert r.status_code == 200  # the mesh does not wait for its stream
                jtis.append(cred["jti"])
            ns.start()
            wait_for(lambda: sample(c.get("/metrics").text, "agentmesh_event_published_total",
                                    kind="credential.revoked", result="ok") == 3, timeout=15)
            retried = sample(c.get("/metrics").text, "agentmesh_event_published_total",
                             kind="credential.revoked", result="retried")
        revoked = [e.data["jti"] for _, e in _stored(ns.url) if e.kind == "credential.revoked"]
        assert revoked == jtis  # in order, each once
        assert retried is None or retried >= 1
    finally:
        ns.stop()


def test_an_event_names_its_kind_and_refuses_a_did_that_cannot_be_a_subject() -> None:
    event = events.trust_changed("did:mesh:" + "a" * 32, 300, "x", 1.0, "a/0")
    assert events.decode(event.encode()) == event
    with pytest.raises(events.EventError):
        events.trust_changed("did:mesh:a.b", 300, "x", 1.0, "a/0")
    with pytest.raises(events.EventError):
        events.decode(b'{"kind": "made.up", "at": 1, "node": "x", "did": null, "data": {},'
                      b' "id": "1"}')
