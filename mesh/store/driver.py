"""What a database driver offers the store: run one transaction function, read or write.

Store operations are plain functions over a DB-API cursor, written once in ``records`` with
``?`` placeholders. A driver owns the connections, opens the transaction, takes whatever lock
keeps the audit chain linear across replicas, and translates its errors into ``Conflict`` and
``StoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = ["Driver", "T", "Work", "open_driver"]

T = TypeVar("T")
Work = Callable[[Any], T]


class Driver(Protocol):
    backend: str

    async def call(self, work: Work[T], write: bool) -> T: ...
    def close(self) -> None: ...


def open_driver(url: str, timeout_s: float = 2.0) -> Driver:
    from mesh.store.postgres import PostgresDriver
    from mesh.store.sqlite import SqliteDriver

    if url in ("memory://", "sqlite://", "sqlite:///:memory:"):
        return SqliteDriver(":memory:")
    if url.startswith("sqlite:///"):
        return SqliteDriver(url.removeprefix("sqlite:///"), busy_timeout_ms=int(timeout_s * 1000))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDriver(url, timeout_s=timeout_s)
    raise ValueError(
        f"unsupported storage URL {url!r}: use sqlite:///PATH, postgresql://... or memory://"
    )
