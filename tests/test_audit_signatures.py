"""Each audit entry carries the log key's signature, on SQLite and PostgreSQL alike: a store
made before signing gains the column, its old entries verify as appended before signing
began, the replica signs what it appends, and an unsigned entry after a signed one (a forged
append, its hash chained to the head) fails at its index, online and offline."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mesh.audit import entry_hash
from mesh.auditverify import read_checkpoint_file, verify, write_checkpoint_file
from mesh.checkpoint import CheckpointError, LogSigner, LogVerifier
from mesh.keys import public_key
from mesh.merkle import Tree, leaf_hash
from mesh.process import ADMIN_TOKEN, MESHSRE, MeshProcess, log_key
from tests.apiclient import register
from tests.test_audit import appended, chain, signed

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LEGACY = 3  # entries a store held before signing began
OLD_AUDIT = ("CREATE TABLE audit (seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
             " actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,"
             " data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")


def _sql(url: str, statement: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executemany(statement, rows) if rows else conn.execute(statement)
        return
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        statement = statement.replace("?", "%s")
        cur.executemany(statement, rows) if rows else cur.execute(statement)


def _legacy_store(url: str) -> None:
    _sql(url, OLD_AUDIT)
    rows = [(e.seq, e.ts, e.actor, e.action, e.subject, e.data, e.prev_hash, e.hash)
            for e in chain(LEGACY)]
    _sql(url, "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _meshsre_verify(url: str) -> tuple[int, dict[str, Any]]:
    vkey = LogVerifier(public_key(base64.b64decode(log_key(url)))).vkey
    r = subprocess.run([MESHSRE, "audit", "verify", "--storage", url, "--public-key", vkey,
                        "--json"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin"})
    return r.returncode, json.loads(r.stdout) if r.stdout else {"stderr": r.stderr}


def _until_walk(client: Any, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        walk: dict[str, Any] = client.get("/v1/audit/verify", headers=ADMIN).json()
        if check(walk) or time.monotonic() > deadline:
            return walk
        time.sleep(0.2)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_entries_are_signed_and_a_forged_append_fails_at_its_index(
    backend: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    _legacy_store(url)
    with MeshProcess(url, env={"MESH_AUDIT_CHECK_SECONDS": "0.2"}) as proc, \
            proc.client() as client:
        register(client)  # appended and signed by the replica: entry LEGACY
        page = client.get("/v1/audit/entries", params={"start": 0, "end": LEGACY + 1},
                          headers=ADMIN).json()["entries"]
        assert [e["signature"] is not None for e in page] == [False] * LEGACY + [True]
        walk = _until_walk(client, lambda w: w["ok"])
        assert (walk["ok"], walk["length"], walk["signed_from"]) == (True, LEGACY + 1, LEGACY)
        assert _meshsre_verify(url)[0] == 0

        head = page[-1]
        data = json.dumps(head["data"], sort_keys=True, separators=(",", ":"))
        seq, ts = LEGACY + 1, head["ts"] + 1
        digest = entry_hash(seq, ts, "admin", "agent.registered", "did:mesh:forged", data,
                            head["hash"])
        _sql(url, "INSERT INTO audit (seq, ts, actor, action, subject, data, prev_hash, hash)"
             " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(seq, ts, "admin", "agent.registered",
                                                  "did:mesh:forged", data, head["hash"], digest)])
        walk = _until_walk(client, lambda w: not w["ok"])
        assert (walk["first_bad_index"], walk["reason"]) == (seq, "unsigned")
        code, report = _meshsre_verify(url)
        assert code == 1 and [(f["kind"], f["index"]) for f in report["findings"]] == [
            ("unsigned", seq)]


def test_a_checkpoint_file_keeps_where_signing_began_so_stripped_signatures_fail(
    tmp_path: Path,
) -> None:
    signer = LogSigner(bytes(range(32)))
    log = signed(chain(4), signer)
    leaves = [leaf_hash(e.envelope()) for e in log]
    cp = signer.sign(len(log), Tree(leaves).root(), 1_765_000_000)
    path = write_checkpoint_file(tmp_path / "cp.json", cp, signer.verifier, leaves, 0)
    witnessed = read_checkpoint_file(path)
    assert witnessed.signed_from == 0 and verify(log, witnessed).ok
    stripped = appended([replace(e, signature=None) for e in log])  # and a forged append
    report = verify(stripped, witnessed)
    assert [(f.kind, f.index) for f in report.findings] == [("unwitnessed", 4), ("unsigned", 0)]
    assert verify(stripped, None, signer.verifier).ok  # without the file: a log before signing
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "signed_from": "0"}))
    with pytest.raises(CheckpointError, match="signed_from"):
        read_checkpoint_file(path)


def test_verifying_a_sqlite_store_that_is_not_there_says_so_and_creates_nothing(
        tmp_path: Path) -> None:
    missing = tmp_path / "mesh.db"
    r = subprocess.run([MESHSRE, "audit", "verify", "--storage", f"sqlite:///{missing}"],
                       capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"})
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error: no SQLite store at {missing}"
    assert not missing.exists()
