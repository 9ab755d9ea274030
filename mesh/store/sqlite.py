"""SQLite, the embedded default: durable (WAL), and safe for several processes on one machine.

Everything runs on the event loop's thread, because a hop to a worker thread cost more than
the statement itself (measured: 254 us a write through a thread versus 128 us inline). Reads
use their own connection: under WAL a reader never waits for a writer. Writes are group
committed: every write submitted during two turns of the event loop joins one transaction (see
``WriteFailed`` for how one failing write, a duplicate say, rolls back alone). The only wait
that can block is for another process's write lock, bounded by ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from mesh.errors import Conflict, MeshError, StoreUnavailable
from mesh.store import records
from mesh.store.driver import (
    Outcome,
    Pending,
    T,
    Work,
    WriteFailed,
    group_commit,
    live,
    settle,
)

__all__ = ["SqliteDriver"]


class _WriteCursor(sqlite3.Cursor):
    audit_head: tuple[int, str] | None = None  # see records.append_audit
    audit_unsigned: tuple[int, str] | None = None  # see records.sign_tail


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(str(exc))
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"sqlite: {exc}")
    return exc


class SqliteDriver:
    backend = "sqlite"
    # See Driver; the timer cost 15-20 us a call (py-spy, `make bench`).
    bounds_reads = bounds_writes = True

    def __init__(self, path: str, busy_timeout_ms: int = 2000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._conns: dict[str, sqlite3.Connection] = {}
        self._pending: list[Pending] = []

    def _connection(self, role: str) -> sqlite3.Connection:
        # An in-memory database exists once per connection: readers share the writer's.
        role = "write" if self.path == ":memory:" else role
        if role not in self._conns:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA mmap_size=268435456")
            self._conns[role] = conn
        return self._conns[role]

    async def call(self, work: Work[T], write: bool) -> T:
        if not write:
            return self._read(work)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            # The batch commits a loop turn later than it could: the writes of requests read
            # in that turn join it. With 32 clients a batch grew from 14 writes to 26-31 on
            # average, and a registration cost 244-257 us of CPU instead of 261-265 (A/B of
            # 3 runs each, wrk as in `make bench`). It costs a write no more than a turn.
            loop.call_soon(loop.call_soon, self._commit_batch)
        self._pending.append((work, future))
        return await future

    def _read(self, work: Work[T]) -> T:
        try:
            conn = self._connection("read")
            conn.execute("BEGIN")
            try:
                return work(conn.cursor())
            finally:
                conn.rollback()
        except sqlite3.Error as exc:
            self._reset("read")
            raise _translate(exc) from exc

    def _commit_batch(self) -> None:
        batch, self._pending = live(self._pending), []
        if not batch:
            return
        works = [work for work, _ in batch]
        try:
            outcomes = group_commit(self._transaction, works, _translate)
        except sqlite3.Error as exc:
            self._reset("write")
            outcomes = [(None, _translate(exc))] * len(batch)
        except Exception as exc:  # a bug in a write: its callers get it, not a hang
            outcomes = [(None, exc)] * len(batch)
        settle([future for _, future in batch], outcomes)

    def _transaction(self, works: list[Work[Any]], isolate: bool) -> list[Outcome]:
        """One transaction for the batch; see WriteFailed for when writes are isolated."""
        conn = self._connection("write")
        cur = conn.cursor(_WriteCursor)
        cur.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [self._apply(cur, work, isolate) for work in works]
            records.sign_tail(cur)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return outcomes

    @staticmethod
    def _apply(cur: Any, work: Work[Any], isolate: bool) -> Outcome:
        if not isolate:
            try:
                return work(cur), None
            except (MeshError, sqlite3.IntegrityError) as exc:
                raise WriteFailed(exc) from exc
        cur.execute("SAVEPOINT w")
        unsigned = cur.audit_unsigned
        try:
            result = work(cur)
        except (MeshError, sqlite3.IntegrityError) as exc:
            cur.audit_head, cur.audit_unsigned = None, unsigned
            cur.execute("ROLLBACK TO w")
            cur.execute("RELEASE w")
            return None, _translate(exc)
        cur.execute("RELEASE w")
        return result, None

    def _reset(self, role: str) -> None:
        conn = self._conns.pop(role, None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        for role in list(self._conns):
            self._reset(role)
