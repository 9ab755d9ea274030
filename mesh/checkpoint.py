"""Signed checkpoints of the audit log: a C2SP signed note (c2sp.org/signed-note) whose text
is a C2SP tlog checkpoint (c2sp.org/tlog-checkpoint), plus one extension line, the time::

    agentmesh.audit/5d2f0c1a9b3e4f77
    1042
    KgA6lY2...base64 root hash...=
    time 1765012345

    — agentmesh.audit/5d2f0c1a9b3e4f77 q0p4Zg...base64 (key hash || Ed25519 signature)...

Signed with the log key, never the credential issuer's (``mesh.keys``). The origin names
the key, so checkpoints of two logs are never taken for each other's.

The log key also signs each entry's hash as the entry is appended (``sign_entry``), so that
someone who can write to the database but lacks the key cannot append an entry that
verifies, even with the chain hashes recomputed. Those go through libsodium (PyNaCl), at
21.6 us a signature and 53 us a check against 31.5 and 104 through ``cryptography`` (3,000
of each, one core of this machine), as every entry pays for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesh.keys import public_key

__all__ = ["Checkpoint", "CheckpointError", "LogSigner", "LogVerifier"]

_ED25519 = b"\x01"  # the signed-note signature type
# Prefixed to an entry's hash before it is signed, so that no entry signature is ever also a
# valid signature of a note, or the other way round.
_ENTRY_CONTEXT = b"agentmesh.audit.entry/v1\n"
# Entries this process signed, kept until its walk has surely met them: a replica checks its
# own by comparing signatures (Ed25519 is deterministic), not by verifying them again. The
# walk runs every MESH_AUDIT_CHECK_SECONDS (5 s), and `make bench` appends up to 3,000 a
# second: 30,000 hold 6,000 a second, in 8.5 MB (tracemalloc).
_OWN_KEPT = 30_000
_SIGNATURE_LINE = re.compile(r"\u2014 (\S+) ([A-Za-z0-9+/=]+)\n")


class CheckpointError(ValueError):
    """A note that is not a checkpoint of this log, or whose signature fails."""


def _origin(public: bytes) -> str:
    return "agentmesh.audit/" + hashlib.sha256(public).hexdigest()[:16]


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    timestamp: int
    note: str = ""  # the signed text it was read from or signed as

    def body(self) -> str:
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\ntime {self.timestamp}\n"

    def as_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "note": self.note,
        }


class LogSigner:
    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = public_key(seed)
        self.origin = _origin(self.public)
        self._hash = _key_hash(self.origin, self.public)
        self.verifier = LogVerifier(self.public)
        self._entry_key = nacl.bindings.crypto_sign_seed_keypair(seed)[1]
        self._own: dict[str, str] = {}  # hash -> signature, oldest first

    def sign(self, size: int, root: bytes, timestamp: int) -> Checkpoint:
        cp = Checkpoint(self.origin, size, root, timestamp)
        body = cp.body()
        signature = base64.b64encode(self._hash + self._key.sign(body.encode())).decode()
        return Checkpoint(
            self.origin, size, root, timestamp, f"{body}\n\u2014 {self.origin} {signature}\n"
        )

    def sign_entry(self, digest: str) -> str:
        """The base64 signature of an entry's hash (hex), as the audit table stores it."""
        signed = nacl.bindings.crypto_sign(_ENTRY_CONTEXT + bytes.fromhex(digest), self._entry_key)
        signature = base64.b64encode(signed[:64]).decode()
        self._own[digest] = signature
        if len(self._own) > _OWN_KEPT:
            del self._own[next(iter(self._own))]
        return signature

    def entry_signed(self, digest: str, signature: str) -> bool:
        """LogVerifier.entry_signed, without the check for an entry this process signed."""
        return self._own.get(digest) == signature or self.verifier.entry_signed(digest, signature)


class LogVerifier:
    """Checks notes against one log's public key; ``vkey`` is the C2SP verifier key
    (``name+hash+base64(type || key)``), which ``meshsre audit verify --public-key`` takes."""

    def __init__(self, public: bytes) -> None:
        self.public = public
        self.origin = _origin(public)
        self._hash = _key_hash(self.origin, public)
        self._key = Ed25519PublicKey.from_public_bytes(public)
        self.vkey = (
            f"{self.origin}+{self._hash.hex()}+{base64.b64encode(_ED25519 + public).decode()}"
        )

    def entry_signed(self, digest: str, signature: str) -> bool:
        """Whether ``signature`` is this key's over the entry hash ``digest`` (hex)."""
        try:
            raw = base64.b64decode(signature, validate=True)
            message = _ENTRY_CONTEXT + bytes.fromhex(digest)
            if len(raw) != 64:
                return False
            nacl.bindings.crypto_sign_open(raw + message, self.public)
        except (binascii.Error, ValueError, nacl.exceptions.CryptoError):
            return False
        return True

    @classmethod
    def from_vkey(cls, vkey: str) -> LogVerifier:
        parts = vkey.strip().split("+", 2)
        try:
            raw = base64.b64decode(parts[-1], validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(parts) != 3 or len(raw) != 33 or raw[:1] != _ED25519:
            raise CheckpointError("a verifier key is name+hash+base64(0x01 || Ed25519 key)")
        verifier = cls(raw[1:])
        if parts[0] != verifier.origin or parts[1] != verifier._hash.hex():
            raise CheckpointError("the verifier key's name or hash does not match its key")
        return verifier

    def verify(self, note: str) -> Checkpoint:
        body, sep, signatures = note.partition("\n\n")
        if not sep:
            raise CheckpointError("not a signed note: no blank line before the signatures")
        body += "\n"
        for match in _SIGNATURE_LINE.finditer(signatures):
            if match.group(1) != self.origin:
                continue  # another key's signature (a cosigner's): not ours to check
            try:
                raw = base64.b64decode(match.group(2), validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) != 68 or raw[:4] != self._hash:
                continue
            try:
                self._key.verify(raw[4:], body.encode())
            except InvalidSignature:
                raise CheckpointError("the log key's signature does not verify") from None
            return _parse(body, note, self.origin)
        raise CheckpointError(f"no signature by {self.origin}, the log key's name")


def _parse(body: str, note: str, origin: str) -> Checkpoint:
    lines = body.split("\n")[:-1]
    if len(lines) < 4 or lines[0] != origin:
        raise CheckpointError(f"not a checkpoint of {origin}")
    size, root, time = lines[1], lines[2], lines[3]
    if not size.isdigit() or not time.startswith("time ") or not time[5:].isdigit():
        raise CheckpointError("a checkpoint's second line is its size, its fourth its time")
    try:
        digest = base64.b64decode(root, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise CheckpointError("a checkpoint's third line is a base64 SHA-256 root hash")
    return Checkpoint(origin, int(size), digest, int(time[5:]), note)
