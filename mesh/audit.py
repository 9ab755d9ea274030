"""The hash-chained audit log: canonical JSON, SHA-256, and the verify walk.

Entry ``n`` stores ``hash = sha256(canonical({seq, ts, actor, action, subject, data,
prev_hash}))`` with ``prev_hash`` the hash of entry ``n - 1``; entry 0 is the genesis entry.
Any edited, removed or reordered entry breaks the chain at its own index.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mesh.merkle import Tree, leaf_hash

__all__ = ["GENESIS_HASH", "ChainCheck", "Entry", "canonical", "entry_hash", "envelope", "walk"]

GENESIS_HASH = "0" * 64
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
    """State of a verify walk; feed it entries in order, possibly across several calls."""

    length: int = 0
    head: str = GENESIS_HASH
    first_bad_index: int | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_index is None

    # When given, every entry that verifies becomes a leaf of this Merkle tree.
    tree: Tree | None = None

    def feed(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            if self.first_bad_index is None:
                expected_prev = GENESIS_HASH if self.length == 0 else self.head
                text = e.envelope()
                recomputed = hashlib.sha256(text).hexdigest()
                if e.seq != self.length or e.prev_hash != expected_prev or recomputed != e.hash:
                    self.first_bad_index = self.length
                else:
                    self.head = e.hash
                    if self.tree is not None:
                        self.tree.append(leaf_hash(text))
            self.length += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "length": self.length,
            "head": self.head,
            "first_bad_index": self.first_bad_index,
        }


def walk(entries: Iterable[Entry]) -> ChainCheck:
    check = ChainCheck()
    check.feed(entries)
    return check
