"""Whether a request may have changed anything: what a 503 promises and a 504 admits.

A request that failed before any write was sent changed nothing, so the front door may send
it again to another replica: the store's errors answer 503 then. Once a write was sent (a
nonce claimed, a row inserted), a failure leaves its outcome unknown: 504, never retried by
the door, and a client's retry of the same signed request is refused as a replay.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["begin", "may_have_written", "wrote"]

# A mutable cell per request, so that work in a copied context (a task) still marks it.
_WRITES: ContextVar[list[bool] | None] = ContextVar("mesh_request_writes", default=None)


def begin() -> None:
    """A request starts: it has written nothing yet."""
    _WRITES.set([False])


def wrote() -> None:
    """A write is being sent on this request's behalf."""
    cell = _WRITES.get()
    if cell is not None:
        cell[0] = True


def may_have_written() -> bool:
    cell = _WRITES.get()
    return cell is None or cell[0]  # outside a request: assume the worst
