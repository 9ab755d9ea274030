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


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_credential_living_longer_than_the_maximum_is_refused_though_signed() -> None:
    # Whoever holds the issuer key (a stolen backup, say) could sign any lifetime: the
    # verifier caps it, and refuses credentials issued in the future.
    issuer = Issuer(os.urandom(32))
    sub = "did:mesh:" + "a" * 32
    long = issuer.issue(sub, 86_400, now=1000)
    assert issuer.verify(long["token"], set(), now=1001, max_ttl_s=900).reason == (
        "lifetime_exceeded")
    ahead = issuer.issue(sub, 60, now=2000)
    assert issuer.verify(ahead["token"], set(), now=1000, skew_s=10).reason == (
        "lifetime_exceeded")
    assert issuer.verify(ahead["token"], set(), now=1995, skew_s=10).valid


def test_token_parts_must_be_strict_base64url() -> None:
    issuer = Issuer(os.urandom(32))
    token = issuer.issue("did:mesh:" + "a" * 32, 60, now=1000)["token"]
    head, payload, sig = token.split(".")
    assert issuer.verify(token, set(), now=1001).valid
    padded = f"{head}==.{payload}.{sig}" if len(head) % 4 == 2 else f"{head}=.{payload}.{sig}"
    standard = token.replace("-", "+").replace("_", "/")
    spaced = f"{head}.{payload} .{sig}"
    # The last character of the signature carries spare bits: set one, same bytes, another text.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    stray = f"{head}.{payload}.{sig[:-1]}{last[last.index(sig[-1]) + 1]}"
    variants = [padded, spaced, stray] + ([standard] if standard != token else [])
    for variant in variants:
        assert issuer.verify(variant, set(), now=1001).reason == "malformed", variant


def test_deeply_nested_or_oversized_json_in_a_token_is_malformed_not_a_crash() -> None:
    issuer = Issuer(os.urandom(32))
    for junk in (b"[" * 100_000, b"{\"a\":" * 50_000, b"9" * 5000, b"\xff\xfe"):
        token = f"{_b64url(junk)}.{_b64url(junk)}.{_b64url(bytes(64))}"
        assert issuer.verify(token, set()).reason == "malformed"
        header = _b64url(b'{"alg":"EdDSA","kid":"' + issuer.kid.encode() + b'"}')
        assert issuer.verify(f"{header}.{_b64url(junk)}.{_b64url(bytes(64))}", set()).reason \
            == "bad_signature"  # claims are parsed only once the signature holds
