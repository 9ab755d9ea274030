"""Private keys live outside the store: from the environment or a 0600 key file, refused
with a clear error otherwise; a store (and so its backups) never holds one, and a store made
before keeps its old issuer seed no longer; the local cluster makes its key files itself."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest

from mesh.keys import KeyFileError, load_seed, write_key_file
from mesh.local import store
from mesh.local.state import StateDir
from mesh.process import ISSUER_KEY, MESHSRE, MeshProcess, log_key
from tests.apiclient import register


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESHSRE, "serve", "--port", "0", "--storage", "memory://"],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], **env})


def test_a_key_file_readable_by_others_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "issuer.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    result = _serve({"MESH_ISSUER_KEY_FILE": str(key)})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: key file {key} is readable by others (mode 0644): run chmod 600 {key}")


@pytest.mark.parametrize(("env", "message"), [
    ({"MESH_ISSUER_KEY": "c2hvcnQ="}, "error: MESH_ISSUER_KEY must hold a base64 32-byte"),
    ({"MESH_LOG_KEY": ISSUER_KEY, "MESH_ISSUER_KEY": ISSUER_KEY},
     "error: the log key must not be the issuer key"),
    ({"MESH_LOG_KEY": ISSUER_KEY, "MESH_LOG_KEY_FILE": "/x"},
     "error: set MESH_LOG_KEY or MESH_LOG_KEY_FILE, not both"),
    ({"MESH_LOG_KEY_FILE": "/nonexistent/log.key"},
     "error: cannot read key file /nonexistent/log.key"),
])
def test_unusable_keys_stop_the_server_in_one_line(env: dict[str, str], message: str) -> None:
    result = _serve(env)
    assert result.returncode != 0 and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_file_is_made_once_and_read_back(tmp_path: Path) -> None:
    paths = StateDir(tmp_path)
    first = paths.key_file("log")
    seed = load_seed("log", None, str(first))
    assert paths.key_file("log") == first and load_seed("log", None, str(first)) == seed
    assert paths.key_file("issuer").read_text() != first.read_text()


def _secrets(storage: str) -> list[bytes]:
    """Each private key as the mesh was given it, as raw bytes and as base64."""
    seeds = [base64.b64decode(ISSUER_KEY), base64.b64decode(log_key(storage))]
    return seeds + [base64.b64encode(s) for s in seeds]


def test_no_backup_holds_a_private_key_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    _legacy_store_with_a_seed(url)
    with MeshProcess(url) as proc, proc.client() as client:
        register(client)
    store.backup(url, tmp_path / "backup.db")
    dump = (tmp_path / "backup.db").read_bytes()
    assert b"agent.registered" in dump  # it is a backup of that store
    assert not [s for s in _secrets(url) if s in dump]
    assert base64.b64encode(b"L" * 32) not in dump  # the legacy seed was dropped


def _legacy_store_with_a_seed(url: str) -> None:
    """A store as made before keys left it: the issuer seed in its meta table."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('issuer_key', ?)",
                 (base64.b64encode(b"L" * 32).decode(),))
    conn.commit()
    conn.close()


def test_no_backup_holds_a_private_key_postgresql(pg_url: str, tmp_path: Path) -> None:
    with MeshProcess(pg_url) as proc, proc.client() as client:
        register(client)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM meta WHERE key = 'issuer_key'").fetchone() == (0,)
    store.backup(pg_url, tmp_path / "store.backup")
    sql = subprocess.run(["pg_restore", "--file=-", str(tmp_path / "store.backup")],
                         capture_output=True, check=True, timeout=60).stdout
    assert b"agent.registered" in sql
    assert not [s for s in _secrets(pg_url) if s in sql]


def test_load_seed_reads_the_environment_first_form() -> None:
    seed = os.urandom(32)
    assert load_seed("issuer", base64.b64encode(seed).decode(), None) == seed
    with pytest.raises(KeyFileError, match="32-byte"):
        load_seed("issuer", "not base64!", None)
