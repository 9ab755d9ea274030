"""The audit log checks of the security suite: keep the mesh's signed checkpoint from run to
run (``meshsre audit checkpoint``, which proves the new one extends the kept one), and, given
the store, tamper with a copy of its log as an attacker with the database would, to see
``meshsre audit verify`` name each tampering. The live store is only read."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from mesh.audit import GENESIS_HASH, Entry, entry_hash

__all__ = ["copy_log", "meshsre_audit", "origin_of", "rechained", "write_log"]

MESHSRE = str(Path(sys.executable).with_name("meshsre"))


def meshsre_audit(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **({"MESH_ADMIN_TOKEN": token} if token else {})}
    return subprocess.run([MESHSRE, "audit", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def origin_of(path: Path) -> str | None:
    """The log a kept checkpoint file belongs to (its note's first line), if readable."""
    try:
        note = json.loads(path.read_text())["note"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(note).split("\n", 1)[0]


def copy_log(storage: str) -> list[Entry]:
    """Every entry of the store's audit log, read through the mesh's own store code."""
    from prometheus_client import CollectorRegistry

    from mesh.store import open_store, records
    from mesh.telemetry import Metrics

    async def read() -> list[Entry]:
        store = open_store(storage, Metrics(CollectorRegistry()), timeout_s=30)
        found: list[Entry] = []
        try:
            while page := await store.call(
                "audit_after", records.audit_after(len(found) - 1, 1000)
            ):
                found += page
        finally:
            store.close()
        return found

    return asyncio.run(read())


def rechained(entries: list[Entry]) -> list[Entry]:
    """The entries renumbered and with every hash recomputed in order: what an attacker with
    the database does so that the hash chain verifies again. Without the log key, all they
    can do with the signatures is keep or copy them."""
    out: list[Entry] = []
    prev = GENESIS_HASH
    for seq, e in enumerate(entries):
        digest = entry_hash(seq, e.ts, e.actor, e.action, e.subject, e.data, prev)
        out.append(
            Entry(seq, e.ts, e.actor, e.action, e.subject, e.data, prev, digest, e.signature))
        prev = digest
    return out


def write_log(path: Path, entries: list[Entry]) -> str:
    """A SQLite store holding just these audit entries; its storage URL."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts DOUBLE PRECISION, actor TEXT,"
                 " action TEXT, subject TEXT, data TEXT, prev_hash TEXT, hash TEXT,"
                 " signature TEXT)")
    rows: list[tuple[Any, ...]] = [
        (e.seq, e.ts, e.actor, e.action, e.subject, e.data, e.prev_hash, e.hash, e.signature)
        for e in entries]
    conn.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"
