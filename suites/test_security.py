"""The security suite: hostile clients against a live mesh (`--target`), each attack refused.

Replays (on another replica behind the target, of a credential request and of a denied
decision), an unsigned query string, rate limits (per agent, and a flood from this client),
slow-body connections against a normal client's latency, lifecycle holes (credentials after a
deregistration, trust on re-registration, a replayed registration), hostile tokens and
heads, and the audit log: its checkpoint extends the previous run's, and (given the store) a
rewritten, truncated or appended copy of it is caught.
It writes (agents it deregisters at the end, two violations, a few credentials) and
loads the target for about half a minute: 300 slow-body connections held for 8 s, and 2,000
requests at about 600 a second from this client, last, which then waits out its 429s.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from meshsre.identity import AgentKey
from suites.agents import SPONSOR, MeshClient
from suites.attacks import SlowBodies, Timings, decision_sli_from_prometheus, decision_slo, flood
from suites.auditlog import copy_log, meshsre_audit, origin_of, rechained, write_log
from suites.conftest import Targets
from suites.exposition import parse
from suites.prom import Prometheus

JSON = {"content-type": "application/json"}
SERVED_BY = "x-served-by"  # the local front door names the replica that answered


class Captured:
    """One signed request as it went over the wire, to be sent again."""

    def __init__(self, key: AgentKey, path: str, body: dict[str, Any]) -> None:
        self.path, self.raw = path, json.dumps(body).encode()
        self.headers = {**key.headers("POST", path, self.raw), **JSON}

    def send(self, mesh: MeshClient) -> httpx.Response:
        return mesh.http.post(self.path, content=self.raw, headers=self.headers)


def _trust(mesh: MeshClient, key: AgentKey) -> int:
    """The agent's trust, read as a polite client would: after a flood this client's address
    is over the front door's limit for a moment, so a 429 is waited out (Retry-After)."""
    for _ in range(10):
        r = mesh.http.get(f"/v1/agents/{key.did}")
        if r.status_code != 429:
            break
        time.sleep(float(r.headers.get("retry-after", "1")))
    assert r.status_code == 200, r.text
    return int(r.json()["trust_score"])


def _deny(key: AgentKey) -> Captured:
    return Captured(key, "/v1/policy/decide", {"did": key.did, "tool": "shell", "action": "exec"})


def test_a_credential_request_replayed_on_another_replica_is_refused(
    mesh: MeshClient, record_testsuite_property: Any
) -> None:
    agent = mesh.register()
    mint = Captured(agent, "/v1/credentials", {"did": agent.did, "ttl_seconds": 60})
    first = mint.send(mesh)
    assert first.status_code == 201, first.text
    replays = [mint.send(mesh) for _ in range(6)]
    assert [r.status_code for r in replays] == [409] * 6, [r.text for r in replays]
    assert {r.json()["error"] for r in replays} == {"replayed"}
    origin = first.headers.get(SERVED_BY)
    others = sorted({r.headers.get(SERVED_BY, "") for r in replays} - {"", origin or ""})
    record_testsuite_property("security.replay.minted_by", origin or "unknown")
    record_testsuite_property("security.replay.refused_by", ",".join(others) or "unknown")
    if origin is not None:
        assert others, f"every replay reached {origin}: no second replica behind the target"


def test_a_denied_decision_replayed_lowers_trust_once(mesh: MeshClient) -> None:
    agent = mesh.register()
    denied = _deny(agent)
    assert denied.send(mesh).json()["trust_score"] == 490
    assert {denied.send(mesh).status_code for _ in range(20)} == {409}
    assert _trust(mesh, agent) == 490


def test_the_query_string_is_signed(mesh: MeshClient) -> None:
    agent = mesh.register()
    raw = json.dumps({"did": agent.did}).encode()
    headers = {**agent.headers("POST", "/v1/handshakes/challenge?via=suite", raw), **JSON}
    moved = mesh.http.post("/v1/handshakes/challenge?via=elsewhere", content=raw,
                           headers=headers)
    assert (moved.status_code, moved.json().get("field")) == (401, "header.x-mesh-signature")


