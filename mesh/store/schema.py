"""The store's tables, in SQL that SQLite and PostgreSQL both accept (one substitution)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_missing_columns", "drop_private_keys", "statements"]

_TABLES = """
CREATE TABLE IF NOT EXISTS agents (
    did TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    sponsor TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    policy TEXT NOT NULL,
    trust_score INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    deregistered_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS challenges (
    id TEXT PRIMARY KEY,
    did TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS challenges_expiry ON challenges (expires_at);
CREATE TABLE IF NOT EXISTS credentials (
    jti TEXT PRIMARY KEY,
    did TEXT NOT NULL,
    issued_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    seq {serial_pk},
    jti TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    revoked_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq {seq_pk},
    ts DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT
);
CREATE TABLE IF NOT EXISTS request_nonces (
    id TEXT PRIMARY KEY,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS request_nonces_expiry ON request_nonces (expires_at);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backups (
    id {serial_pk},
    finished_at DOUBLE PRECISION NOT NULL,
    location TEXT NOT NULL,
    size_bytes BIGINT NOT NULL
);
"""

_SERIAL = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "BIGSERIAL PRIMARY KEY"}
_SEQ = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "BIGINT PRIMARY KEY"}


def statements(backend: str) -> list[str]:
    sql = _TABLES.replace("{serial_pk}", _SERIAL[backend]).replace("{seq_pk}", _SEQ[backend])
    return [s.strip() for s in sql.split(";") if s.strip()]


# Columns added after their table's first release, which CREATE TABLE IF NOT EXISTS leaves
# out of a store made before them.
# audit.signature: the log key's signature of the entry's hash (mesh.checkpoint); entries
# appended before it have none, and verify as appended before signing began.
ADDED_COLUMNS = (
    ("agents", "deregistered_at", "DOUBLE PRECISION"),
    ("audit", "signature", "TEXT"),
)


def add_missing_columns(cur: Any, backend: str) -> None:
    for table, column, kind in ADDED_COLUMNS:
        if backend == "postgresql":
            sql = "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
            names = {row[0] for row in cur.execute(sql, (table,)).fetchall()}
        else:
            names = {row[1] for row in cur.execute(f"PRAGMA table_info({table})").fetchall()}
        if column not in names:
            cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def drop_private_keys(cur: Any, backend: str) -> None:
    """Deletes the issuer's private seed that stores made before keys left them (mesh.keys):
    a store, and so every backup of it, holds no private key. SQLite overwrites the row's
    bytes too, or a file copy would still hold them in a free page."""
    if backend == "sqlite":
        cur.execute("PRAGMA secure_delete = ON")
    cur.execute("DELETE FROM meta WHERE key = 'issuer_key'")
    if backend == "sqlite":
        cur.execute("PRAGMA secure_delete = OFF")
