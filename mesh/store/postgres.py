"""PostgreSQL, the production store, every statement under ``statement_timeout``.

Writes are group committed. A write that appends to the audit log takes the cluster-wide
advisory lock and pays for a synchronous commit, so one at a time per transaction capped
registrations at about 560/s
(`make bench`). Instead, writes queue, and a batch runs them all in one transaction with its
INSERTs gathered (see ``pgbatch``). Two batches can be in flight: while one commits, the next
waits for the lock at the server, and the loop serves the requests of the one after.

A batch whose writes need no result before commit (a registration, a credential, a
challenge) runs on the event loop over one async connection, in one round trip and no
thread: its writes are computed from the audit head the previous batch left, and sent as one
implicit transaction behind the lock and a check, under it, that the head is still that one;
a batch that appends nothing (replay nonces, challenges) skips both. Any other batch, and
every read, runs on a pool of synchronous connections in worker threads. Should a write
fail, its batch reruns there with each write in a savepoint, so that the failure rolls back
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import threading
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
    audit_unsigned: tuple[int, str] | None = None  # see records.sign_tail

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

# Batches in flight at once. With one, every writer waited on the same commit: at 32 clients a
# batch held 28 of them, and the loop sat idle through each commit's round trip and WAL flush
# (the core 0.88 busy). With two, the writers split in two cohorts that take turns: the core
# was 0.99 busy, and registrations went from 0.475-0.485 of the hello-world rate to 0.517-0.522,
# though a batch of 16 costs 10-13 us more a registration than one of 28 (3 interleaved runs
# each, wrk as in `make bench`).
IN_FLIGHT = 2


def _unavailable(exc: Exception) -> StoreUnavailable:
    """A lost or refused connection, in one line for the 503 body."""
    text = str(exc).strip()
    return StoreUnavailable(f"postgresql: {text.splitlines()[0] if text else type(exc).__name__}")


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


# Every batch that appends to the audit log takes this transaction-scoped advisory lock (on
# worker threads, every batch), so the log (and the revocation sequence, always written with
# an entry) is in one total, gap-free order across all replicas sharing the database.
WRITE_LOCK_SQL = "SELECT pg_advisory_xact_lock(7461766)"

# The audit head a batch is first run from when it is not known: if the batch appends, it
# runs again from the head read under the lock.
_UNKNOWN_HEAD = (-2, "")

# Under the lock, that the audit log's head is still the one a batch was computed from: the
# head its own previous batch committed, unless another replica, a worker thread's batch or
# a restore has changed the log since. If not, the division by a count of 0 fails the batch's
# implicit transaction before anything is written, and the batch reruns from the head read.
HEAD_CHECK_SQL = (
    f"SELECT 1 / count(*) FROM ({records.AUDIT_HEAD_SQL}) head WHERE seq = %s AND hash = %s"
)


class PostgresDriver:
    backend = "postgresql"
    # A stalled network can outlast statement_timeout: the store arms a timer for each read,
    # and writes run under their batch's deadline (see _commit).
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
        self._recycling = threading.Lock()
        self._writers: set[Any] = set()  # the event loop's async connections
        self._idle: list[Any] = []  # those between batches
        self._in_flight: dict[asyncio.Task[None], int] = {}  # each batch and its size
        # The audit head the batch sent last leaves if it commits: where the next one starts.
        self._head: tuple[int, str] | None = None
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
        if self._due():
            self._start_batch()
        elif self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit_batches())
        return await future

    async def _commit_batches(self) -> None:
        while self._pending:
            while len(self._in_flight) >= IN_FLIGHT:
                await asyncio.wait(list(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            if self._pending and len(self._in_flight) < IN_FLIGHT:
                self._start_batch()

    def _due(self) -> bool:
        """Whether a batch goes out now, without waiting for loop turns: when another is
        committing and as many writes wait as it holds. The writers then settle into two
        cohorts that take turns, one committing while the loop serves the other."""
        in_flight = sum(self._in_flight.values())
        return 0 < in_flight <= len(self._pending) and len(self._in_flight) < IN_FLIGHT

    def _start_batch(self) -> None:
        """Sends the oldest pending writes, half of all outstanding (rounded up)."""
        outstanding = len(self._pending) + sum(self._in_flight.values())
        size = -(-outstanding // IN_FLIGHT)
        batch = live(self._pending[:size])
        del self._pending[:size]
        if batch:
            # The writes left pending keep the batch's deadline: early, never late.
            task = asyncio.get_running_loop().create_task(
                self._commit(batch, self._oldest + self.timeout_s)
            )
            self._in_flight[task] = len(batch)
            task.add_done_callback(self._in_flight.pop)

    async def _commit(self, batch: list[Pending], deadline: float) -> None:
        works = [work for work, _ in batch]
        try:
            # One timer a batch bounds every write in it, instead of one a write: none
            # of them has waited longer than its first.
            outcomes = await self._on_loop_by(deadline, works)
            if outcomes is None:
                async with asyncio.timeout_at(deadline):
                    outcomes = await asyncio.get_running_loop().run_in_executor(
                        self.executor, self._write, works
                    )
        except Exception as exc:  # TimeoutError included: the store names the timeout
            outcomes = [(None, exc)] * len(batch)
        settle([future for _, future in batch], outcomes)

    async def _on_loop_by(self, deadline: float, works: list[Work[Any]]) -> list[Outcome] | None:
        async with asyncio.timeout_at(deadline):
            conn = await self._connection()
        task = asyncio.get_running_loop().create_task(self._on_loop(conn, works))
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except (TimeoutError, asyncio.CancelledError):
            # Cancelled mid-protocol, the task would ROLLBACK and wait for the answer, from a
            # network that may be silent. With the socket closed first, that fails at once.
            self._discard(conn)
            task.cancel()
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise
        finally:
            self._release(conn)

    async def _on_loop(self, conn: Any, works: list[Work[Any]]) -> list[Outcome] | None:
        """The batch over the async connection, if none of its writes needs a result before
        commit. Its writes run against a DeferredCursor from the audit head the previous
        batch left, and go out in one round trip: one implicit transaction behind the lock
        and HEAD_CHECK_SQL. Should the head have moved, or be unknown, the batch reads it
        under the lock first (a second round trip).

        None when the batch rolled back for the worker threads to run: a write needed a
        result, or failed (they isolate the failure), or the schema is not there yet."""
        psycopg = self._psycopg
        head, self._head = self._head, None  # unknown until this batch's writes go out
        try:
            if head is not None:
                try:
                    return await self._commit_from(conn, head, works, locked=False)
                except psycopg.errors.DivisionByZero:  # the head moved: see HEAD_CHECK_SQL
                    self._head = None
            elif (done := await self._commit_from(conn, None, works, locked=False)) is not None:
                return done  # it appended nothing: no head needed
            cur = psycopg.AsyncClientCursor(conn)
            await cur.execute(f"BEGIN; {WRITE_LOCK_SQL}; {records.AUDIT_HEAD_SQL}")
            while cur.nextset():  # to the last statement's result
                pass
            head = records.audit_head(await cur.fetchone())
            return await self._commit_from(conn, head, works, locked=True)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._head = None
            self._discard(conn)
            raise _unavailable(exc) from exc
        except (NeedsResult, MeshError, psycopg.Error):
            self._head = None
            await self._rollback(conn)
            return None

    async def _commit_from(
        self, conn: Any, head: tuple[int, str] | None, works: list[Work[Any]], locked: bool
    ) -> list[Outcome] | None:
        """Runs the works from ``head`` and sends what they wrote with the end of the
        transaction: COMMIT when the lock is ``locked`` already, else the lock and the
        head's check in front, all in one implicit transaction.

        A batch that appends nothing to the audit log (replay nonces, challenges) goes out
        without the lock: the lock only keeps the log's order total and gap-free, and such
        writes need no order. With 3 replicas on one PostgreSQL, 0.25-2.6 sessions waited
        for the lock on average during decisions (a nonce each), by the machine's load;
        none since (`python -m mesh.bench.replicas`). None when ``head`` is unknown and the
        works did append: the caller reads the head under the lock and runs them again."""
        start = head if head is not None else _UNKNOWN_HEAD
        cur = DeferredCursor(start)
        outcomes: list[Outcome] = [(work(cur), None) for work in works]
        appended = cur.audit_head != start
        if appended and head is None:
            return None
        records.sign_tail(cur)
        # One string of statements, its values quoted by psycopg: a batch in psycopg's
        # pipeline mode cost 450-490 us of client CPU, against 185-260 for the same work in
        # two such strings (scratch microbenchmark, one connection, batches of 1 and 29).
        client = self._psycopg.AsyncClientCursor(conn)
        script = [client.mogrify(query, params) for query, params in cur.statements.drain()]
        if locked:
            script.append("COMMIT")
        elif appended:
            script[:0] = [WRITE_LOCK_SQL, client.mogrify(HEAD_CHECK_SQL, head)]
        self._head = head if not appended else cur.audit_head  # the next batch starts there
        await client.execute("; ".join(script))
        return outcomes

    async def _connection(self) -> Any:
        """An idle async connection, or a new one. One that died idle (a restart, a restore)
        is dropped first: a batch sent whole cannot be retried, as it cannot tell how far it
        got. Between batches the server has nothing to say to a connection, unless it is
        hanging up: its FATAL, then EOF."""
        psycopg = self._psycopg
        while self._idle:
            conn = self._idle.pop()
            if not _readable(conn.fileno()):
                return conn
            self._discard(conn)
            self._head = None
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, **self._connect_kwargs)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise _unavailable(exc) from exc
        self._writers.add(conn)
        return conn

    def _release(self, conn: Any) -> None:
        if conn.closed or conn.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
            self._discard(conn)
        else:
            self._idle.append(conn)

    def _discard(self, conn: Any) -> None:
        """Closes a connection without a word to the server: it may be gone or mid-protocol,
        and the loop itself may be gone."""
        conn.pgconn.finish()
        self._writers.discard(conn)

    async def _rollback(self, conn: Any) -> None:
        """Ends the transaction a batch left open when it failed between round trips."""
        psycopg = self._psycopg
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                await conn.execute("ROLLBACK")
            except psycopg.Error:
                self._discard(conn)

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
                unsigned = cur.audit_unsigned
                try:
                    with conn.transaction():  # a savepoint
                        outcomes.append((work(cur), None))
                except self._expected as exc:
                    cur.audit_head, cur.audit_unsigned = None, unsigned
                    outcomes.append((None, self._translate(exc)))
            records.sign_tail(cur)
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
                records.sign_tail(cur)
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
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._recycle()
            raise _unavailable(exc) from exc
        except PoolTimeout as exc:
            raise _unavailable(exc) from exc

    def _recycle(self) -> None:
        """After a lost connection, test the idle ones and replace those that are dead too:
        a failover through the front door cuts every session at once, and without this each
        would fail one call of its own (and the store's breaker would open again on them).
        One thread checks at a time; the others do not wait for it."""
        if not self._recycling.acquire(blocking=False):
            return
        try:
            with contextlib.suppress(Exception):  # a failed check leaves the pool as it was
                self.pool.check()
        finally:
            self._recycling.release()

    def close(self) -> None:
        for conn in list(self._writers):
            self._discard(conn)
        self.pool.close(timeout=1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
