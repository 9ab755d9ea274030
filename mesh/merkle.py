"""RFC 9162 Merkle tree over the audit log: tree heads, inclusion and consistency proofs.

Leaf hash ``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``, the tree of
``n`` leaves split at the largest power of two below ``n`` (RFC 9162 section 2.1.1). The tree
keeps every complete, aligned subtree's hash (level ``k`` holds those of ``2**k`` leaves), so an
append costs one hash amortized and any head or proof about any size costs O(log n) hashes.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "EMPTY_ROOT",
    "Tree",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    def __init__(self, leaves: list[bytes] | None = None) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves or ():
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def append(self, leaf: bytes) -> None:
        """Adds a leaf hash, and every subtree it completes."""
        self._levels[0].append(leaf)
        level = 0
        while len(self._levels[level]) % 2 == 0:
            row = self._levels[level]
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(node_hash(row[-2], row[-1]))
            level += 1

    def truncate(self, size: int) -> None:
        """Keeps the first ``size`` leaves (a log rewritten from there is fed again)."""
        for level, row in enumerate(self._levels):
            del row[size >> level :]

    def _hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi). In the RFC's recursion every left part is a complete,
        aligned subtree: only the right edge needs hashing."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:
            return self._levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self._hash(lo, lo + k), self._hash(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check(size)
        return self._hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 section 2.1.3.1."""
        self._check(size)
        if not 0 <= index < size:
            raise ValueError(f"index {index} is not in a tree of {size}")
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                proof.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._hash(lo, lo + k))
                lo += k
        return proof[::-1]

    def consistency_proof(self, old: int, size: int) -> list[bytes]:
        """PROOF(old, D[size]) of RFC 9162 section 2.1.4.1."""
        self._check(size)
        if not 0 < old <= size:
            raise ValueError(f"no consistency proof from {old} to {size}")
        proof: list[bytes] = []
        lo, hi, complete = 0, size, True  # SUBPROOF(m, D[lo:hi], complete)
        m = old
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._hash(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self._hash(lo, hi))
        return proof[::-1]

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is beyond the {self.size} leaves held")


def root_of(leaves: list[bytes]) -> bytes:
    return Tree(leaves).root()


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, size: int, proof: list[bytes], old_root: bytes, root: bytes
) -> bool:
    """RFC 9162 section 2.1.4.2 (with an equal size, the proof is empty and the roots equal)."""
    if not 0 < old <= size:
        return False
    if old == size:
        return not proof and old_root == root
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, old_root)
    fn, sn = old - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == root
