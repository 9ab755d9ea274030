"""The mesh's private keys (the credential issuer's and the audit log's), which never enter
the store: each comes from the environment (a base64 Ed25519 seed) or a key file holding one,
readable by its owner only. Without either, a process makes a key of its own, for a single
throwaway process: it verifies nothing another replica or a restart signed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["KeyFileError", "load_seed", "public_key", "write_key_file"]

log = logging.getLogger("mesh")


class KeyFileError(ValueError):
    """A key that cannot be used, with what to do about it."""


def _seed(text: str, where: str) -> bytes:
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise KeyFileError(
            f"{where} must hold a base64 32-byte Ed25519 seed (openssl rand -base64 32)"
        )
    return seed


def _read_file(path: Path) -> bytes:
    try:
        info = path.stat()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by others (mode {mode:04o}): run chmod 600 {path}"
        )
    return _seed(path.read_text(encoding="ascii", errors="replace"), f"key file {path}")


def load_seed(name: str, value: str | None, path: str | None) -> bytes:
    """The seed of key ``name`` (issuer, log): ``value`` (MESH_<NAME>_KEY) else the file at
    ``path`` (MESH_<NAME>_KEY_FILE), else a fresh one for this process alone."""
    env = f"MESH_{name.upper()}_KEY"
    if value is not None and path:
        raise KeyFileError(f"set {env} or {env}_FILE, not both")
    if value is not None:
        return _seed(value, env)
    if path:
        return _read_file(Path(path))
    log.warning(
        "no %s or %s_FILE: the %s key lives in this process only; what it signs will not "
        "verify on another replica or after a restart",
        env,
        env,
        name,
    )
    return os.urandom(32)


def public_key(seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def write_key_file(path: Path) -> Path:
    """Creates a key file with a fresh seed, mode 0600 from its first byte; an existing one is
    kept (so a cluster brought up again signs with the same keys)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path
