"""PostgreSQL, the production store, every statement under ``statement_timeout``.

Writes are group committed. Every write takes the cluster-wide advisory lock and pays for a
synchronous commit, so one write at a time per transaction capped registrations at about 560/s
(`make bench`). Instead, writes queue while the previous batch commits, and the next batch
runs them all in one pipelined transaction with its INSERTs gathered (see ``pgbatch``).

A batch whose writes need no result before commit (a registration, a credential, a
challenge) runs on the event loop over one async connection: it costs two round trips (the
audit head, then the statements and COMMIT) and no thread. Any other batch, and every read,
runs on a pool of synchronous connections in worker threads. Should a write fail, its batch
reruns there with each write in a savepoint, so that the failure rolls back alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
from mesh.store.pgbatch import DeferredCursor, NeedsResult, Params, Statements, placeholders

__all__ = ["PostgresDriver"]


class _PgCursor:
    """A DB-API cursor over a psycopg connection, with ``?`` placeholders.

    In a pipeline, statements queue (gathered, see ``pgbatch``) until a result is asked for
    or the batch ends, and each then gets its own psycopg cursor: a cursor with several
    statements in flight may hand a fetch the result of an earlier one ("the last operation
    didn't produce records"). A fetch or a rowcount first syncs, so that every statement
    queued so far, its own included, has its result.
    """

    audit_head: tuple[int, str] | None = None  # see records.append_audit

    def __init__(self, conn: Any, pipeline: Any = None) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self._pipeline = pipeline
        self._queued = Statements()

    def execute(self, sql: str, params: Params = ()) -> _PgCursor:
        if self._pipeline is None:
            self._cur.execute(placeholders(sql), params)
        elif not self._queued.add(sql, params):
            self.flush()
        return self

    def flush(self) -> None:
        for query, params in self._queued.drain():
            self._cur = self._conn.cursor()
            self._cur.execute(query, params)

    def _results(self) -> Any:
        if self._pipeline is not None:
            self._queued.ungather_latest()  # the result asked for is its own
            self.flush()
            self._pipeline.sync()
        return self._cur

    def fetchone(self) -> Any:
        return self._results().fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._results().fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._results().rowcount)


# Loop turns a batch waits for more writes before it starts: with 32 clients, 3 turns or more
# took a batch from 16.5 writes to 28.7, and a registration from 198-202 us of server CPU to
# 178-181 (1 or 2 turns changed nothing; one run each of 0-8 turns, wrk as in `make bench`).
GATHER_TURNS = 3


def _unavailable(exc: Exception) -> StoreUnavailable:
    """A lost or refused connection, in one line for the 503 body."""
    text = str(exc).strip()
    return StoreUnavailable(f"postgresql: {text.splitlines()[0] if text else type(exc).__name__}")


# Every write takes this transaction-scoped advisory lock, so appends to the audit chain
# (and the revocation sequence) are linear across all replicas sharing the database.
WRITE_LOCK_SQL = "SELECT pg_advisory_xact_lock(7461766)"


class PostgresDriver:
    backend = "postgresql"
    # A stalled network can outlast statement_timeout: the store arms a timer for each read,
    # and writes run under their batch's deadline (see _commit_batches).
    bounds_reads = False
    bounds_writes = True

    def __init__(self, url: str, pool_size: int = 8, timeout_s: float = 2.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        # What a write may fail with and still leave the rest of its batch to commit.
        self._expected = (MeshError, psycopg.errors.IntegrityError)
        self.url = url
        self.timeout_s = timeout_s
        timeout_ms = int(timeout_s * 1000)
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": max(1, int(timeout_s)),
            # Reads are one statement, or a few that need no snapshot in common: without a
            # transaction each is one round trip, not three (BEGIN, SELECT, COMMIT). Writes
            # open theirs explicitly.
            "autocommit": True,
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        }
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout_s,
            open=False,
            kwargs=self._connect_kwargs,
            reconnect_timeout=0,
        )
        self.pool.open(wait=False)
        self.executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="pg")
        self._writer: Any = None  # the event loop's async connection, opened on first use
        self._pending: list[Pending] = []
        self._oldest = 0.0  # when the first pending write arrived (loop time)
        self._committer: asyncio.Task[None] | None = None

    async def call(self, work: Work[T], write: bool) -> T:
        loop = asyncio.get_running_loop()
        if not write:
            return await loop.run_in_executor(self.executor, self._read, work)
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            self._oldest = loop.time()  # the next batch's deadline counts from its first write
        self._pending.append((work, future))
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit_batches())
        return await future

    async def _commit_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            deadline = self._oldest + self.timeout_s
            batch, self._pending = live(self._pending), []
            if not batch:
                continue
            works = [work for work, _ in batch]
            try:
                # One timer a batch bounds every write in it, instead of one a write: none
                # of them has waited longer than its first.
                outcomes = await self._on_loop_by(deadline, works)
                if outcomes is None:
                    async with asyncio.timeout_at(deadline):
                        outcomes = await loop.run_in_executor(self.executor, self._write, works)
            except Exception as exc:  # TimeoutError included: the store names the timeout
                outcomes = [(None, exc)] * len(batch)
            settle([future for _, future in batch], outcomes)

    async def _on_loop_by(self, deadline: float, works: list[Work[Any]]) -> list[Outcome] | None:
        task = asyncio.get_running_loop().create_task(self._on_loop(works))
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except TimeoutError:
            # Cancelled mid-protocol, the task would ROLLBACK and wait for the answer, from a
            # network that may be silent. With the socket closed first, that fails at once.
            self._drop_writer()
            task.cancel()
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise

    async def _on_loop(self, works: list[Work[Any]]) -> list[Outcome] | None:
        """The batch over the async connection, if none of its writes needs a result before
        commit: the audit head is read under the lock first, the writes run against a
        DeferredCursor, and what they wrote goes out in the same pipeline as COMMIT.

        None when the batch rolled back for the worker threads to run: a write needed a
        result, or failed (they isolate the failure), or the schema is not there yet."""
        psycopg = self._psycopg
        retried = False
        while True:
            sent = False  # have the writes gone out? Before, a dead connection lost nothing
            try:
                if self._writer is None or self._writer.closed:
                    self._writer = await psycopg.AsyncConnection.connect(
                        self.url, **self._connect_kwargs
                    )
                conn = self._writer
                async with conn.pipeline() as pipeline, conn.transaction():
                    await conn.execute(WRITE_LOCK_SQL)
                    head = await conn.execute(records.AUDIT_HEAD_SQL)
                    await pipeline.sync()
                    cur = DeferredCursor(records.audit_head(await head.fetchone()))
                    outcomes: list[Outcome] = [(work(cur), None) for work in works]
                    sent = True
                    for query, params in cur.statements.drain():
                        await conn.execute(query, params)
                return outcomes
            except NeedsResult:
                return None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop_writer()
                # The connection may have died idle (a restart, a restore): once, a fresh
                # one retries a batch none of whose writes went out.
                if sent or retried:
                    raise _unavailable(exc) from exc
                retried = True
            except (MeshError, psycopg.Error):
                return None

    def _drop_writer(self) -> None:
        """Closes the async connection without a word to the server: it may be gone or
        mid-protocol, and the loop itself may be gone."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.pgconn.finish()

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
                outcomes: list[Outcome] = [(work(cur), None) for work in works]
                cur.flush()
                return outcomes
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
            raise _unavailable(exc) from exc

    def close(self) -> None:
        self._drop_writer()
        self.pool.close(timeout=1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
