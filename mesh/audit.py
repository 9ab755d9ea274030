"""The hash-chained audit log: canonical JSON, SHA-256, and the verify walk.

Entry ``n`` stores ``hash = sha256(canonical({seq, ts, actor, action, subject, data,
prev_hash}))`` with ``prev_hash`` the hash of entry ``n - 1``; entry 0 is the genesis entry.
Any edited, removed or reordered entry breaks the chain at its own index.

The last entry of each committed write batch carries the log key's signature of its hash
(``mesh.checkpoint``), which is outside the hash: a forger who recomputes the chain still cannot
sign, and a signature covers every entry before it through the chain, so the entries of a batch
need one signature between them. Entries appended before signing began (below ``signed_from``)
have none. An unsigned entry after that is accepted once a later valid signature covers it; a
walk that ends (``ChainCheck.end``) on entries no signature covers fails at the first of them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mesh.merkle import Tree, leaf_hash

__all__ = [
    "GENESIS_HASH",
    "REASONS",
    "ChainCheck",
    "Entry",
    "canonical",
    "entry_hash",
    "envelope",
    "walk",
]

GENESIS_HASH = "0" * 64
# Why a verify walk fails at an entry (ChainCheck.reason).
REASONS = {
    "chain": "the hash chain breaks there",
    "unsigned": "no signature by the log key covers it, though one covers an entry before it",
    "signature": "the signature that should cover it is not the log key's",
}
_string = json.encoder.encode_basestring  # type: ignore[attr-defined]  # what ensure_ascii=False uses
_encode = json.encoder.JSONEncoder().encode


def _number(value: float) -> str:
    # json.dumps spells a finite float as float.__repr__ does, without its encoder's detour
    return float.__repr__(value) if math.isfinite(value) else _encode(value)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: float
    actor: str
    action: str
    subject: str
    data: str  # canonical JSON text, hashed as the object it encodes
    prev_hash: str
    hash: str
    signature: str | None = None  # base64, the log key's over the hash; None before signing

    def envelope(self) -> bytes:
        return envelope(
            self.seq, self.ts, self.actor, self.action, self.subject, self.data, self.prev_hash
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "data": json.loads(self.data),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "signature": self.signature,
        }


def envelope(
    seq: int, ts: float, actor: str, action: str, subject: str, data: str, prev_hash: str
) -> bytes:
    """``canonical({seq, ts, actor, action, subject, data, prev_hash})``, UTF-8: the bytes an
    entry's chain hash and its Merkle leaf hash (``mesh.merkle``) are taken over.

    Spliced, not re-encoded: ``data`` is canonical text already and canonical JSON nests (sorted
    keys, no spaces), so this is byte for byte the canonical envelope, at a third of the cost
    of parsing ``data`` back. Any other spelling of ``data`` fails verification.
    """
    return (
        f'{{"action":{_string(action)},"actor":{_string(actor)},"data":{data},'
        f'"prev_hash":{_string(prev_hash)},"seq":{int(seq)},"subject":{_string(subject)},'
        f'"ts":{_number(float(ts))}}}'
    ).encode()


def entry_hash(
    seq: int, ts: float, actor: str, action: str, subject: str, data: str, prev_hash: str
) -> str:
    return hashlib.sha256(envelope(seq, ts, actor, action, subject, data, prev_hash)).hexdigest()


@dataclass
class ChainCheck:
    """State of a verify walk; feed it entries in order, possibly across several calls, and
    call ``end`` once the log's last entry was fed."""

    length: int = 0
    head: str = GENESIS_HASH
    first_bad_index: int | None = None
    reason: str | None = None  # why first_bad_index failed: chain, unsigned or signature
    # When given, signatures are checked with it: (hash, signature) -> valid.
    signatures: Callable[[str, str], bool] | None = None
    # The first signed index: known from before (a checkpoint file, this replica's earlier
    # walks), else the first signed entry this walk meets.
    signed_from: int | None = None
    # When given, every entry that verifies becomes a leaf of this Merkle tree; an entry
    # that waits for a signature to cover it, only once one does.
    tree: Tree | None = None
    # The first of the entries, after signing began, that no signature covers yet.
    uncovered_from: int | None = None
    _uncovered: list[bytes] = field(default_factory=list, repr=False)  # their leaf hashes

    @property
    def ok(self) -> bool:
        return self.first_bad_index is None

    def feed(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            if self.first_bad_index is None:
                expected_prev = GENESIS_HASH if self.length == 0 else self.head
                text = e.envelope()
                recomputed = hashlib.sha256(text).hexdigest()
                if e.seq != self.length or e.prev_hash != expected_prev or recomputed != e.hash:
                    self._fail(self.length, "chain")
                elif self.signatures is None:
                    self._verified(e, text)
                else:
                    self._signed(e, text)
            self.length += 1

    def end(self) -> ChainCheck:
        """The log ends here: entries no signature covers fail, at the first of them."""
        if self.uncovered_from is not None:
            self._fail(self.uncovered_from, "unsigned")
        return self

    def _signed(self, e: Entry, text: bytes) -> None:
        if e.signature is None:
            if self.signed_from is None or self.length < self.signed_from:
                self._verified(e, text)  # from before signing began
                return
            if self.uncovered_from is None:
                self.uncovered_from = self.length
            self.head = e.hash
            self._uncovered.append(leaf_hash(text))
            return
        assert self.signatures is not None
        if not self.signatures(e.hash, e.signature):
            # Somewhere from the first uncovered entry to this one the log was changed.
            first = self.length if self.uncovered_from is None else self.uncovered_from
            self._fail(first, "signature")
            return
        if self.signed_from is None:
            self.signed_from = self.length
        if self.tree is not None:
            for leaf in self._uncovered:
                self.tree.append(leaf)
        self._uncovered.clear()
        self.uncovered_from = None
        self._verified(e, text)

    def _verified(self, e: Entry, text: bytes) -> None:
        self.head = e.hash
        if self.tree is not None:
            self.tree.append(leaf_hash(text))

    def _fail(self, index: int, reason: str) -> None:
        self.first_bad_index, self.reason = index, reason
        self._uncovered.clear()
        self.uncovered_from = None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "length": self.length,
            "head": self.head,
            "first_bad_index": self.first_bad_index,
            "reason": self.reason,
            "signed_from": self.signed_from,
        }


def walk(entries: Iterable[Entry]) -> ChainCheck:
    check = ChainCheck()
    check.feed(entries)
    return check.end()
