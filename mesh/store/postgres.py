"""PostgreSQL, the production store: a pool of synchronous psycopg connections driven from
worker threads, every statement under ``statement_timeout``.

Writes are group committed. Every write takes the cluster-wide advisory lock and pays for a
synchronous commit, so one write at a time per transaction capped registrations at about 560/s
(`make bench`). Instead, writes queue while the previous batch commits, and the next batch
runs them all in one transaction, pipelined (see ``_pipelined``); should one fail, the batch
reruns with each write in a savepoint, so that the failure rolls back alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mesh.errors import Conflict, MeshError, StoreUnavailable
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

__all__ = ["PostgresDriver"]


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    return re.sub(r"\?", "%s", sql)


class _PgCursor:
    """Adapts ``?`` placeholders to psycopg's ``%s``.

    In a pipeline, every statement gets its own psycopg cursor: a cursor with several
    statements in flight may hand a fetch the result of an earlier one ("the last operation
    didn't produce records"). A fetch or a rowcount first syncs, so that every statement
    queued so far, its own included, has its result.
    """

    audit_head: tuple[int, str] | None = None  # see records.append_audit

    def __init__(self, conn: Any, pipeline: Any = None) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self._pipeline = pipeline

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> _PgCursor:
        if self._pipeline is not None:
            self._cur = self._conn.cursor()
        self._cur.execute(_placeholders(sql), params)
        return self

    def _results(self) -> Any:
        if self._pipeline is not None:
            self._pipeline.sync()
        return self._cur

    def fetchone(self) -> Any:
        return self._results().fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._results().fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._results().rowcount)


# Every write takes this transaction-scoped advisory lock, so appends to the audit chain
# (and the revocation sequence) are linear across all replicas sharing the database.
WRITE_LOCK_SQL = "SELECT pg_advisory_xact_lock(7461766)"


class PostgresDriver:
    backend = "postgresql"
    bounded = False  # a stalled network can outlast statement_timeout: the store arms a timer

    def __init__(self, url: str, pool_size: int = 8, timeout_s: float = 2.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        # What a write may fail with and still leave the rest of its batch to commit.
        self._expected = (MeshError, psycopg.errors.IntegrityError)
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
                # Reads are one statement, or a few that need no snapshot in common: without
                # a transaction each is one round trip, not three (BEGIN, SELECT, COMMIT).
                # Writes open theirs explicitly.
                "autocommit": True,
                "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            },
            reconnect_timeout=0,
        )
        self.pool.open(wait=False)
        self.executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="pg")
        self._pending: list[Pending] = []
        self._committer: asyncio.Task[None] | None = None

    async def call(self, work: Work[T], write: bool) -> T:
        loop = asyncio.get_running_loop()
        if not write:
            return await loop.run_in_executor(self.executor, self._read, work)
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((work, future))
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit_batches())
        return await future

    async def _commit_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = live(self._pending), []
            if not batch:
                continue
            works = [work for work, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self.executor, self._write, works)
            except Exception as exc:
                outcomes = [(None, exc)] * len(batch)
            settle([future for _, future in batch], outcomes)

    def _read(self, work: Work[T]) -> T:
        with self._errors(), self.pool.connection() as conn:
            return work(_PgCursor(conn))

    def _write(self, works: list[Work[Any]]) -> list[Outcome]:
        with self._errors():
            return group_commit(self._transaction, works, self._translate)

    def _transaction(self, works: list[Work[Any]], isolate: bool) -> list[Outcome]:
        if not isolate:
            return self._pipelined(works)
        outcomes: list[Outcome] = []
        with self.pool.connection() as conn, conn.transaction():
            cur = _PgCursor(conn)
            cur.execute(WRITE_LOCK_SQL)
            for work in works:
                try:
                    with conn.transaction():  # a savepoint
                        outcomes.append((work(cur), None))
                except self._expected as exc:
                    cur.audit_head = None
                    outcomes.append((None, self._translate(exc)))
        return outcomes

    def _pipelined(self, works: list[Work[Any]]) -> list[Outcome]:
        """The batch in pipeline mode: statements go out without waiting for each other's
        results, so a batch costs the round trips its reads need (the audit head, once) and
        one to commit, instead of one a statement. A failed statement surfaces when the
        pipeline syncs, which rolls the batch back (see WriteFailed)."""
        try:
            with (
                self.pool.connection() as conn,
                conn.pipeline() as pipeline,
                conn.transaction(),  # BEGIN and COMMIT ride in the pipeline too
            ):
                cur = _PgCursor(conn, pipeline)
                cur.execute(WRITE_LOCK_SQL)
                return [(work(cur), None) for work in works]
        except self._expected as exc:
            raise WriteFailed(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, self._psycopg.errors.UniqueViolation):
            return Conflict(str(exc).splitlines()[0])
        return exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from psycopg_pool import PoolTimeout

        psycopg = self._psycopg
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(str(exc).splitlines()[0]) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"postgresql: {first}") from exc

    def close(self) -> None:
        self.pool.close(timeout=1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
