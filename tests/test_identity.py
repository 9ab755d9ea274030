import hashlib
import re

import pytest

from meshsre.identity import (
    NONCE_HEADER,
    NONCE_PATTERN,
    SIGNATURE_HEADER,
    AgentKey,
    b64decode,
    did_for,
    new_nonce,
    proof_message,
    request_message,
    verify,
)


def test_the_did_is_the_first_32_hex_of_the_key_digest() -> None:
    key = AgentKey.from_seed(bytes(32))
    assert key.did == "did:mesh:" + hashlib.sha256(key.public_bytes).hexdigest()[:32]
    assert did_for(key.public_bytes) == key.did


def test_a_signature_verifies_only_for_its_key_and_message() -> None:
    a, b = AgentKey.generate(), AgentKey.generate()
    msg = request_message("post", "/v1/x", "", 1, "n" * 32, b"{}")
    sig = b64decode(a.sign(msg))
    assert verify(a.public_bytes, sig, msg)
    assert not verify(b.public_bytes, sig, msg)
    assert not verify(a.public_bytes, sig, request_message("POST", "/v1/x", "", 1, "n" * 32,
                                                          b"{ }"))


@pytest.mark.parametrize("changed", ["method", "path", "query", "timestamp", "nonce", "body"])
def test_every_part_of_a_request_is_signed(changed: str) -> None:
    parts: dict[str, object] = {"method": "POST", "path": "/v1/x", "query": "a=1",
                                "timestamp": 1, "nonce": "n" * 32, "body": b"{}"}
    other = {"method": "PUT", "path": "/v1/y", "query": "a=2", "timestamp": 2,
             "nonce": "m" * 32, "body": b"[]"}
    assert request_message(**parts) != request_message(**{**parts, changed: other[changed]})  # type: ignore[arg-type]


def test_headers_sign_the_query_string_and_draw_a_new_nonce_each_time() -> None:
    key = AgentKey.generate()
    first, second = key.headers("GET", "/v1/x?a=1", timestamp=7), key.headers("GET", "/v1/x?a=1",
                                                                              timestamp=7)
    assert first[NONCE_HEADER] != second[NONCE_HEADER]
    message = request_message("GET", "/v1/x", "a=1", 7, first[NONCE_HEADER], b"")
    assert verify(key.public_bytes, b64decode(first[SIGNATURE_HEADER]), message)
    assert re.fullmatch(NONCE_PATTERN, new_nonce())


def test_a_request_signature_never_verifies_as_a_registration_proof() -> None:
    # The request message opens with its own domain line, so no signature made for one
    # purpose can be presented for another.
    key = AgentKey.generate()
    headers = key.headers("POST", "/v1/agents", b"", timestamp=1)
    assert not verify(key.public_bytes, b64decode(headers[SIGNATURE_HEADER]),
                      proof_message(key.public_b64, 1))


def test_b64decode_rejects_non_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        b64decode("not base64!")
