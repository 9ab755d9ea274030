"""Store drills without a mesh: backup, destroy and restore on a SQLite file and on a real
PostgreSQL database holding the runtime's own schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mesh.local import store
from mesh.local.errors import StoreError
from mesh.store import schema


def _fill(conn: Any, mark: str, rows: int = 40) -> None:
    for i in range(rows):
        conn.execute(
            "INSERT INTO agents (did, public_key, name, sponsor, capabilities, policy, "
            f"trust_score, created_at) VALUES ({mark}, {mark}, 'a', 's@x', '[]', 'standard', "
            f"500, 1.0)", (f"did:mesh:{i:032x}", f"key{i}"))
        conn.execute(
            "INSERT INTO audit (seq, ts, actor, action, subject, data, prev_hash, hash) "
            f"VALUES ({mark}, 1.0, 'admin', 'agent.registered', 'x', '{{}}', 'p', {mark})",
            (i, f"h{i}"))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    db = tmp_path / "live" / "mesh.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for sql in schema.statements("sqlite"):
            conn.execute(sql)
        _fill(conn, "?")
    conn.close()
    return f"sqlite:///{db}"


@pytest.fixture
def pg_store(pg_url: str) -> str:
    with psycopg.connect(pg_url) as conn:
        for sql in schema.statements("postgresql"):
            conn.execute(sql)
        _fill(conn, "%s")
    return pg_url


def _backups(url: str) -> list[tuple[Any, ...]]:
    sql = "SELECT location, size_bytes FROM backups ORDER BY id"
    if url.startswith("sqlite"):
        with sqlite3.connect(store.sqlite_path(url)) as conn:
            rows = conn.execute(sql).fetchall()
        conn.close()
        return rows
    with psycopg.connect(url) as pg:
        return [tuple(r) for r in pg.execute(sql).fetchall()]


def _drill(url: str, dest: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    made = store.backup(url, dest)
    assert made["location"] == str(dest) and made["size_bytes"] == dest.stat().st_size > 0
    assert made["tables"]["agents"] == 40 and made["tables"]["audit"] == 40
    assert made["audit_last_seq"] == 39 and made["audit_head"] == "h39"
    assert _backups(url) == [(str(dest), made["size_bytes"])]  # the runtime's metric reads it
    gone = store.destroy(url)
    assert gone["removed"]
    back = store.restore(url, dest)
    assert back["tables"] == made["tables"]
    assert back["audit_head"] == made["audit_head"]
    return made, gone, back


def test_sqlite_backup_destroy_restore_brings_every_row_back(sqlite_store: str,
                                                             tmp_path: Path) -> None:
    made, gone, back = _drill(sqlite_store, tmp_path / "backups" / "mesh.db")
    assert made["integrity"] == back["integrity"] == "ok"
    db = store.sqlite_path(sqlite_store)
    assert str(db) in {r["path"] for r in gone["removed"]}
    assert db.exists() and not db.with_name("mesh.db.restoring").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agents").fetchone() == (40,)
    conn.close()


def test_sqlite_destroy_removes_the_wal_and_shm_files_too(sqlite_store: str) -> None:
    db = store.sqlite_path(sqlite_store)
    reader = sqlite3.connect(db)  # an open connection keeps -wal and -shm in place
    reader.execute("SELECT COUNT(*) FROM agents").fetchone()
    present = {p.name for p in db.parent.iterdir()}
    assert {"mesh.db", "mesh.db-wal", "mesh.db-shm"} <= present
    removed = {Path(r["path"]).name for r in store.destroy(sqlite_store)["removed"]}
    reader.close()
    assert removed == {"mesh.db", "mesh.db-wal", "mesh.db-shm"}
    assert not any(db.with_name(db.name + s).exists() for s in ("", "-wal", "-shm"))


def test_restore_from_a_missing_backup_fails_and_leaves_the_store_alone(sqlite_store: str,
                                                                       tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no backup"):
        store.restore(sqlite_store, tmp_path / "nope.db")
    assert store.sqlite_path(sqlite_store).exists()
    with pytest.raises(StoreError, match="no database"):
        store.backup(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "b.db")


@pytest.mark.postgres
def test_postgres_backup_destroy_restore_brings_every_row_back(pg_store: str,
                                                               tmp_path: Path) -> None:
    _, gone, _ = _drill(pg_store, tmp_path / "mesh.dump")
    assert gone["removed"] == [{"database": pg_store.rsplit("/", 1)[1]}]
    with psycopg.connect(pg_store) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agents").fetchone() == (40,)
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                            ("%_restoring",)).fetchall()
    assert left == []


@pytest.mark.postgres
def test_postgres_operations_refuse_the_maintenance_database() -> None:
    with pytest.raises(StoreError, match="refusing"):
        store.destroy("postgresql://postgres@127.0.0.1:5432/postgres")
