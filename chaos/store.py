"""The backup-restore drill: back up under load, lose the store, restore it, prove it whole.

Integrity checks of the backup itself (SQLite's ``PRAGMA integrity_check``, ``pg_restore
--list`` for a pg_dump archive) are necessary but never enough: the drill restores into a
fresh target and then checks what matters, through the mesh's own API: the audit chain verifies
end to end, record counts and the chain head match the backup's manifest, a new write
succeeds, and every write acknowledged before the backup began is still there.

RTO runs from the disaster to the first successful write through the front door, in phases:
``restore`` (the store is back), ``replicas_ready`` (every replica answers ready) and
``serving`` (the front door takes writes again). RPO is the age, at the disaster, of the newest
write the restore brought back, and the acknowledged writes it did not.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed

from alerts.catalog import BACKUP_FRESHNESS
from chaos import load, runstate
from loadtests.ledger import LedgerCheckError, missing
from mesh.platforms import get_platform

__all__ = [
    "audit_chain_valid",
    "backup_is_intact",
    "declare_disaster",
    "ensure_store_restored",
    "front_door_serving",
    "keep_writing",
    "matches_manifest",
    "recovery_point",
    "restore_store",
    "take_backup",
]


def _measure(configuration: Mapping[str, Any] | None, **values: Any) -> None:
    runstate.notes(configuration).merge("measurements", values)


def _objective(configuration: Mapping[str, Any] | None, oid: str, target: str, measured: Any,
               met: bool) -> None:
    runstate.notes(configuration).merge("objectives", {oid: {
        "target": target, "measured": measured, "met": met}})


def take_backup(configuration: Mapping[str, Any] | None = None,
                secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Back the store up into the run directory (on Kubernetes: the backup volume)."""
    dest = runstate.run_dir(configuration) / "backup" / "store.backup"
    started = time.time()
    result = get_platform().backup(dest)
    result["started_at"] = round(started, 3)
    runstate.notes(configuration).set("backup", result)
    keep = ("location", "size_bytes", "sha256", "integrity", "tables", "audit_last_seq",
            "audit_head", "duration_seconds")
    _measure(configuration, backend=result.get("backend"),
             backup={k: result.get(k) for k in keep})
    return result


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def backup_is_intact(configuration: Mapping[str, Any] | None = None,
                     secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check the backup again, independently of the tool that wrote it: its checksum, then
    SQLite's integrity check and row counts, or pg_restore reading the whole archive."""
    backup = runstate.notes(configuration).get("backup")
    if not backup:
        raise ActivityFailed("no backup was taken in this run")
    path = Path(str(backup["location"]))
    if not path.is_file():  # a backup kept by the platform (a Kubernetes volume)
        return {"location": str(path), "checked_by": "the platform", "integrity":
                backup.get("integrity")}
    if _sha256(path) != backup["sha256"]:
        raise ActivityFailed(f"{path} changed since it was written: checksum mismatch")
    if backup.get("backend") == "sqlite":
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
                      for t in backup["tables"]}
        finally:
            conn.close()
        if integrity != "ok" or counts != backup["tables"]:
            raise ActivityFailed(f"{path}: integrity {integrity}, counts {counts}"
                                 f" against the manifest's {backup['tables']}")
        return {"location": str(path), "integrity": integrity, "tables": counts}
    done = subprocess.run(["pg_restore", "--list", str(path)], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise ActivityFailed(f"pg_restore cannot read {path}: {done.stderr.strip()[-300:]}")
    entries = sum(1 for line in done.stdout.splitlines() if line and not line.startswith(";"))
    return {"location": str(path), "integrity": "pg_restore --list ok", "toc_entries": entries}


def keep_writing(seconds: float = 5.0, configuration: Mapping[str, Any] | None = None,
                 secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Let the load keep writing after the backup: those writes are what the RPO is about."""
    time.sleep(float(seconds))
    return load.load_is_running(window=float(seconds), configuration=configuration)


def declare_disaster(configuration: Mapping[str, Any] | None = None,
                     secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Lose the store."""
    at = time.time()
    result = get_platform().destroy_store()
    runstate.notes(configuration).set("disaster_at", round(at, 3))
    return result


def restore_store(timeout: float = 120.0, configuration: Mapping[str, Any] | None = None,
                  secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Restore the backup into a fresh store and bring every replica back."""
    backup = runstate.notes(configuration).get("backup")
    if not backup:
        raise ActivityFailed("no backup was taken in this run: nothing to restore")
    result = get_platform().restore(backup["location"], timeout=float(timeout))
    if "witness_reset" not in result:
        # The restored log is older than the audit checkpoint the witness holds: a platform
        # that cannot reach each replica (Kubernetes) resets the shared witness (Redis)
        # through the front door, or every checkpoint from now on would be refused.
        with runstate.mesh_client(configuration, secrets) as client:
            r = client.post("/v1/audit/witness/reset")
        result["witness_reset"] = ["front door"] if r.status_code == 200 else []
    runstate.notes(configuration).set("restore", result)
    _measure(configuration, rto_phases={"restore": result.get("duration_seconds"),
                                        "replicas_ready": result.get("replicas_ready_seconds")})
    return result


def front_door_serving(timeout: float = 60.0, rto_objective: float = 300.0,
                       configuration: Mapping[str, Any] | None = None,
                       secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A smoke write through the front door, retried until it succeeds: the end of the RTO."""
    from meshsre.identity import AgentKey

    notes = runstate.notes(configuration)
    disaster_at, restore = notes.get("disaster_at"), notes.get("restore") or {}
    key = AgentKey.generate()
    body = key.registration("drill-smoke", "sre@example.com", ["search"], "standard")
    deadline = time.monotonic() + float(timeout)
    attempts, last = 0, ""
    with runstate.mesh_client(configuration, secrets) as client:
        while True:
            attempts += 1
            try:
                r = client.post("/v1/agents", json=body)
                if r.status_code in (201, 409):  # 409: an earlier attempt got through
                    break
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                _measure(configuration, smoke_write=False)
                raise ActivityFailed(f"no write succeeded within {timeout} s: {last}")
            time.sleep(0.2)
        serving_at = time.time()
        read_back = client.get(f"/v1/agents/{key.did}").status_code
    rto = round(serving_at - disaster_at, 3) if disaster_at else None
    ready_at = restore.get("ready_at")
    phases = dict(notes.get("measurements", {}).get("rto_phases") or {})
    phases["serving"] = round(serving_at - ready_at, 3) if ready_at else None
    _measure(configuration, smoke_write=read_back == 200, rto_seconds=rto, rto_phases=phases)
    rto_objective = float(rto_objective)
    _objective(configuration, "rto", f"<= {rto_objective:g} s", rto,
               rto is not None and rto <= rto_objective)
    if read_back != 200:
        raise ActivityFailed(f"the smoke write {key.did} cannot be read back: HTTP {read_back}")
    if rto is not None and rto > rto_objective:
        raise ActivityFailed(f"RTO {rto} s exceeds its objective of {rto_objective:g} s")
    return {"did": key.did, "attempts": attempts, "rto_seconds": rto, "rto_phases": phases}


def audit_chain_valid(configuration: Mapping[str, Any] | None = None,
                      secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The mesh walks its whole audit chain: every entry's hash and link must hold."""
    with runstate.mesh_client(configuration, secrets, timeout=60.0) as client:
        r = client.get("/v1/audit/verify")
    if r.status_code != 200:
        raise ActivityFailed(f"/v1/audit/verify answered HTTP {r.status_code}: {r.text[:200]}")
    check: dict[str, Any] = r.json()
    _measure(configuration, chain_ok=bool(check.get("ok")), chain_length=check.get("length"))
    return {**check, "within": bool(check.get("ok"))}


def _entry(client: httpx.Client, seq: int) -> dict[str, Any] | None:
    r = client.get("/v1/audit", params={"after": seq - 1, "limit": 1})
    if r.status_code != 200:
        raise ActivityFailed(f"/v1/audit answered HTTP {r.status_code}: {r.text[:200]}")
    entries = r.json()["entries"]
    return entries[0] if entries and entries[0]["seq"] == seq else None


def matches_manifest(configuration: Mapping[str, Any] | None = None,
                     secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The restored store holds what the backup's manifest says: the same row counts in every
    table, and the mesh serves the same audit entry at the head's sequence number."""
    notes = runstate.notes(configuration)
    backup, restore = notes.get("backup") or {}, notes.get("restore") or {}
    counts_match = restore.get("tables") == backup.get("tables")
    head_seq = backup.get("audit_last_seq")
    with runstate.mesh_client(configuration, secrets) as client:
        entry = _entry(client, int(head_seq)) if head_seq is not None else None
    head_match = entry is not None and entry["hash"] == backup.get("audit_head")
    _measure(configuration, manifest_match=counts_match and head_match)
    result = {"tables_backup": backup.get("tables"), "tables_restored": restore.get("tables"),
              "audit_head": backup.get("audit_head"), "audit_head_served": entry and entry["hash"]}
    if not counts_match or not head_match:
        raise ActivityFailed(f"the restored store does not match the manifest: {result}")
    return result


def recovery_point(rpo_objective: float | str = "",
                   configuration: Mapping[str, Any] | None = None,
                   secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """RPO: the newest restored write's age at the disaster, and the acknowledged writes the
    restore did not bring back. Any of them acknowledged before the backup began is a defect.
    The RPO objective defaults to the catalog's backup freshness: a backup may be that old."""
    notes = runstate.notes(configuration)
    backup, disaster_at = notes.get("backup") or {}, notes.get("disaster_at")
    acks = load.acknowledged(configuration)
    if acks is None and (notes.get("load") or {}).get("owned", True):
        raise ActivityFailed("the load's ledger is not there yet: stop the load first")
    lost: set[str] = set()
    if acks is not None:  # else someone else's load still runs: its owner checks its ledger
        try:
            lost = set(missing(runstate.mesh_url(configuration), [a.did for a in acks]))
        except LedgerCheckError as exc:
            raise ActivityFailed(str(exc)) from exc
    before = [a.did for a in acks or [] if a.did in lost and a.at < backup["started_at"]]
    with runstate.mesh_client(configuration, secrets) as client:
        newest = _entry(client, int(backup["audit_last_seq"]))
    rpo = round(disaster_at - newest["ts"], 3) if newest and disaster_at else None
    objective = float(rpo_objective or BACKUP_FRESHNESS.max_age_seconds)
    acknowledged = None if acks is None else len(acks)
    checked = acks is not None
    _measure(configuration, rpo_seconds=rpo, writes_acknowledged=acknowledged,
             writes_lost=len(lost) if checked else None,
             writes_lost_before_backup=len(before) if checked else None)
    _objective(configuration, "rpo", f"<= {objective:g} s", rpo,
               rpo is not None and rpo <= objective)
    _objective(configuration, "writes-lost-before-backup", "== 0", len(before), not before)
    result = {"rpo_seconds": rpo, "acknowledged": acknowledged,
              "lost": len(lost) if checked else None,
              "lost_before_backup": before[:20]}
    if before:
        raise ActivityFailed(f"{len(before)} writes acknowledged before the backup began are"
                             f" missing after the restore: {', '.join(before[:5])}")
    if rpo is None or rpo > objective:
        raise ActivityFailed(f"RPO {rpo} s exceeds its objective of {objective:g} s")
    return result


def ensure_store_restored(timeout: float = 120.0, configuration: Mapping[str, Any] | None = None,
                          secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rollback: after a disaster that was not restored, restore the backup (idempotent)."""
    notes = runstate.notes(configuration)
    if not notes.get("disaster_at") or notes.get("restore"):
        return {"restored": False, "reason": "nothing to undo"}
    return {"restored": True, **restore_store(timeout, configuration, secrets)}
