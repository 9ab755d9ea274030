"""The witness: the newest checkpoint of the audit log, kept outside the database, and the
refusal to go backwards. A replica offers each checkpoint it signs; the witness takes it only
if it extends the one it holds (an RFC 9162 consistency proof), and says why not otherwise:
entries lost (truncation) or history that no longer hashes the same (a rewrite).

Every replica keeps one in memory; with Redis configured they share one key, advanced by
compare-and-set, which rules while Redis answers: a replica that restarts, or another one,
holds the log to what was seen, and a reset (after a deliberate restore) reaches them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mesh.checkpoint import Checkpoint, CheckpointError, LogVerifier
from mesh.merkle import verify_consistency

__all__ = ["Refused", "Witness", "check_extends", "redis_key"]

log = logging.getLogger("mesh")


def redis_key(origin: str) -> str:
    """One witness per log (its origin names its key), so logs sharing a Redis keep apart."""
    return f"agentmesh:audit:checkpoint:{origin}"


# Sets the key only if it still holds what the caller read ("" for none).
_CAS = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class Refused(Exception):
    """A checkpoint that does not extend the witnessed one; ``index`` is the first entry the
    two disagree about as far as the proofs can tell."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.message, self.index = message, index


def check_extends(old: Checkpoint, new: Checkpoint, proof: list[bytes]) -> None:
    """Raises Refused unless ``new`` extends ``old`` (``proof``: consistency old -> new)."""
    if new.size < old.size:
        raise Refused(
            f"the log holds {new.size} entries, the witnessed checkpoint {old.size}:"
            f" truncated at index {new.size}",
            new.size,
        )
    if not verify_consistency(old.size, new.size, proof, old.root, new.root):
        raise Refused(
            f"the first {old.size} entries no longer hash to the witnessed root:"
            f" rewritten at an index below {old.size}",
            0,
        )


class Witness:
    def __init__(self, verifier: LogVerifier, redis: Any = None) -> None:
        self.verifier = verifier
        self.redis = redis
        self.key = redis_key(verifier.origin)
        self.latest: Checkpoint | None = None

    async def _shared(self) -> tuple[str, Checkpoint | None]:
        """The note Redis holds (as read, for the compare-and-set) and its checkpoint; a note
        that is not this log's is reported and treated as none."""
        raw = await self.redis.get(self.key)
        text = raw.decode() if raw else ""
        if not text:
            return "", None
        try:
            return text, self.verifier.verify(text)
        except CheckpointError as exc:
            log.error("the witnessed checkpoint in Redis is not this log's: %s", exc)
            return text, None

    async def offer(
        self, cp: Checkpoint, prove: Callable[[int], list[bytes]], walked_since: float
    ) -> bool:
        """Takes ``cp`` if it extends the witnessed checkpoint; False when a newer one is held
        that the signer may simply not have read yet (it walked the log before that one was
        signed), or another replica advanced Redis first. Raises Refused when ``cp`` cannot
        extend it. Without Redis (or while it fails) the in-memory witness holds alone."""
        held, shared, previous = "", None, self.latest
        if self.redis is not None:
            try:
                held, shared = await self._shared()
                previous = shared  # the shared witness rules while it answers
            except Exception as exc:  # Redis down: this replica's own witness holds alone
                log.warning("witness in Redis unavailable: %s", exc)
        if previous is not None:
            if cp.size < previous.size and previous.timestamp + 1 >= walked_since:
                return False  # signed while this replica was walking: catch up next time
            check_extends(previous, cp, prove(previous.size) if cp.size >= previous.size else [])
        newer = shared is None or (shared.size, shared.timestamp) < (cp.size, cp.timestamp)
        if self.redis is not None and newer and not await self._swap(held, cp.note):
            return False  # another replica moved it first; the next pass offers again
        self.latest = cp
        return True

    async def _swap(self, held: str, note: str) -> bool:
        """Compare-and-set; True also when Redis is down (the in-memory witness took it)."""
        try:
            return bool(await self.redis.eval(_CAS, 1, self.key, held, note))
        except Exception as exc:
            log.warning("witness in Redis unavailable: %s", exc)
            return True

    async def reset(self) -> None:
        """Forgets the witnessed checkpoint, here and in Redis: after a deliberate restore of
        an older backup, so that the log as restored is witnessed from now on. Only an admin
        can ask (POST /v1/audit/witness/reset)."""
        self.latest = None
        if self.redis is not None:
            await self.redis.delete(self.key)
