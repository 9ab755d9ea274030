"""Short-lived credentials: compact JWS (JWT) signed with the mesh's Ed25519 issuer key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meshsre import identity

__all__ = ["Issuer", "Verdict"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str  # "valid" or why not: malformed, bad_signature, expired, revoked
    claims: dict[str, Any]


class Issuer:
    """Signs and verifies credentials. Every replica loads the same key, so a credential
    issued through one replica verifies on all of them."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._public = raw
        self.kid = hashlib.sha256(raw).hexdigest()[:16]
        self.did = "did:mesh:" + hashlib.sha256(raw).hexdigest()[:32]
        self._header = _b64url(
            json.dumps(
                {"alg": "EdDSA", "typ": "JWT", "kid": self.kid}, separators=(",", ":")
            ).encode()
        )

    def issue(self, subject: str, ttl_s: int, now: float | None = None) -> dict[str, Any]:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.did,
            "sub": subject,
            "jti": uuid.uuid4().hex,
            "iat": issued,
            "exp": issued + ttl_s,
        }
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header}.{payload}".encode()
        token = f"{self._header}.{payload}.{_b64url(self._key.sign(signing_input))}"
        return {"token": token, **claims}

    def verify(
        self, token: str, revoked: set[str] | frozenset[str], now: float | None = None
    ) -> Verdict:
        parts = token.split(".")
        if len(parts) != 3:
            return Verdict(False, "malformed", {})
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            signature = _unb64url(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return Verdict(False, "malformed", {})
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return Verdict(False, "malformed", {})
        if header.get("alg") != "EdDSA" or header.get("kid") != self.kid:
            return Verdict(False, "bad_signature", {})
        if not identity.verify(self._public, signature, f"{parts[0]}.{parts[1]}".encode()):
            return Verdict(False, "bad_signature", {})
        if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("jti"), str):
            return Verdict(False, "malformed", {})
        if claims["exp"] <= (time.time() if now is None else now):
            return Verdict(False, "expired", claims)
        if claims["jti"] in revoked:
            return Verdict(False, "revoked", claims)
        return Verdict(True, "valid", claims)
