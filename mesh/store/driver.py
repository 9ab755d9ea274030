"""What a database driver offers the store: run one transaction function, read or write.

Store operations are plain functions over a DB-API cursor, written once in ``records`` with
``?`` placeholders. A driver owns the connections, opens the transaction, takes whatever lock
keeps the audit chain linear across replicas, and translates its errors into ``Conflict`` and
``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = [
    "Driver",
    "Outcome",
    "Pending",
    "T",
    "Work",
    "WriteFailed",
    "group_commit",
    "live",
    "settle",
]

T = TypeVar("T")
Work = Callable[[Any], T]
Pending = tuple[Work[Any], "asyncio.Future[Any]"]  # a queued write and who waits for it
Outcome = tuple[Any, BaseException | None]  # a write's result, or why it failed


class WriteFailed(Exception):
    """A write in a batch failed (a duplicate, say). Batches run optimistically as one plain
    transaction; only when one of its writes fails does the batch roll back and run again with
    each write in its own savepoint, so that the failure rolls back alone. A savepoint costs
    two statements a write, and catching a failure in one means waiting for its result, which
    on PostgreSQL would make a pipelined batch wait statement by statement.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def group_commit(
    transaction: Callable[[list[Work[Any]], bool], list[Outcome]],
    works: list[Work[Any]],
    translate: Callable[[Exception], Exception],
) -> list[Outcome]:
    """Runs a batch with ``transaction(works, isolate)``: first as one plain transaction, and
    again with each write isolated only when one of them failed (see ``WriteFailed``)."""
    try:
        return transaction(works, False)
    except WriteFailed as failed:
        if len(works) == 1:  # its transaction rolled back: nothing else to keep
            return [(None, translate(failed.error))]
    return transaction(works, True)


def live(pending: list[Pending]) -> list[Pending]:
    """Drops queued writes whose caller has already given up (timed out): a write answered
    503 must not commit later, once the database is back."""
    return [(work, future) for work, future in pending if not future.cancelled()]


def settle(futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
    """Hands each waiting caller the outcome of its write in a group commit."""
    for future, (result, error) in zip(futures, outcomes, strict=True):
        if future.cancelled():
            continue  # its caller timed out; the write committed (or not) all the same
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Driver(Protocol):
    backend: str
    # True when the driver bounds such calls itself, so the store need not arm a timer for
    # each: SQLite never awaits I/O, and its only wait (for another process's lock) is under
    # busy_timeout. A driver that bounds a call raises TimeoutError when it runs out of time.
    bounds_reads: bool
    bounds_writes: bool

    async def call(self, work: Work[T], write: bool) -> T: ...
    def close(self) -> None: ...
