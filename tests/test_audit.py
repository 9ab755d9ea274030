import hashlib
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.audit import GENESIS_HASH, ChainCheck, Entry, canonical, entry_hash, walk
from mesh.checkpoint import LogSigner
from mesh.merkle import Tree, leaf_hash


def chain(n: int) -> list[Entry]:
    entries, prev = [], GENESIS_HASH
    for seq in range(n):
        data = canonical({"n": seq})
        digest = entry_hash(seq, 1000.0 + seq, "admin", "test", "s", data, prev)
        entries.append(Entry(seq, 1000.0 + seq, "admin", "test", "s", data, prev, digest))
        prev = digest
    return entries


def test_an_intact_chain_verifies_with_its_head_and_length() -> None:
    entries = chain(5)
    check = walk(entries)
    assert check.as_json() == {"ok": True, "length": 5, "head": entries[-1].hash,
                               "first_bad_index": None, "reason": None, "signed_from": None}


def test_edited_data_is_detected_at_its_own_index() -> None:
    entries = chain(6)
    entries[3] = replace(entries[3], data=canonical({"n": 99}))
    check = walk(entries)
    assert (check.ok, check.first_bad_index, check.length) == (False, 3, 6)


def test_a_removed_entry_is_detected_where_the_gap_starts() -> None:
    entries = chain(6)
    del entries[2]
    assert walk(entries).first_bad_index == 2


def test_a_rehashed_entry_still_breaks_the_link_to_its_successor() -> None:
    entries = chain(5)
    e = entries[1]
    data = canonical({"n": "forged"})
    forged = entry_hash(e.seq, e.ts, e.actor, e.action, e.subject, data, e.prev_hash)
    entries[1] = replace(e, data=data, hash=forged)
    assert walk(entries).first_bad_index == 2


def test_canonical_json_ignores_key_order_and_whitespace() -> None:
    assert canonical({"b": 1, "a": [1, 2]}) == canonical({"a": [1, 2], "b": 1}) == \
        '{"a":[1,2],"b":1}'


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.text(), JSON, max_size=4), text=st.text(),
       ts=st.floats(min_value=0, max_value=2e9), seq=st.integers(min_value=0, max_value=2**62))
def test_the_spliced_hash_is_the_hash_of_the_canonical_envelope(
    data: dict[str, object], text: str, ts: float, seq: int
) -> None:
    envelope = {"seq": seq, "ts": ts, "actor": text, "action": "a\u2028\"", "subject": text,
                "data": data, "prev_hash": GENESIS_HASH}
    expected = hashlib.sha256(canonical(envelope).encode()).hexdigest()
    assert entry_hash(seq, ts, text, "a\u2028\"", text, canonical(data), GENESIS_HASH) == expected


def test_a_respelled_but_equal_data_field_fails_verification() -> None:
    entries = chain(3)
    entries[1] = replace(entries[1], data='{"n": 1}')  # same object, not canonical text
    assert walk(entries).first_bad_index == 1


LOG_KEY = LogSigner(bytes(range(32)))


def signed(entries: list[Entry], signer: LogSigner = LOG_KEY) -> list[Entry]:
    return [replace(e, signature=signer.sign_entry(e.hash)) for e in entries]


def signed_walk(entries: list[Entry], signed_from: int | None = None) -> ChainCheck:
    check = ChainCheck(signatures=LOG_KEY.verifier.entry_signed, signed_from=signed_from)
    check.feed(entries)
    return check.end()


def appended(entries: list[Entry], signature: str | None = None) -> list[Entry]:
    """An entry appended with its hash linked to the head: what a forger with the database
    but not the log key can write."""
    last, data = entries[-1], canonical({"forged": True})
    digest = entry_hash(last.seq + 1, last.ts + 1, "admin", "agent.registered", "did:x", data,
                        last.hash)
    forged = Entry(last.seq + 1, last.ts + 1, "admin", "agent.registered", "did:x", data,
                   last.hash, digest, signature)
    return [*entries, forged]


def test_signed_entries_verify_and_unsigned_ones_only_before_signing_began() -> None:
    entries = chain(3) + signed(chain(6)[3:])  # an old store: signing began at 3
    check = signed_walk(entries)
    assert (check.ok, check.signed_from, check.length) == (True, 3, 6)
    assert signed_walk(signed(chain(4))).as_json()["signed_from"] == 0


def test_a_forged_append_with_the_chain_recomputed_fails_at_its_index() -> None:
    entries = signed(chain(5))
    assert walk(appended(entries)).ok  # the hash chain alone is fooled
    check = signed_walk(appended(entries))
    assert (check.ok, check.first_bad_index, check.reason) == (False, 5, "unsigned")
    other = LogSigner(bytes(32))  # a key of the forger's own
    forged = appended(entries)
    forged[-1] = replace(forged[-1], signature=other.sign_entry(forged[-1].hash))
    check = signed_walk(forged)
    assert (check.ok, check.first_bad_index, check.reason) == (False, 5, "signature")
    moved = appended(entries, signature=entries[2].signature)  # a real signature, reused
    assert (signed_walk(moved).first_bad_index, signed_walk(moved).reason) == (5, "signature")


def batches(entries: list[Entry], tails: set[int]) -> list[Entry]:
    """The log as write batches leave it: only each batch's last entry signed."""
    return [replace(e, signature=LOG_KEY.sign_entry(e.hash)) if e.seq in tails else e
            for e in entries]


def test_a_batch_signature_covers_the_entries_before_it() -> None:
    log = batches(chain(8), {0, 3, 7})
    check = ChainCheck(signatures=LOG_KEY.verifier.entry_signed, tree=Tree())
    check.feed(log[:6])  # mid-batch: 4 and 5 wait for the signature at 7
    assert (check.ok, check.uncovered_from, check.tree.size) == (True, 4, 4)  # type: ignore[union-attr]
    check.feed(log[6:])
    assert (check.end().ok, check.signed_from, check.tree.size) == (True, 0, 8)  # type: ignore[union-attr]
    assert check.tree.root() == Tree([leaf_hash(e.envelope()) for e in log]).root()  # type: ignore[union-attr]


def test_a_tail_no_signature_covers_fails_at_its_first_entry() -> None:
    log = batches(chain(8), {0, 3, 7})
    stripped = [*log[:7], replace(log[7], signature=None)]
    assert (signed_walk(stripped).first_bad_index, signed_walk(stripped).reason) == (4, "unsigned")
    forged = appended(log)
    assert (signed_walk(forged).first_bad_index, signed_walk(forged).reason) == (8, "unsigned")


def test_a_rewrite_inside_a_batch_fails_from_the_batch_s_first_entry() -> None:
    log = batches(chain(8), {0, 3, 7})
    # Entry 5 rewritten and the chain recomputed after it: the signature at 7 no longer fits.
    rewritten, prev = log[:5], log[4].hash
    for e in log[5:]:
        subject = "did:forged" if e.seq == 5 else e.subject
        digest = entry_hash(e.seq, e.ts, e.actor, e.action, subject, e.data, prev)
        rewritten.append(replace(e, subject=subject, prev_hash=prev, hash=digest))
        prev = digest
    check = signed_walk(rewritten)
    assert (check.first_bad_index, check.reason) == (4, "signature")


def test_stripped_signatures_fail_where_signing_is_known_to_have_begun() -> None:
    stripped = appended(chain(5))  # every signature removed, then a forged append
    assert signed_walk(stripped).ok  # indistinguishable from a log before signing
    check = signed_walk(stripped, signed_from=0)
    assert (check.first_bad_index, check.reason) == (0, "unsigned")
