"""The Merkle tree against RFC 6962/9162's published vectors (transparency-dev/merkle's
testonly data), and every proof of every small tree: each verifies, and any change fails."""

import pytest

from mesh.merkle import (
    EMPTY_ROOT,
    Tree,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

ENTRIES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
CONSISTENCY = [
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]

REFERENCE = Tree([leaf_hash(e) for e in ENTRIES])


def test_heads_match_the_published_roots_for_every_size() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    assert [REFERENCE.root(n).hex() for n in range(9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_published_ones(index: int, size: int, proof: list[str]) -> None:
    assert [p.hex() for p in REFERENCE.inclusion_proof(index, size)] == proof
    assert verify_inclusion(REFERENCE.leaf(index), index, size, [bytes.fromhex(p) for p in proof],
                            bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "size", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_published_ones(old: int, size: int, proof: list[str]) -> None:
    assert [p.hex() for p in REFERENCE.consistency_proof(old, size)] == proof
    assert verify_consistency(old, size, [bytes.fromhex(p) for p in proof],
                              bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[size]))


LEAVES = [leaf_hash(i.to_bytes(2, "big")) for i in range(40)]
BIG = Tree(LEAVES)


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def test_every_inclusion_proof_verifies_and_every_tamper_fails() -> None:
    for size in range(1, len(LEAVES) + 1):
        root = BIG.root(size)
        assert root == root_of(LEAVES[:size])  # the cached levels agree with a fresh tree
        for index in range(size):
            proof = BIG.inclusion_proof(index, size)
            assert verify_inclusion(LEAVES[index], index, size, proof, root)
            assert not verify_inclusion(_flip(LEAVES[index]), index, size, proof, root)
            assert not verify_inclusion(LEAVES[index], index, size, proof, _flip(root))
            if size > 1:
                other = (index + 1) % size
                assert not verify_inclusion(LEAVES[index], other, size, proof, root)
                for i in range(len(proof)):
                    bad = [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
                    assert not verify_inclusion(LEAVES[index], index, size, bad, root)
                assert not verify_inclusion(LEAVES[index], index, size, proof[:-1], root)
                assert not verify_inclusion(LEAVES[index], index, size, [*proof, root], root)


def test_every_consistency_proof_verifies_and_every_tamper_fails() -> None:
    for size in range(1, len(LEAVES) + 1):
        root = BIG.root(size)
        for old in range(1, size + 1):
            old_root = BIG.root(old)
            proof = BIG.consistency_proof(old, size)
            assert verify_consistency(old, size, proof, old_root, root)
            assert not verify_consistency(old, size, proof, _flip(old_root), root)
            assert not verify_consistency(old, size, proof, old_root, _flip(root))
            for i in range(len(proof)):
                bad = [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
                assert not verify_consistency(old, size, bad, old_root, root)
            if old < size:
                assert not verify_consistency(old, size, proof[:-1], old_root, root)
                assert not verify_consistency(old + 1, size, proof, old_root, root)


def test_a_rewritten_prefix_has_no_consistency_proof() -> None:
    rewritten = Tree([*LEAVES[:7], leaf_hash(b"forged"), *LEAVES[8:]])
    for old in range(8, 20):
        proof = rewritten.consistency_proof(old, 30)
        assert not verify_consistency(old, 30, proof, BIG.root(old), rewritten.root(30))


def test_truncate_then_append_rebuilds_the_same_levels() -> None:
    tree = Tree(LEAVES)
    tree.truncate(13)
    assert tree.size == 13 and tree.root() == root_of(LEAVES[:13])
    for leaf in LEAVES[13:]:
        tree.append(leaf)
    assert [tree.root(n) for n in range(41)] == [BIG.root(n) for n in range(41)]


def test_sizes_beyond_the_tree_are_refused() -> None:
    with pytest.raises(ValueError, match="beyond"):
        BIG.root(41)
    with pytest.raises(ValueError, match="not in a tree"):
        BIG.inclusion_proof(5, 5)
    with pytest.raises(ValueError, match="no consistency proof"):
        BIG.consistency_proof(0, 5)