def test_an_agent_over_its_rate_limit_gets_429_and_loses_no_trust(
    mesh: MeshClient, record_testsuite_property: Any
) -> None:
    agent = mesh.register()
    allowed = {"did": agent.did, "tool": "search", "action": "query"}
    sent, r = 0, None
    while sent < 2000 and (r is None or r.status_code == 200):
        r = mesh.signed(agent, "POST", "/v1/policy/decide", allowed)
        sent += 1
    assert r is not None
    record_testsuite_property("security.agent_rate.signed_requests_before_429", sent)
    assert r.status_code == 429, f"no 429 after {sent} signed requests: {r.status_code}"
    assert r.json()["error"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert _trust(mesh, agent) == 500


def test_deregistering_revokes_credentials_and_registering_again_keeps_trust(
    mesh: MeshClient,
) -> None:
    agent = mesh.register()
    assert _deny(agent).send(mesh).json()["trust_score"] == 490
    issued = mesh.signed(agent, "POST", "/v1/credentials", {"did": agent.did, "ttl_seconds": 300})
    token = issued.json()["token"]
    gone = mesh.signed(agent, "DELETE", f"/v1/agents/{agent.did}")
    assert gone.status_code == 200, gone.text
    verdict = mesh.wait_until_rejected(token)
    assert verdict["valid"] is False and verdict["reason"] in ("revoked", "unknown_subject")
    time.sleep(1.1)  # a proof dated after the deregistration
    again = mesh.http.post("/v1/agents", json=agent.registration("suite-again", SPONSOR))
    assert (again.status_code, again.json().get("trust_score")) == (201, 490), again.text


def test_a_registration_replayed_after_a_deregistration_is_refused(mesh: MeshClient) -> None:
    key = AgentKey.generate()
    captured = key.registration("suite-replayed", SPONSOR)
    assert mesh.http.post("/v1/agents", json=captured).status_code == 201
    mesh.registered.append(key)
    assert mesh.signed(key, "DELETE", f"/v1/agents/{key.did}").status_code == 200
    replayed = mesh.http.post("/v1/agents", json=captured)
    assert (replayed.status_code, replayed.json().get("field")) == (401, "body.timestamp")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_hostile_tokens_are_judged_without_a_server_error(mesh: MeshClient) -> None:
    agent = mesh.register()
    token = mesh.signed(agent, "POST", "/v1/credentials", {"did": agent.did}).json()["token"]
    head, payload, sig = token.split(".")
    nested = _b64url(b"[" * 2800)
    for hostile in (f"{nested}.{payload}.{sig}", f"{head}.{nested}.{sig}",
                    f"{head}=.{payload}.{sig}", token.replace(".", "..", 1)):
        r = mesh.http.post("/v1/credentials/verify", json={"token": hostile})
        assert r.status_code == 200, f"{hostile[:40]}...: {r.status_code} {r.text[:200]}"
        assert r.json()["valid"] is False


def test_an_oversized_request_head_is_refused(mesh: MeshClient) -> None:
    parts = urlsplit(str(mesh.http.base_url))
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as sock:
        sock.sendall(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        answer = b""
        try:
            for _ in range(64):  # up to 1 MiB, until the server answers or hangs up
                sock.sendall(b"a" * 16384)
        except OSError:
            pass  # hung up on: refused
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            answer = sock.recv(4096)
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/") else b"closed"
    assert status in (b"431", b"400", b"closed"), answer[:200]
    assert mesh.http.get("/health/live").status_code == 200


def _normal_client(mesh: MeshClient, agents: list[AgentKey], seconds: float) -> Timings:
    """Decisions and reads at about 50 a second, each agent well inside its rate limit."""
    timings, n = Timings(), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        agent = agents[n % len(agents)]
        started = time.perf_counter()
        if n % 2:
            r = mesh.http.get(f"/v1/agents/{agent.did}")
            kind = "read"
        else:
            r = mesh.signed(agent, "POST", "/v1/policy/decide",
                            {"did": agent.did, "tool": "search", "action": "query"})
            kind = "decide"
        timings.add(kind, r.status_code, time.perf_counter() - started)
        n += 1
        time.sleep(max(0.0, 0.02 - (time.perf_counter() - started)))
    return timings


def _checkpoint_args(mesh_url: str, out: Path, previous: Path | None) -> list[str]:
    args = ["checkpoint", "--url", mesh_url, "--out", str(out)]
    return args + (["--previous", str(previous)] if previous is not None else [])


def test_the_audit_log_extends_the_checkpoint_of_the_previous_run(
    mesh: MeshClient, mesh_url: str, admin_token: str, targets: Targets, tmp_path: Path,
    record_testsuite_property: Any,
) -> None:
    """The checkpoint kept from the last run (--audit-checkpoint) must be extended by today's
    log, proven by an RFC 9162 consistency proof, or the log lost or changed entries."""
    kept = Path(targets.audit_checkpoint) if targets.audit_checkpoint else None
    current = mesh.http.get("/v1/audit/checkpoint", headers=mesh.admin)
    assert current.status_code == 200, current.text
    origin = current.json()["origin"]
    previous = kept if kept is not None and kept.exists() and origin_of(kept) == origin else None
    fresh = tmp_path / "audit-checkpoint.json"
    done = meshsre_audit(*_checkpoint_args(mesh_url, fresh, previous), token=admin_token)
    assert done.returncode == 0, done.stderr
    size = json.loads(fresh.read_text())["size"]
    record_testsuite_property("security.checkpoint.size", str(size))
    record_testsuite_property("security.checkpoint.previous_size", str(
        json.loads(previous.read_text())["size"]) if previous is not None
        else "none (first run of this log)")
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(fresh, kept)


def _checkpoint_covering(mesh: MeshClient, entries: int, timeout: float = 20.0) -> int:
    """Waits until the mesh's signed checkpoint covers ``entries`` entries (replicas sign one
    every audit check, 5 s by default); the size it covers."""
    deadline = time.monotonic() + timeout
    while True:
        r = mesh.http.get("/v1/audit/checkpoint", headers=mesh.admin)
        size = int(r.json()["size"]) if r.status_code == 200 else 0
        if size >= entries or time.monotonic() > deadline:
            return size
        time.sleep(0.5)


def test_a_tampered_or_truncated_audit_log_is_detected(
    mesh: MeshClient, mesh_url: str, admin_token: str, targets: Targets, tmp_path: Path,
    record_testsuite_property: Any,
) -> None:
    """With the database (the local platform, or --audit-storage): a copy of the log,
    rewritten with every hash recomputed, truncated, or with a forged entry appended, is
    checked against the mesh's signed checkpoint and the log key's signature of each entry,
    which the forger lacks. The live store is only read."""
    if not targets.audit_storage:
        pytest.skip("no database access: pass --audit-storage URL (the local cluster's is"
                    " found through MESHSRE_STATE_DIR)")
    for _ in range(4):  # entries enough to tamper with, on a fresh mesh too
        mesh.register()
    covered = _checkpoint_covering(mesh, 5)
    assert covered >= 5, f"no checkpoint covers 5 entries after 20 s (it covers {covered})"
    checkpoint = tmp_path / "checkpoint.json"
    done = meshsre_audit(*_checkpoint_args(mesh_url, checkpoint, None), token=admin_token)
    assert done.returncode == 0, done.stderr
    size = int(json.loads(checkpoint.read_text())["size"])
    log = copy_log(targets.audit_storage)[:size]
    target = size // 2
    forged = replace(log[target], data='{"forged":true}')
    cases = {
        "intact": log,
        "rewritten": rechained([*log[:target], forged, *log[target + 1:]]),
        "truncated": log[:size - 3],
        # The forged entry copies the last one's signature: the only one a forger can get.
        "appended": rechained([*log, replace(log[-1], action="agent.registered",
                                             subject="did:mesh:forged")]),
    }
    found: dict[str, list[tuple[str, int]]] = {}
    for name, entries in cases.items():
        url = write_log(tmp_path / f"{name}.db", entries)
        report = meshsre_audit("verify", "--storage", url, "--checkpoint", str(checkpoint),
                               "--json")
        assert report.stdout, report.stderr
        found[name] = [(f["kind"], f["index"]) for f in json.loads(report.stdout)["findings"]]
        assert report.returncode == (0 if name == "intact" else 1), found
    assert found == {"intact": [], "rewritten": [("rewritten", target), ("signature", target)],
                     "truncated": [("truncated", size - 3)],
                     "appended": [("unwitnessed", size), ("signature", size)]}, found
    record_testsuite_property("security.audit_tamper.detected", json.dumps(found))


def test_slow_body_clients_hold_no_one_else_up(
    mesh: MeshClient, targets: Targets, record_testsuite_property: Any
) -> None:
    # Every request of a normal client must be served while 300 slow-body connections are
    # held; and its decisions' latency, judged as the SLO judges it (in the server), must meet
    # the objective over the attack: from /metrics when the target is one process, else from
    # Prometheus. Its own p99, seen from here, is recorded beside it.
    agents = [mesh.register() for _ in range(10)]
    threshold, objective = decision_slo()
    single = _one_process(mesh)
    before = _normal_client(mesh, agents, 5.0)
    served = _decisions(mesh) if single else None
    with SlowBodies(str(mesh.http.base_url), 300) as slow:
        started = time.monotonic()
        during = _normal_client(mesh, agents, 8.0)
        held, attack_s = slow.open_now, time.monotonic() - started
    if served is not None:
        within, total = (now - then for now, then in zip(_decisions(mesh), served, strict=True))
        sli, basis = (within / total if total else None), "the target's /metrics"
    elif targets.prometheus:
        sli, basis = decision_sli_from_prometheus(targets.prometheus, attack_s), "Prometheus"
    else:
        sli, basis = None, "not measured: several processes behind the target, no --prometheus"
    figures: dict[str, object] = {
        "slow_connections_held": held, "p99_decide_ms_before": before.p99_ms("decide"),
        "p99_decide_ms_during": during.p99_ms("decide"),
        "p99_read_ms_during": during.p99_ms("read"), "requests_during": len(during.statuses),
        "server_decisions_within_slo": "n/a" if sli is None else round(sli, 4),
        "server_decisions_basis": basis}
    for name, value in figures.items():
        record_testsuite_property(f"security.slow_bodies.{name}", value)
    assert held >= 290, f"only {held} slow connections were held open"
    assert not during.failures(), f"the normal client got {sorted(set(during.failures()))}"
    assert sli is None or sli >= objective, (
        f"{sli:.2%} of decisions within {threshold * 1000:g} ms in the server during the"
        f" attack (the SLO: {objective:.0%}, from {basis}); {figures}")


def _decisions(mesh: MeshClient) -> tuple[float, float]:
    """(decisions within the SLO's threshold, all decisions) so far, from /metrics."""
    threshold, _ = decision_slo()
    family = parse(mesh.http.get("/metrics").text)["agentmesh_policy_decision_duration_seconds"]
    within = total = 0.0
    for sample in family.samples:
        if sample.name.endswith("_bucket") and float(sample.labels["le"]) == threshold:
            within += sample.value
        elif sample.name.endswith("_count"):
            total += sample.value
    return within, total


def _one_process(mesh: MeshClient) -> bool:
    starts = set()
    for _ in range(3):
        with httpx.Client(base_url=mesh.http.base_url, timeout=5) as fresh:
            family = parse(fresh.get("/metrics").text).get("process_start_time_seconds")
            starts.add(family.samples[0].value if family and family.samples else None)
    return len(starts) == 1 and None not in starts


def _requests(mesh: MeshClient, code: str) -> float:
    family = parse(mesh.http.get("/metrics").text)["agentmesh_api_request_duration_seconds"]
    return sum(s.value for s in family.samples
               if s.name.endswith("_count") and s.labels.get("code", "").startswith(code))


def test_a_client_hanging_up_mid_body_is_not_a_server_error(
    mesh: MeshClient, targets: Targets, record_testsuite_property: Any,
    request: pytest.FixtureRequest,
) -> None:
    # One process: its own /metrics must count the hang-up as a 499. Several behind a proxy:
    # the hang-up may end at the proxy, which buffers bodies; either way the request counter
    # the availability SLO reads, summed over the replicas by Prometheus, must gain no 5xx.
    if _one_process(mesh):
        counts, basis, settle = (lambda code: _requests(mesh, code)), "/metrics", 0.0
    elif targets.prometheus:
        prom = Prometheus(targets.prometheus)
        request.addfinalizer(prom.close)
        settle = prom.intervals()[0] + 1  # a scrape after whatever happened last

        def counts(code: str) -> float:
            result = prom.query("sum(agentmesh_api_request_duration_seconds_count"
                                f'{{code=~"{code}.*"}}) or vector(0)')
            return float(result[0]["value"][1])

        basis = "Prometheus (several processes behind the target)"
    else:
        pytest.skip("several processes behind the target and no --prometheus: no one count of"
                    " their requests to read (pass --prometheus URL)")
    # Read now, not a scrape later: an earlier 5xx would only make this check stricter.
    hung, errors = counts("499"), counts("5")
    parts = urlsplit(str(mesh.http.base_url))
    for _ in range(3):
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5) as s:
            s.sendall(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.2)
    if settle:
        time.sleep(settle)
    else:
        deadline = time.monotonic() + 5
        while counts("499") < hung + 3:
            assert time.monotonic() < deadline, "the hang-ups were never recorded as 499"
            time.sleep(0.1)
    record_testsuite_property("security.hang_up.recorded_499", counts("499") - hung)
    record_testsuite_property("security.hang_up.basis", basis)
    assert counts("5") == errors, f"hanging up mid-body counted as a server error ({basis})"


def test_a_flood_from_one_client_gets_429_with_retry_after(
    mesh: MeshClient, record_testsuite_property: Any
) -> None:
    # Last: it spends this client's allowance, and waits for it to come back.
    answers = flood(lambda: mesh.http.get("/v1/agents", params={"limit": 1}), 2000, 600.0)
    limited = [r for r in answers if r.status_code == 429]
    record_testsuite_property("security.flood.requests", len(answers))
    record_testsuite_property("security.flood.answered_429", len(limited))
    assert limited, f"no 429 among {len(answers)} requests at about 600/s from one client"
    assert all(int(r.headers.get("retry-after", "0")) >= 1 for r in limited)
    assert {r.status_code for r in answers} <= {200, 429}
    deadline = time.monotonic() + 15
    while mesh.http.get("/v1/agents", params={"limit": 1}).status_code == 429:
        assert time.monotonic() < deadline, "still limited 15 s after the flood"
        time.sleep(0.5)

