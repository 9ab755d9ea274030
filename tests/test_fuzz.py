"""Fuzzing a real mesh process: schemathesis over every operation of the published OpenAPI,
and hypothesis-made junk bodies, headers and queries. Bad input must always get a 4xx JSON
body naming the problem (the field, when a field is at fault): never a 5xx."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre.identity import (
    AGENT_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AgentKey,
)
from tests.apiclient import register

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ST = str(Path(sys.executable).with_name("st"))
# Statuses that mean "this input is wrong": their bodies must say which field.
FIELD_STATUSES = {400, 401, 403, 404, 409, 413, 422}
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Seeded:
    """A mesh with agents and credentials, so fuzzed requests can reach real records."""

    def __init__(self, proc: MeshProcess) -> None:
        self.proc = proc
        self.client = proc.client()
        self.agents = [register(self.client) for _ in range(4)]
        self.jtis = [
            self.client.post("/v1/credentials", json={"did": a.did}, headers=ADMIN).json()["jti"]
            for a in self.agents
        ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    db = tmp_path_factory.mktemp("fuzz") / "mesh.db"
    # Limits high enough that fuzzed requests reach the handlers, not a 429.
    limits = {"MESH_RATE_LIMIT_PER_MINUTE": "1000000", "MESH_CLIENT_RATE_PER_SECOND": "100000",
              "MESH_CLIENT_BURST": "100000"}
    with MeshProcess(f"sqlite:///{db}", env=limits) as proc:
        mesh = Seeded(proc)
        yield mesh
        mesh.client.close()


def assert_clean(r: httpx.Response, field: bool = True) -> None:
    """No 5xx; a 4xx is a JSON object with error and message, and (``field``) the field
    when the input is at fault."""
    assert r.status_code < 500, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    if r.status_code < 400:
        return
    body = r.json()
    assert isinstance(body, dict), r.text
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if field and r.status_code in FIELD_STATUSES:
        assert isinstance(body.get("field"), str) and body["field"], body


# -- schemathesis over the published schema ----------------------------------------------


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def test_schemathesis_finds_no_server_error_in_any_operation(
    seeded: Seeded, tmp_path: Path
) -> None:
    # Real DIDs and credential ids are offered for path and body parameters part of the
    # time; otherwise almost every operation would stop at 404 before its core logic.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[generation]\nmax-examples = 25\n"
        "[dictionaries]\n"
        f"dids = {{ values = {_toml_list([a.did for a in seeded.agents])} }}\n"
        f"jtis = {{ values = {_toml_list(seeded.jtis)} }}\n"
        "[parameters]\n"
        '"path.did" = { dictionary = "dids", probability = 0.7 }\n'
        '"body.did" = { dictionary = "dids", probability = 0.7 }\n'
        '"path.jti" = { dictionary = "jtis", probability = 0.7 }\n'
    )
    cmd = [ST, "--config-file", str(config), "run", f"{seeded.proc.url}/openapi.json",
           "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing",
           "--workers", "1", "--request-timeout", "5", "--no-color",
           "--header", f"Authorization: Bearer {ADMIN_TOKEN}"]
    # cwd: schemathesis keeps a replay cache in the working directory.
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated and int(generated.group(1)) >= 200, run.stdout[-3000:]
    assert seeded.client.get("/v1/audit/verify", headers=ADMIN).json()["ok"] is True


# -- hypothesis junk --------------------------------------------------------------------

EDGE_INTS = st.sampled_from(
    [0, -1, 2**31, 2**53 + 1, 2**63, -(2**63) - 1, 10**20, 10**400, -(10**400)]
)
JUNK_TEXT = st.text(max_size=200) | st.sampled_from(
    ["", "\x00", "a\x00b", "é" * 300, "../../etc/passwd", "did:mesh:" + "0" * 32, "%00",
     "A" * 5000, "=" * 8]
)
SCALARS = (st.none() | st.booleans() | st.integers() | EDGE_INTS | st.floats() | JUNK_TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
REGISTRATION_FIELDS = ["public_key", "timestamp", "proof", "name", "sponsor", "capabilities",
                       "policy", "extra"]
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/x-www-form-"
                                 "urlencoded", None])


def _post(client: httpx.Client, path: str, raw: bytes, content_type: str | None,
          headers: dict[str, Any] | None = None) -> httpx.Response:
    sent = dict(headers or {})
    if content_type is not None:
        sent["content-type"] = content_type
    return client.post(path, content=raw, headers=sent)


@FUZZ
@given(field=st.sampled_from(REGISTRATION_FIELDS), junk=JSON_VALUES,
       drop=st.booleans())
@example(field="timestamp", junk=10**400, drop=False)
@example(field="timestamp", junk=-(10**400), drop=False)
@example(field="public_key", junk="\x00", drop=False)
def test_a_registration_with_one_junk_field_never_gets_a_server_error(
    seeded: Seeded, field: str, junk: Any, drop: bool
) -> None:
    body = AgentKey.generate().registration("fuzz", "ops@example.com")
    if drop:
        body.pop(field, None)
    else:
        body[field] = junk
    # Encoded here: httpx refuses NaN and infinities, which are junk worth sending.
    raw = json.dumps(body).encode()
    assert_clean(_post(seeded.client, "/v1/agents", raw, "application/json"))


@FUZZ
@given(doc=JSON_VALUES | st.binary(max_size=300), content_type=CONTENT_TYPES)
@example(doc=b"\xff\xfe\x00", content_type="application/json")
@example(doc=b'{"timestamp": 1e999}', content_type="application/json")
def test_a_junk_registration_body_never_gets_a_server_error(
    seeded: Seeded, doc: Any, content_type: str | None
) -> None:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    assert_clean(_post(seeded.client, "/v1/agents", raw, content_type))


# Header values as they can arrive on the wire: latin-1, no control characters, no
# surrounding blanks (the client refuses to send those).
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                           exclude_characters="\x7f"), max_size=120,
).map(lambda s: s.strip(" ")) | st.from_regex(r"-?[0-9]{1,40}", fullmatch=True) | st.sampled_from(
    ["\xb2", "\xb9\xb2\xb3", "--5", "9" * 400, "9" * 5000, "-0", "+1", "1e9", "0x10", "did:mesh:",
     "did:mesh:" + "f" * 32, "====", "A" * 200]
)
SIGNED_HEADERS = [AGENT_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER]


def _signed_endpoints(mesh: Seeded) -> list[tuple[str, dict[str, Any]]]:
    agent, other = mesh.agents[0], mesh.agents[1]
    return [
        ("/v1/policy/decide", {"did": agent.did, "tool": "search", "action": "query"}),
        ("/v1/credentials", {"did": agent.did, "ttl_seconds": 60}),
        ("/v1/handshakes/challenge", {"did": other.did}),
        (f"/v1/credentials/{mesh.jtis[0]}/revoke", {"reason": "superseded"}),
    ]


@FUZZ
@given(endpoint=st.integers(0, 3), header=st.sampled_from(SIGNED_HEADERS),
       junk=HEADER_TEXT | st.none())
@example(endpoint=0, header=TIMESTAMP_HEADER, junk="\xb2")
@example(endpoint=1, header=TIMESTAMP_HEADER, junk="9" * 400)
@example(endpoint=1, header=TIMESTAMP_HEADER, junk="9" * 5000)
@example(endpoint=2, header=TIMESTAMP_HEADER, junk="--5")
@example(endpoint=0, header=NONCE_HEADER, junk="n" * 15)
@example(endpoint=0, header=NONCE_HEADER, junk="n" * 65)
@example(endpoint=3, header=NONCE_HEADER, junk="did:mesh:" + "0" * 32)
def test_junk_signature_headers_on_signed_endpoints_never_get_a_server_error(
    seeded: Seeded, endpoint: int, header: str, junk: str | None
) -> None:
    path, body = _signed_endpoints(seeded)[endpoint]
    raw = json.dumps(body).encode()
    headers: dict[str, Any] = seeded.agents[0].headers("POST", path, raw)
    if junk is None:
        del headers[header]  # a missing header
    else:
        headers[header] = junk.encode("latin-1")
    r = _post(seeded.client, path, raw, "application/json", headers)
    assert_clean(r)


@FUZZ
@given(endpoint=st.integers(0, 3), doc=JSON_VALUES | st.binary(max_size=200),
       content_type=CONTENT_TYPES)
def test_junk_bodies_correctly_signed_never_get_a_server_error(
    seeded: Seeded, endpoint: int, doc: Any, content_type: str | None
) -> None:
    # Signed over the junk itself, so the request gets past the signature check, and the
    # body's own validation (or the handler) has to cope.
    path, _ = _signed_endpoints(seeded)[endpoint]
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = seeded.agents[0].headers("POST", path, raw)
    assert_clean(_post(seeded.client, path, raw, content_type, headers))


@FUZZ
@given(endpoint=st.integers(0, 3), query=st.text(max_size=60))
def test_a_signed_request_with_any_query_string_is_never_a_server_error(
    seeded: Seeded, endpoint: int, query: str
) -> None:
    # The query string is signed as sent: either it verifies (and is ignored by these
    # routes) or the request is refused, never a 5xx.
    path, body = _signed_endpoints(seeded)[endpoint]
    target = str(httpx.URL(path, params={"q": query}).raw_path.decode("ascii"))
    raw = json.dumps(body).encode()
    headers = seeded.agents[0].headers("POST", target, raw)
    r = _post(seeded.client, target, raw, "application/json", headers)
    assert_clean(r)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


TOKEN_PART = (
    JSON_VALUES.map(lambda v: _b64url(json.dumps(v).encode()))
    | st.binary(max_size=120).map(_b64url)
    | st.text(max_size=60)
    | st.sampled_from(["", "=", "e30", "e30=", "e30==", "a", "!!!!", "AA", "AB", "AAA="])
)
NESTED = st.integers(1, 3000).flatmap(
    lambda depth: st.sampled_from([b"[" * depth, b'{"a":' * depth, b"[" * depth + b"]" * depth])
)


@FUZZ
@given(parts=st.lists(TOKEN_PART | NESTED.map(_b64url), min_size=1, max_size=4),
       where=st.sampled_from(["verify", "handshake"]))
@example(parts=[_b64url(b"[" * 3000), "e30", "AA"], where="verify")
@example(parts=[_b64url(b'{"a":' * 3000), "e30", "AA"], where="handshake")
def test_any_token_is_judged_never_a_server_error(
    seeded: Seeded, parts: list[str], where: str
) -> None:
    token = ".".join(parts)[:4096] or "x"
    if where == "verify":
        r = seeded.client.post("/v1/credentials/verify", json={"token": token})
        assert_clean(r)  # 422 for text no token can hold (NUL)
        assert r.status_code == 422 or r.json()["valid"] is False, r.text
    else:
        # A real challenge, rightly answered: only the credential can fail the handshake.
        # A new peer each time: the schemathesis run may have deregistered the seeded ones.
        peer = register(seeded.client)
        ch = seeded.client.post("/v1/handshakes/challenge", json={"did": peer.did},
                                headers=ADMIN).json()
        r = seeded.client.post("/v1/handshakes/verify", json={
            "challenge_id": ch["challenge_id"], "did": peer.did,
            "signature": peer.sign_challenge(ch["challenge_id"], ch["nonce"]),
            "credential": token})
        assert_clean(r, field=r.status_code != 403)
        assert r.status_code == 422 or r.json()["reason"] == "bad_signature", r.text


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
@pytest.mark.parametrize("path", ["/v1/agents", "/v1/credentials/verify", "/v1/handshakes/verify",
                                  "/v1/policy/decide"])
def test_deeply_nested_bodies_are_refused_with_a_4xx(seeded: Seeded, path: str,
                                                     depth: int) -> None:
    for raw in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        r = _post(seeded.client, path, raw[:60_000], "application/json")
        assert_clean(r)
        assert 400 <= r.status_code < 500


QUERY_VALUES = JUNK_TEXT | EDGE_INTS.map(str) | st.from_regex(r"-?[0-9]{1,30}", fullmatch=True)


@FUZZ
@given(path=st.sampled_from(["/v1/agents", "/v1/audit"]),
       params=st.dictionaries(st.sampled_from(["capability", "limit", "cursor", "after"]),
                              QUERY_VALUES, max_size=4))
@example(path="/v1/audit", params={"after": str(2**63)})
@example(path="/v1/agents", params={"limit": str(10**400)})
def test_junk_query_parameters_never_get_a_server_error(
    seeded: Seeded, path: str, params: dict[str, str]
) -> None:
    assert_clean(seeded.client.get(path, params=params, headers=ADMIN))


def test_unknown_routes_methods_and_undecodable_bodies_answer_in_the_mesh_error_format(
    seeded: Seeded,
) -> None:
    # These are answered by the framework before any handler runs. No field is at fault
    # in a wrong route or method, so none is asked for.
    client = seeded.client
    assert_clean(client.get("/v1/no-such-thing"), field=False)
    assert_clean(client.put("/v1/agents"), field=False)
    assert_clean(_post(client, "/v1/agents", b"\xff\xfe\x00", "application/json"))
    r = _post(client, "/v1/agents", b'{"name": "\xff"}', "application/json")
    assert_clean(r)
    assert r.json()["field"] == "body"


# -- PostgreSQL: text it cannot store ------------------------------------------------------


@pytest.mark.postgres
def test_text_with_nul_characters_is_a_4xx_naming_the_field_on_postgresql(pg_url: str) -> None:
    # PostgreSQL text cannot hold U+0000 (SQLite can): the mesh must refuse it at the edge.
    with MeshProcess(pg_url) as proc, proc.client() as client:
        agent = register(client)
        key = AgentKey.generate()
        r = client.post("/v1/agents", json=key.registration("a\x00b", "o@example.com"))
        assert_clean(r)
        assert (r.status_code, r.json()["field"]) == (422, "body.name")
        r = client.post("/v1/agents", json=key.registration("ab", "o@example.com", ["x", "\x00"]))
        assert (r.status_code, r.json()["field"]) == (422, "body.capabilities")
        assert client.post("/v1/agents", json=key.registration("a\\u0000", "o@example.com"))\
            .status_code == 201  # the escape's text, not the character, is just text
        assert_clean(client.get("/v1/agents", params={"cursor": "\x00"}))
        assert_clean(client.get("/v1/agents", params={"capability": "\x00"}))
        assert_clean(client.get("/v1/agents/did%3Amesh%3A%00"))
        assert_clean(client.post("/v1/credentials/%00/revoke", json={}, headers=ADMIN))
        r = client.put(f"/v1/agents/{agent.did}/trust", json={"score": 10, "reason": "\x00"},
                       headers=ADMIN)
        assert (r.status_code, r.json()["field"]) == (422, "body.reason")
        assert client.get("/v1/audit/verify", headers=ADMIN).json()["ok"] is True
