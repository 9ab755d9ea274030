"""Database drivers: run one synchronous transaction function in a worker thread.

Store operations are plain functions over a DB-API cursor, written once in ``records`` with
``?`` placeholders. A driver owns the connections and the thread(s), opens the transaction,
takes the cluster-wide write lock that keeps the audit chain linear across replicas, and
translates driver errors into ``Conflict`` and ``StoreUnavailable``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mesh.errors import Conflict, StoreUnavailable

__all__ = ["Driver", "PostgresDriver", "SqliteDriver", "open_driver"]

T = TypeVar("T")
Work = Callable[[Any], T]


class Driver(Protocol):
    backend: str
    executor: ThreadPoolExecutor

    def run(self, work: Work[T], write: bool) -> T: ...
    def close(self) -> None: ...


class SqliteDriver:
    """One connection on one thread: SQLite serialises writers anyway, and a thread of its own
    keeps a lock wait (another replica writing) off the event loop. WAL lets the other
    processes read while one writes."""

    backend = "sqlite"

    def __init__(self, path: str, busy_timeout_ms: int = 2000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
        return self._conn

    def run(self, work: Work[T], write: bool) -> T:
        try:
            conn = self._connection()
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(cur)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return result
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.Error as exc:
            self._reset()
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def _reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        self.executor.submit(self._reset).result()
        self.executor.shutdown(wait=True)


class _PgCursor:
    """Adapts ``?`` placeholders to psycopg's ``%s``."""

    _marks = re.compile(r"\?")

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> _PgCursor:
        self._cur.execute(self._marks.sub("%s", sql), params)
        return self

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


# Every write takes this transaction-scoped advisory lock, so appends to the audit chain
# (and the revocation sequence) are linear across all replicas sharing the database.
WRITE_LOCK_SQL = "SELECT pg_advisory_xact_lock(7461766)"


class PostgresDriver:
    backend = "postgresql"

    def __init__(self, url: str, pool_size: int = 8, timeout_s: float = 2.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self.url = url
        timeout_ms = int(timeout_s * 1000)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout_s,
            open=False,
            kwargs={
                "connect_timeout": max(1, int(timeout_s)),
                "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            },
            reconnect_timeout=0,
        )
        self.pool.open(wait=False)
        self.executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="pg")
        self._lock = threading.Lock()

    def run(self, work: Work[T], write: bool) -> T:
        from psycopg_pool import PoolTimeout

        psycopg = self._psycopg
        try:
            with self.pool.connection() as conn, conn.transaction():
                cur = conn.cursor()
                if write:
                    cur.execute(WRITE_LOCK_SQL)
                return work(_PgCursor(cur))
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(str(exc).splitlines()[0]) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"postgresql: {first}") from exc

    def close(self) -> None:
        self.pool.close(timeout=1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)


def open_driver(url: str, timeout_s: float = 2.0) -> Driver:
    if url.startswith("sqlite:///"):
        return SqliteDriver(url.removeprefix("sqlite:///") or ":memory:",
                            busy_timeout_ms=int(timeout_s * 1000))
    if url in ("memory://", "sqlite://", "sqlite:///:memory:"):
        return SqliteDriver(":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDriver(url, timeout_s=timeout_s)
    raise ValueError(
        f"unsupported storage URL {url!r}: use sqlite:///PATH, postgresql://... or memory://"
    )
