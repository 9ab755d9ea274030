"""Shared fixtures: real mesh processes on free loopback ports, and throwaway databases on
PostgreSQL and Redis (found as tests/services.py says)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from mesh.process import ADMIN_TOKEN, MeshProcess
from tests.services import pg_admin_url, redis_url

PG_ADMIN_URL = pg_admin_url()
REDIS_URL = redis_url()


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("MESH_", "OTEL_")) and not key.startswith("MESH_TEST_"):
            monkeypatch.delenv(key)


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@contextmanager
def temporary_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"meshsre_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mesh.db'}"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    """One real mesh process on SQLite, shared by a test module."""
    db = tmp_path_factory.mktemp("mesh") / "mesh.db"
    with MeshProcess(f"sqlite:///{db}") as proc:
        yield proc
