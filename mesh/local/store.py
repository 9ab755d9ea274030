"""Back up, destroy and restore the store of a local cluster, for drills.

SQLite: the online backup API (a consistent copy while replicas keep writing), checked with
``PRAGMA integrity_check``. PostgreSQL: ``pg_dump -Fc`` under a snapshot exported from a
repeatable-read transaction, so the row counts in the manifest describe exactly what was dumped;
restore goes into a fresh database under a temporary name that is renamed into place only
when complete, so a replica never connects to a half-restored store.

Every function returns JSON-safe data: paths, sizes, row counts, the audit chain head and
durations. Stopping and starting replicas is the platform's job, not this module's.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mesh.local.errors import StoreError

__all__ = ["backend_of", "backup", "destroy", "restore", "sqlite_path"]

_SUFFIXES = ("", "-wal", "-shm")


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite:") else "postgresql"


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _manifest(cur: Any, tables: list[str]) -> dict[str, Any]:
    counts = {t: int(cur.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}
    head = (
        cur.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if "audit" in tables
        else None
    )
    return {
        "tables": counts,
        "audit_last_seq": head[0] if head else None,
        "audit_head": head[1] if head else None,
    }


def _sqlite_manifest(conn: sqlite3.Connection) -> dict[str, Any]:
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    return _manifest(conn, names)


def _record_backup(url: str, finished_at: float, location: str, size: int) -> None:
    """The newest row here becomes agentmesh_backup_last_success_timestamp_seconds."""
    sql = "INSERT INTO backups (finished_at, location, size_bytes) VALUES ({0}, {0}, {0})"
    params = (finished_at, location, size)
    if backend_of(url) == "sqlite":
        with sqlite3.connect(sqlite_path(url), timeout=5.0) as conn:
            conn.execute(sql.format("?"), params)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as pg:
            pg.execute(sql.format("%s"), params)


def _sqlite_copy(src: Path, dst: Path) -> dict[str, Any]:
    """Online backup of src into a new file dst, then an integrity check of the copy."""
    dst.unlink(missing_ok=True)
    source = sqlite3.connect(src, timeout=5.0)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
        integrity = target.execute("PRAGMA integrity_check").fetchone()[0]
        manifest = _sqlite_manifest(target)
    finally:
        target.close()
        source.close()
    if integrity != "ok":
        raise StoreError(f"integrity check of {dst} failed: {integrity}")
    return {"integrity": integrity, **manifest}


def _pg_admin(url: str) -> tuple[str, str]:
    """The database name of url, and a URL to the maintenance database of the same server."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1"):
        raise StoreError(f"refusing to operate on database {name!r}")
    return name, urlunsplit(parts._replace(path="/postgres"))


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _run(argv: list[str]) -> None:
    # PGCONNECT_TIMEOUT: pg_dump and pg_restore must not hang on a server that went away.
    env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise StoreError(f"{argv[0]} failed ({done.returncode}): {tail}")


def _pg_tables(cur: Any) -> list[str]:
    rows = cur.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    ).fetchall()
    return [r[0] for r in rows]


def backup(url: str, dest: Path) -> dict[str, Any]:
    """Write a backup of the store at url to dest and record it in the store's backups table."""
    started = time.perf_counter()
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if backend_of(url) == "sqlite":
        db = sqlite_path(url)
        if not db.exists():
            raise StoreError(f"no database at {db}")
        result = _sqlite_copy(db, partial)
    else:
        import psycopg

        # The counts and pg_dump share one snapshot: the manifest is what the dump holds.
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            result = {"integrity": "pg_dump ok", **_manifest(conn, _pg_tables(conn))}
            _run(
                [
                    "pg_dump",
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    f"--file={partial}",
                    f"--dbname={url}",
                ]
            )
            conn.rollback()
        _run(["pg_restore", "--list", str(partial)])  # the archive reads back whole
    partial.replace(dest)
    finished_at = time.time()
    size = dest.stat().st_size
    _record_backup(url, finished_at, str(dest), size)
    return {
        "backend": backend_of(url),
        "location": str(dest),
        "size_bytes": size,
        "sha256": _sha256(dest),
        "finished_at": finished_at,
        "duration_seconds": round(time.perf_counter() - started, 4),
        **result,
    }


def destroy(url: str) -> dict[str, Any]:
    """Delete the store (SQLite files, or the PostgreSQL database); replicas must be down first
    on SQLite, or their open connections would keep writing to an unlinked file."""
    started = time.perf_counter()
    removed: list[dict[str, Any]] = []
    if backend_of(url) == "sqlite":
        db = sqlite_path(url)
        for suffix in _SUFFIXES:
            path = db.with_name(db.name + suffix)
            if path.exists():
                removed.append({"path": str(path), "size_bytes": path.stat().st_size})
                path.unlink()
    else:
        name, admin = _pg_admin(url)
        _drop(admin, name)
        removed.append({"database": name})
    return {
        "backend": backend_of(url),
        "removed": removed,
        "duration_seconds": round(time.perf_counter() - started, 4),
    }


def _drop(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        # FORCE terminates the sessions of every replica's pool in the same step.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def restore(url: str, src: Path) -> dict[str, Any]:
    """Put the backup at src back as the store at url, replacing whatever is there."""
    started = time.perf_counter()
    src = src.resolve()
    if not src.exists():
        raise StoreError(f"no backup at {src}")
    if backend_of(url) == "sqlite":
        db = sqlite_path(url)
        db.parent.mkdir(parents=True, exist_ok=True)
        fresh = db.with_name(db.name + ".restoring")
        result = _sqlite_copy(src, fresh)
        for suffix in _SUFFIXES:  # a stale WAL beside the new file would be replayed into it
            db.with_name(db.name + suffix).unlink(missing_ok=True)
        fresh.replace(db)
    else:
        import psycopg
        from psycopg import sql

        name, admin = _pg_admin(url)
        temp = f"{name}_restoring"[:63]
        _drop(admin, temp)
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(temp)))
        _run(
            [
                "pg_restore",
                "--no-owner",
                "--exit-on-error",
                f"--dbname={_with_db(url, temp)}",
                str(src),
            ]
        )
        with psycopg.connect(_with_db(url, temp), connect_timeout=5) as conn:
            result = {"integrity": "pg_restore ok", **_manifest(conn, _pg_tables(conn))}
        _drop(admin, name)
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(temp), sql.Identifier(name)
                )
            )
    return {
        "backend": backend_of(url),
        "source": str(src),
        "target": _redact(url),
        "duration_seconds": round(time.perf_counter() - started, 4),
        **result,
    }


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
