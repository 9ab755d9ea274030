"""Offline verification of the audit log against a witnessed checkpoint, and the checkpoint
file a run keeps (``meshsre audit checkpoint`` / ``verify``).

A checkpoint file (schema ``meshsre.audit-checkpoint/v1``, JSON) holds the signed note, the
log's verifier key and the leaf hashes of the entries it covers, which its signed root
authenticates: with them a verifier names the first entry a rewrite changed. A plain signed
note works too, and then a rewrite is placed only below the checkpoint's size.

Relative to the checkpoint, verification finds:
- ``truncated``: the log holds fewer entries than were witnessed (index: the first missing);
- ``rewritten``: a witnessed entry no longer hashes the same, whether or not the attacker
  recomputed the chain (index: the first changed entry);
- ``chain``: the hash chain itself breaks (index: the first bad link), which also catches an
  edit made after the checkpoint that did not recompute the chain;
- ``unsigned`` / ``signature``: entries at or after the first signed one (the checkpoint
  file's ``signed_from`` when it has one) that no later signature by the log key covers, or
  whose covering signature is not the key's: forged entries, appended with the hashes
  recomputed by someone without the key (index: the first entry not covered);
- ``unwitnessed``: entries past the checkpoint, which no checkpoint vouches for yet: genuine
  appends since (signed, so they pass the check above). Reported, not a failure.
Signatures are checked with the log key given, else the checkpoint file's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.audit import REASONS, ChainCheck, Entry
from mesh.checkpoint import Checkpoint, CheckpointError, LogVerifier
from mesh.merkle import Tree, leaf_hash

__all__ = [
    "FILE_SCHEMA",
    "CheckpointFile",
    "Finding",
    "Report",
    "read_checkpoint_file",
    "verify",
    "write_checkpoint_file",
]

FILE_SCHEMA = "meshsre.audit-checkpoint/v1"
FAILURES = ("truncated", "rewritten", "chain", "unsigned", "signature")


@dataclass(frozen=True)
class CheckpointFile:
    checkpoint: Checkpoint
    verifier: LogVerifier
    leaves: list[bytes] | None  # the leaf hashes of the entries it covers, when kept
    signed_from: int | None = None  # the first entry the log key had signed, when known


@dataclass(frozen=True)
class Finding:
    kind: str  # truncated, rewritten, chain, unwitnessed
    index: int
    message: str


@dataclass
class Report:
    size: int
    checkpoint: Checkpoint | None
    signatures_checked: bool = False
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.kind in FAILURES for f in self.findings)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "checkpoint_size": None if self.checkpoint is None else self.checkpoint.size,
            "checkpoint_time": None if self.checkpoint is None else self.checkpoint.timestamp,
            "signatures_checked": self.signatures_checked,
            "findings": [f.__dict__ for f in self.findings],
        }


def verify(
    entries: Iterable[Entry], witnessed: CheckpointFile | None, key: LogVerifier | None = None
) -> Report:
    """The log against ``witnessed``, its signatures checked with ``key``, else the
    checkpoint file's (unchecked without either)."""
    key = key or (None if witnessed is None else witnessed.verifier)
    chain = ChainCheck(
        signatures=None if key is None else key.entry_signed,
        signed_from=None if witnessed is None else witnessed.signed_from,
    )
    tree = Tree()
    for entry in entries:
        chain.feed([entry])
        tree.append(leaf_hash(entry.envelope()))
    chain.end()
    report = Report(tree.size, None if witnessed is None else witnessed.checkpoint, key is not None)
    if witnessed is not None:
        report.findings += _against(tree, witnessed)
    if chain.first_bad_index is not None and chain.reason is not None:
        i = chain.first_bad_index
        report.findings.append(Finding(chain.reason, i, f"entry {i}: {REASONS[chain.reason]}"))
    return report


def _against(tree: Tree, witnessed: CheckpointFile) -> list[Finding]:
    cp, leaves = witnessed.checkpoint, witnessed.leaves
    findings = []
    common = min(tree.size, cp.size)
    if leaves is not None:
        changed = next((i for i in range(common) if tree.leaf(i) != leaves[i]), None)
        if changed is not None:
            findings.append(
                Finding("rewritten", changed, f"entry {changed} differs from the witnessed one")
            )
    elif tree.size >= cp.size and tree.root(cp.size) != cp.root:
        findings.append(
            Finding(
                "rewritten",
                0,
                f"the first {cp.size} entries no longer hash to the witnessed root"
                " (the checkpoint keeps no leaf hashes to name the entry)",
            )
        )
    if tree.size < cp.size:
        findings.append(
            Finding(
                "truncated",
                tree.size,
                f"the log ends at index {tree.size}; the checkpoint witnessed {cp.size} entries",
            )
        )
    elif tree.size > cp.size:
        findings.append(
            Finding(
                "unwitnessed",
                cp.size,
                f"entries {cp.size}..{tree.size - 1} came after the checkpoint: appended since,"
                " or forged",
            )
        )
    return findings


def write_checkpoint_file(
    path: Path,
    cp: Checkpoint,
    verifier: LogVerifier,
    leaves: list[bytes],
    signed_from: int | None = None,
) -> Path:
    """Writes the file whole or not at all (a temporary file renamed into place)."""
    if Tree(leaves).root() != cp.root or len(leaves) != cp.size:
        raise CheckpointError("the leaf hashes do not hash to the checkpoint's root")
    doc = {
        "schema": FILE_SCHEMA,
        "note": cp.note,
        "public_key": verifier.vkey,
        "size": cp.size,
        "timestamp": cp.timestamp,
        "leaves": base64.b64encode(b"".join(leaves)).decode(),
        "signed_from": signed_from,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path


def read_checkpoint_file(path: Path, verifier: LogVerifier | None = None) -> CheckpointFile:
    """A checkpoint file or a plain signed note, its signature checked with ``verifier`` (else
    the key the file names: trust on first use of that file). CheckpointError if unusable."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    doc: dict[str, Any] = {"note": text}
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise CheckpointError(f"{path} is neither JSON nor a signed note") from None
        if not isinstance(doc, dict) or doc.get("schema") != FILE_SCHEMA:
            raise CheckpointError(f"{path}: not a {FILE_SCHEMA} document")
    if verifier is None:
        if not isinstance(doc.get("public_key"), str):
            raise CheckpointError(f"{path} names no log key: pass --public-key")
        verifier = LogVerifier.from_vkey(doc["public_key"])
    cp = verifier.verify(str(doc.get("note", "")))
    leaves = None
    if isinstance(doc.get("leaves"), str):
        try:
            raw = base64.b64decode(doc["leaves"], validate=True)
        except (binascii.Error, ValueError):
            raw = b"?"
        leaves = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        if len(raw) % 32 or Tree(leaves).root() != cp.root or len(leaves) != cp.size:
            raise CheckpointError(f"{path}: its leaf hashes do not hash to the signed root")
    signed_from = doc.get("signed_from")
    if signed_from is not None and (type(signed_from) is not int or signed_from < 0):
        raise CheckpointError(f"{path}: signed_from is the index of an entry, or null")
    return CheckpointFile(cp, verifier, leaves, signed_from)
