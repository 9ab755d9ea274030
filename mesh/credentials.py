"""Short-lived credentials: compact JWS (JWT) signed with the mesh's Ed25519 issuer key."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meshsre import identity

__all__ = ["Issuer", "Verdict"]


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    """Strict base64url (RFC 7515): the URL-safe alphabet, no padding, and the one canonical
    spelling of the bytes (no stray bits in the last character); ValueError otherwise."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url(raw) != text:
        raise ValueError("not the canonical base64url of its bytes")
    return raw


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None
    return value if isinstance(value, dict) else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Verdict:
    valid: bool
    # "valid" or why not: malformed, bad_signature, expired, lifetime_exceeded, revoked
    # (and unknown_subject, which the API decides: the issuer knows no agents)
    reason: str
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
        self,
        token: str,
        revoked: set[str] | frozenset[str],
        now: float | None = None,
        max_ttl_s: int = 900,
        skew_s: int = 10,
    ) -> Verdict:
        """The verdict on a token: signed by this issuer, well formed, live, no longer-lived
        than ``max_ttl_s``, not issued in the future (beyond ``skew_s``), not revoked. The
        signature is checked before the claims are parsed."""
        parts = token.split(".")
        if len(parts) != 3:
            return Verdict(False, "malformed", {})
        try:
            header_raw, claims_raw, signature = (_unb64url(p) for p in parts)
        except ValueError:
            return Verdict(False, "malformed", {})
        header = _json_object(header_raw)
        if header is None:
            return Verdict(False, "malformed", {})
        if header.get("alg") != "EdDSA" or header.get("kid") != self.kid:
            return Verdict(False, "bad_signature", {})
        if not identity.verify(self._public, signature, f"{parts[0]}.{parts[1]}".encode()):
            return Verdict(False, "bad_signature", {})
        claims = _json_object(claims_raw)
        if (
            claims is None
            or not all(_is_int(claims.get(k)) for k in ("iat", "exp"))
            or not all(isinstance(claims.get(k), str) for k in ("jti", "sub"))
        ):
            return Verdict(False, "malformed", {})
        now = time.time() if now is None else now
        if claims["exp"] <= now:
            return Verdict(False, "expired", claims)
        if claims["exp"] - claims["iat"] > max_ttl_s or claims["iat"] > now + skew_s:
            return Verdict(False, "lifetime_exceeded", claims)
        if claims["jti"] in revoked:
            return Verdict(False, "revoked", claims)
        return Verdict(True, "valid", claims)
