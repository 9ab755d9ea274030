"""The audit log as a transparency log, on a real mesh over PostgreSQL and Redis: signed
checkpoints and RFC 9162 proofs over the API, a checkpoint file kept by `meshsre audit
checkpoint`, and `meshsre audit verify` finding a consistent rewrite, a truncation and
forged appends in the database, by index, where the hash chain alone sees nothing. A forged
append lacks the log key's signature: the replica refuses to checkpoint over it, too."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from mesh.audit import entry_hash
from mesh.checkpoint import LogVerifier
from mesh.merkle import verify_consistency, verify_inclusion
from mesh.process import ADMIN_TOKEN, MESHSRE, MeshProcess
from tests.apiclient import register
from tests.conftest import REDIS_URL

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AGENTS = 6


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeshProcess, str]]:
    from tests.conftest import temporary_database

    with temporary_database() as url, MeshProcess(
        url, redis=REDIS_URL, env={"MESH_AUDIT_CHECK_SECONDS": "0.2"}
    ) as proc, proc.client() as client:
        for _ in range(AGENTS):
            register(client)
        _until(lambda: _checkpoint(client)["size"] == AGENTS + 1)
        yield proc, url


def _checkpoint(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/v1/audit/checkpoint", headers=ADMIN)
    return r.json() if r.status_code == 200 else {"size": -1}


def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def test_every_entry_has_an_inclusion_proof_to_the_signed_root(
    log: tuple[MeshProcess, str],
) -> None:
    proc, _ = log
    with proc.client() as client:
        assert client.get("/v1/audit/checkpoint").status_code == 401  # admin only
        doc = _checkpoint(client)
        cp = LogVerifier.from_vkey(doc["public_key"]).verify(doc["note"])
        assert cp.size == doc["size"] == AGENTS + 1
        for index in range(cp.size):
            p = client.get("/v1/audit/proof/inclusion", params={"index": index},
                           headers=ADMIN).json()
            assert verify_inclusion(bytes.fromhex(p["leaf_hash"]), index, cp.size,
                                    [bytes.fromhex(h) for h in p["proof"]], cp.root)
        for old in range(1, cp.size + 1):
            p = client.get("/v1/audit/proof/consistency", params={"old": old},
                           headers=ADMIN).json()
            assert verify_consistency(old, cp.size, [bytes.fromhex(h) for h in p["proof"]],
                                      bytes.fromhex(p["old_root"]), cp.root)


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/v1/audit/proof/inclusion", {"index": AGENTS + 1}, "index"),
    ("/v1/audit/proof/inclusion", {"index": 0, "size": 10**6}, "size"),
    ("/v1/audit/proof/inclusion", {"index": -1}, "query.index"),
    ("/v1/audit/proof/inclusion", {"index": "x"}, "query.index"),
    ("/v1/audit/proof/consistency", {"old": 0}, "query.old"),
    ("/v1/audit/proof/consistency", {"old": AGENTS + 5}, "old"),
    ("/v1/audit/entries", {"start": 5, "end": 5}, "end"),
    ("/v1/audit/entries", {"start": 0, "end": 5000}, "end"),
    ("/v1/audit/entries", {"start": 0}, "query.end"),
])
def test_bad_parameters_are_refused_naming_the_field(
    log: tuple[MeshProcess, str], path: str, params: dict[str, Any], field: str
) -> None:
    proc, _ = log
    with proc.client() as client:
        r = client.get(path, params=params, headers=ADMIN)
        assert r.status_code == 422 and r.json()["field"] == field, r.text


def _meshsre(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESHSRE, "audit", *args], capture_output=True, text=True,
                          timeout=60, env={"MESH_ADMIN_TOKEN": ADMIN_TOKEN, "PATH": "/usr/bin"})


def _rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT seq, ts, actor, action, subject, data, prev_hash, hash,"
                            " signature FROM audit ORDER BY seq").fetchall()


def _replace(url: str, rows: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM audit")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO audit VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            rows)


def _rechained(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows with every hash recomputed in order: what an attacker with the database does
    to make the chain verify again. Without the log key, the signatures stay as they were."""
    out, prev = [], "0" * 64
    for seq, ts, actor, action, subject, data, _, _, signature in rows:
        digest = entry_hash(seq, ts, actor, action, subject, data, prev)
        out.append((seq, ts, actor, action, subject, data, prev, digest, signature))
        prev = digest
    return out


def _verify(url: str, checkpoint: Path) -> tuple[int, dict[str, Any]]:
    r = _meshsre("verify", "--storage", url, "--checkpoint", str(checkpoint), "--json")
    return r.returncode, json.loads(r.stdout or "{}") if r.stdout else {"stderr": r.stderr}


