import base64
import json
import os

from mesh.credentials import Issuer


def test_a_fresh_credential_verifies_with_its_claims() -> None:
    issuer = Issuer(os.urandom(32))
    cred = issuer.issue("did:mesh:" + "a" * 32, 60)
    verdict = issuer.verify(cred["token"], set())
    assert verdict.valid and verdict.claims["sub"] == "did:mesh:" + "a" * 32
    assert verdict.claims["exp"] - verdict.claims["iat"] == 60


def test_revoked_expired_tampered_and_foreign_credentials_are_rejected_with_reasons() -> None:
    issuer, other = Issuer(os.urandom(32)), Issuer(os.urandom(32))
    cred = issuer.issue("did:mesh:" + "a" * 32, 60, now=1000)
    assert issuer.verify(cred["token"], {cred["jti"]}, now=1001).reason == "revoked"
    assert issuer.verify(cred["token"], set(), now=1060).reason == "expired"
    head, payload, sig = cred["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "did:mesh:" + "b" * 32
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert issuer.verify(f"{head}.{forged}.{sig}", set(), now=1001).reason == "bad_signature"
    assert other.verify(cred["token"], set(), now=1001).reason == "bad_signature"
    assert issuer.verify("not-a-token", set()).reason == "malformed"
    assert issuer.verify("a.b.c", set()).reason == "malformed"
