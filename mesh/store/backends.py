"""Which driver serves a storage URL: the one place that knows every backend, so that the
driver interface (``mesh.store.driver``) imports none of them."""

from __future__ import annotations

from mesh.store.driver import Driver
from mesh.store.sqlite import SqliteDriver

__all__ = ["open_driver"]


def open_driver(url: str, timeout_s: float = 2.0) -> Driver:
    if url in ("memory://", "sqlite://", "sqlite:///:memory:"):
        return SqliteDriver(":memory:")
    if url.startswith("sqlite:///"):
        return SqliteDriver(url.removeprefix("sqlite:///"), busy_timeout_ms=int(timeout_s * 1000))
    if url.startswith(("postgresql://", "postgres://")):
        from mesh.store.postgres import PostgresDriver  # psycopg loads only when used

        return PostgresDriver(url, timeout_s=timeout_s)
    raise ValueError(
        f"unsupported storage URL {url!r}: use sqlite:///PATH, postgresql://... or memory://"
    )