def test_offline_verify_names_the_index_of_each_tampering(
    log: tuple[MeshProcess, str], tmp_path: Path
) -> None:
    proc, url = log
    checkpoint = tmp_path / "checkpoint.json"
    r = _meshsre("checkpoint", "--url", proc.url, "--out", str(checkpoint))
    assert r.returncode == 0, r.stderr
    witnessed = json.loads(checkpoint.read_text())
    assert witnessed["signed_from"] == 0  # a fresh store: every entry signed
    assert _verify(url, checkpoint) == (0, {
        "ok": True, "size": AGENTS + 1, "checkpoint_size": AGENTS + 1,
        "checkpoint_time": witnessed["timestamp"], "signatures_checked": True, "findings": []})
    with proc.client() as client:  # a genuine append, signed by the replica
        register(client)
        entries = client.get("/v1/audit/entries", params={"start": AGENTS + 1,
                                                          "end": AGENTS + 2}, headers=ADMIN)
        assert entries.json()["entries"][0]["signature"]
    code, report = _verify(url, checkpoint)
    assert code == 0 and [(f["kind"], f["index"]) for f in report["findings"]] == [
        ("unwitnessed", AGENTS + 1)]
    original = _rows(url)
    size = len(original)
    try:
        # A consistent rewrite: entry 3 changed, every hash after it recomputed.
        forged = [*original[:3], (*original[3][:5], '{"forged":true}', *original[3][6:]),
                  *original[4:]]
        _replace(url, _rechained(forged))
        code, report = _verify(url, checkpoint)
        assert code == 1 and [(f["kind"], f["index"]) for f in report["findings"]] == [
            ("rewritten", 3), ("unwitnessed", AGENTS + 1), ("signature", 3)]
        # The running mesh refuses to sign over it.
        _until(lambda: _metric(proc, "agentmesh_audit_chain_valid") == 0)

        _replace(url, original[:-3])  # the tail truncated
        code, report = _verify(url, checkpoint)
        assert code == 1 and [(f["kind"], f["index"]) for f in report["findings"]] == [
            ("truncated", size - 3)]

        _replace(url, original)
        _until(lambda: _metric(proc, "agentmesh_audit_chain_valid") == 1)
        seq, ts, actor, _, _, data, _, digest, _ = original[-1]
        appended = _rechained([*original, (seq + 1, ts + 1, actor, "agent.registered",
                                           "did:mesh:forged", data, digest, "", None)])
        _replace(url, appended)  # an entry forged at the end, chain recomputed
        code, report = _verify(url, checkpoint)
        assert code == 1 and [(f["kind"], f["index"]) for f in report["findings"]] == [
            ("unwitnessed", AGENTS + 1), ("unsigned", size)]
        # Online: the replica's walk fails at the forged entry, and no checkpoint covers it.
        _until(lambda: _metric(proc, "agentmesh_audit_chain_valid") == 0)
        with proc.client() as client:
            walk = client.get("/v1/audit/verify", headers=ADMIN).json()
            assert (walk["ok"], walk["first_bad_index"], walk["reason"]) == (
                False, size, "unsigned")
            assert _checkpoint(client)["size"] <= size
        assert f"audit entry {size} fails verification: no signature" in proc.output()
    finally:
        _replace(url, original)


def _metric(proc: MeshProcess, name: str) -> float:
    text = httpx.get(proc.url + "/metrics", timeout=5).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def test_after_a_deliberate_restore_an_admin_resets_the_witness(
    log: tuple[MeshProcess, str],
) -> None:
    proc, url = log
    original = _rows(url)
    refused = _metric(proc, "agentmesh_audit_checkpoint_refused_total")
    _replace(url, original[:-3])  # an older backup restored
    _until(lambda: _metric(proc, "agentmesh_audit_checkpoint_refused_total") > refused)
    with proc.client() as client:
        assert client.post("/v1/audit/witness/reset").status_code == 401
        r = client.post("/v1/audit/witness/reset", headers=ADMIN)
        assert r.status_code == 200 and r.json()["forgot"]["size"] >= len(original), r.text
        _until(lambda: _checkpoint(client)["size"] == len(original) - 3)
    assert "audit witness reset by an admin" in proc.output()


def test_a_witness_reset_right_after_a_restore_in_place_takes_the_restored_log_only(
    log: tuple[MeshProcess, str], tmp_path: Path,
) -> None:
    """PostgreSQL is restored under running replicas: the reset comes before the replica's
    own walk has seen the log shrink. The checkpoint it then witnesses is the restored log's,
    and the offline check agrees with it (a tree still holding the lost entries once made the
    witness hold a checkpoint no entries matched, refusing every true one after)."""
    proc, url = log
    original = _rows(url)
    _replace(url, original[:-3])
    with proc.client() as client:
        r = client.post("/v1/audit/witness/reset", headers=ADMIN)
        assert r.status_code == 200 and r.json()["verified"] == len(original) - 3, r.text
        _until(lambda: _checkpoint(client)["size"] == len(original) - 3)
    out = tmp_path / "checkpoint.json"
    done = subprocess.run([MESHSRE, "audit", "checkpoint", "--url", proc.url, "--out", str(out),
                           "--token", ADMIN_TOKEN], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["size"] == len(original) - 3


def test_a_drill_restore_on_a_platform_that_cannot_reach_each_replica_resets_the_witness(
    log: tuple[MeshProcess, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kubernetes cannot run here: a stand-in platform whose restore, like the Kubernetes
    one, does not reset the witness itself. The drill then resets it through the front door
    (the shared witness in Redis), and the real mesh forgets its checkpoint."""
    from chaos import runstate, store

    class Restores:
        def restore(self, src: str, timeout: float) -> dict[str, Any]:
            return {"platform": "stand-in", "source": src}

    proc, _ = log
    monkeypatch.setattr(store, "get_platform", Restores)
    config = {"run_dir": str(tmp_path), "drill": "backup-restore", "mesh_url": proc.url}
    runstate.notes(config).set("backup", {"location": "backup.dump"})
    result = store.restore_store(configuration=config,
                                 secrets={"admin_token": ADMIN_TOKEN})
    assert result["witness_reset"] == ["front door"]
    assert "audit witness reset by an admin" in proc.output()
