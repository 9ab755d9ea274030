"""PostgreSQL, the production store: a pool of synchronous psycopg connections driven from
worker threads, every statement under ``statement_timeout``."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mesh.errors import Conflict, StoreUnavailable
from mesh.store.driver import T, Work

__all__ = ["PostgresDriver"]


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

    async def call(self, work: Work[T], write: bool) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run, work, write)

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
