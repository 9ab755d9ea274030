"""A batch of PostgreSQL writes as few statements as possible.

Each statement costs psycopg's client CPU of its own, so within a batch, plain single-row
INSERTs are gathered per statement and sent as one INSERT per table, its rows in one JSON
array typed by the table's own row type. A registration's client CPU fell from 52-57 us to
23 (a batch of 26 through the driver, one thread, scratch microbenchmark). The
tables have no foreign keys, so inserting table by table changes nothing another statement
could see; any other statement, and any request for a result, sends what was gathered first.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

__all__ = ["DeferredCursor", "NeedsResult", "Params", "Statements", "placeholders"]

Params = tuple[Any, ...] | list[Any]

_ROW_INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \(\?(?:, \?)*\)")


@functools.lru_cache(maxsize=256)
def placeholders(sql: str) -> str:
    """``?`` (how ``records`` writes its SQL) to psycopg's ``%s``."""
    return sql.replace("?", "%s")


@functools.lru_cache(maxsize=256)
def _rows_insert(sql: str) -> tuple[str, tuple[str, ...]] | None:
    """For a plain single-row INSERT: the statement that inserts many rows from one JSON
    array, and the columns each row names."""
    match = _ROW_INSERT.fullmatch(sql)
    if match is None:
        return None
    table, listed = match.groups()
    columns = tuple(c.strip() for c in listed.split(","))
    if sql.count("?") != len(columns):
        return None
    return (
        f"INSERT INTO {table} ({listed}) SELECT {listed}"
        f" FROM json_populate_recordset(NULL::{table}, %s)",
        columns,
    )


class Statements:
    """The statements of a transaction, in order, with single-row INSERTs gathered."""

    def __init__(self) -> None:
        self._ready: list[tuple[str, Params]] = []
        self._rows: dict[str, list[Params]] = {}  # gathered: statement -> each row's params
        self._latest: tuple[str, Params] | None = None  # the latest statement, if gathered

    def add(self, sql: str, params: Params) -> bool:
        """Queues a statement; True when it was gathered (it has no result of its own)."""
        if _rows_insert(sql) is not None:
            self._rows.setdefault(sql, []).append(params)
            self._latest = (sql, params)
            return True
        self._latest = None
        self._gather_done()
        self._ready.append((placeholders(sql), params))
        return False

    def ungather_latest(self) -> bool:
        """Turns the latest statement, if gathered, back into one of its own, so that it
        has a result (a rowcount, say); True when it did."""
        if self._latest is None:
            return False
        sql, params = self._latest
        self._rows[sql].pop()
        self._gather_done()
        self._ready.append((placeholders(sql), params))
        self._latest = None
        return True

    def drain(self) -> list[tuple[str, Params]]:
        """Every statement queued, gathered rows last, ready for psycopg; then empty."""
        self._gather_done()
        ready, self._ready, self._latest = self._ready, [], None
        return ready

    def _gather_done(self) -> None:
        gathered, self._rows = self._rows, {}
        for sql, rows in gathered.items():
            if not rows:
                continue
            query, columns = _rows_insert(sql) or ("", ())
            try:
                payload = json.dumps(
                    [dict(zip(columns, row, strict=True)) for row in rows], allow_nan=False
                )
            except (TypeError, ValueError):  # a value JSON cannot carry exactly: row by row
                self._ready += [(placeholders(sql), row) for row in rows]
            else:
                self._ready.append((query, (payload,)))


class NeedsResult(Exception):
    """A write asked for a result, which a DeferredCursor cannot give before it is sent."""


class DeferredCursor:
    """A write cursor that only records: for batches sent all at once, after the fact.

    The audit head comes from the caller, who read it under the write lock."""

    def __init__(self, audit_head: tuple[int, str]) -> None:
        self.audit_head: tuple[int, str] | None = audit_head  # see records.append_audit
        self.audit_unsigned: tuple[int, str] | None = None  # see records.sign_tail
        self.statements = Statements()

    def execute(self, sql: str, params: Params = ()) -> DeferredCursor:
        self.statements.add(sql, params)
        return self

    def fetchone(self) -> Any:
        raise NeedsResult

    def fetchall(self) -> list[Any]:
        raise NeedsResult

    @property
    def rowcount(self) -> int:
        raise NeedsResult
