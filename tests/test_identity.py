import hashlib

import pytest

from meshsre.identity import AgentKey, b64decode, did_for, request_message, verify


def test_the_did_is_the_first_32_hex_of_the_key_digest() -> None:
    key = AgentKey.from_seed(bytes(32))
    assert key.did == "did:mesh:" + hashlib.sha256(key.public_bytes).hexdigest()[:32]
    assert did_for(key.public_bytes) == key.did


def test_a_signature_verifies_only_for_its_key_and_message() -> None:
    a, b = AgentKey.generate(), AgentKey.generate()
    msg = request_message("post", "/v1/x", 1, b"{}")
    sig = b64decode(a.sign(msg))
    assert verify(a.public_bytes, sig, msg)
    assert not verify(b.public_bytes, sig, msg)
    assert not verify(a.public_bytes, sig, request_message("POST", "/v1/x", 1, b"{ }"))


def test_b64decode_rejects_non_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        b64decode("not base64!")
