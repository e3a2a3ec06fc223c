"""RFC 9162 §2.1 Merkle Tree Hash and inclusion proofs (merkle.py).

Checked three ways: hand-computed small trees, an independent implementation that follows the RFC's
recursive definitions literally (for every size 1..70 and every index), and hypothesis mutations that
must all fail verification.
"""

import hashlib
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pinseal_protocol import merkle


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- the RFC's definitions, literally (independent of merkle.py) ------------------------------------


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH(D[n])."""
    if not d:
        return sha(b"")
    if len(d) == 1:
        return sha(b"\x00" + d[0])
    k = largest_power_of_two_below(len(d))
    return sha(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:]))


def rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = largest_power_of_two_below(len(d))
    if m < k:
        return [*rfc_path(m, d[:k]), rfc_mth(d[k:])]
    return [*rfc_path(m - k, d[k:]), rfc_mth(d[:k])]


def sides(m: int, n: int) -> list[str]:
    """Which side each PATH(m, D[n]) hash sits on, leaf level first: the whole of what a verifier
    learns from (m, n). Two (index, size) pairs with the same sides accept the same proofs, which is
    why a proof's tree size must come from a signed header (batch count), not from the proof."""
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    return [*sides(m, k), "R"] if m < k else [*sides(m - k, n - k), "L"]


def leaves_of(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


# --- hand-computed trees -----------------------------------------------------------------------------


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert merkle.root([]) == sha(b"")
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_one_leaf() -> None:
    assert merkle.root([b"a"]) == sha(b"\x00a") == merkle.leaf_hash(b"a")
    assert merkle.inclusion_proof([b"a"], 0) == []
    assert merkle.verify_inclusion(b"a", 0, 1, [], sha(b"\x00a"))


def test_three_leaves_by_hand() -> None:
    a, b, c = (sha(b"\x00" + x) for x in (b"a", b"b", b"c"))
    ab = sha(b"\x01" + a + b)
    assert merkle.root([b"a", b"b", b"c"]) == sha(b"\x01" + ab + c)
    assert merkle.inclusion_proof([b"a", b"b", b"c"], 0) == [b, c]
    assert merkle.inclusion_proof([b"a", b"b", b"c"], 2) == [ab]


def test_five_leaves_by_hand() -> None:
    h = [sha(b"\x00" + bytes([i])) for i in range(5)]
    n01, n23 = sha(b"\x01" + h[0] + h[1]), sha(b"\x01" + h[2] + h[3])
    n0123 = sha(b"\x01" + n01 + n23)
    leaves = [bytes([i]) for i in range(5)]
    assert merkle.root(leaves) == sha(b"\x01" + n0123 + h[4])
    assert merkle.inclusion_proof(leaves, 4) == [n0123]
    assert merkle.inclusion_proof(leaves, 2) == [h[3], n01, h[4]]


def test_certificate_transparency_reference_roots() -> None:
    """The eight-leaf tree of the Certificate Transparency reference tests (RFC 6962 test data)."""
    leaves = [
        bytes.fromhex(x)
        for x in (
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        )
    ]
    expected = {
        1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    }
    for n, root in expected.items():
        assert merkle.root(leaves[:n]).hex() == root


# --- against the literal RFC -------------------------------------------------------------------------


def test_every_size_and_index_matches_the_rfc_definitions() -> None:
    for n in range(1, 71):
        d = leaves_of(n)
        tree = merkle.MerkleTree(d)
        root = rfc_mth(d)
        assert tree.root == merkle.root(d) == root, n
        for m in range(n):
            path = rfc_path(m, d)
            assert tree.inclusion_proof(m) == merkle.inclusion_proof(d, m) == path, (n, m)
            assert merkle.verify_inclusion(d[m], m, n, path, root), (n, m)
            for other in (n - 1, n + 1, 2 * n):
                same_shape = m < other and sides(m, other) == sides(m, n)
                assert merkle.verify_inclusion(d[m], m, other, path, root) == same_shape, (n, m, other)


def test_from_leaf_hashes_equals_from_leaves() -> None:
    d = leaves_of(13)
    tree = merkle.MerkleTree.from_leaf_hashes([merkle.leaf_hash(x) for x in d])
    assert tree.root == merkle.root(d) and tree.inclusion_proof(6) == merkle.inclusion_proof(d, 6)


def test_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        merkle.inclusion_proof(leaves_of(3), 3)
    with pytest.raises(IndexError):
        merkle.MerkleTree([]).inclusion_proof(0)
    assert not merkle.verify_inclusion(b"x", 0, 0, [], merkle.root([]))
    assert not merkle.verify_inclusion(b"x", -1, 3, [], merkle.root([]))


def test_hundred_thousand_leaves_are_fast() -> None:
    d = [sha(i.to_bytes(4, "big")) for i in range(100_000)]
    start = time.perf_counter()
    tree = merkle.MerkleTree(d)
    proofs = [tree.inclusion_proof(i) for i in range(0, 100_000, 997)]
    elapsed = time.perf_counter() - start
    assert all(
        merkle.verify_inclusion(d[i], i, len(d), p, tree.root)
        for i, p in zip(range(0, 100_000, 997), proofs, strict=True)
    )
    assert elapsed < 2.0


# --- any change fails --------------------------------------------------------------------------------


@st.composite
def proof_cases(draw: st.DrawFn) -> tuple[list[bytes], int]:
    n = draw(st.integers(1, 40))
    d = [draw(st.binary(max_size=8)) + i.to_bytes(2, "big") for i in range(n)]
    return d, draw(st.integers(0, n - 1))


def flip(data: bytes, position: int, bit: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


@settings(max_examples=300, deadline=None)
@given(case=proof_cases(), what=st.integers(0, 7), position=st.integers(0, 10_000), bit=st.integers(0, 7))
@example(case=([b"a\x00\x00", b"b\x00\x01"], 0), what=6, position=0, bit=0)  # a one-hash path: no swap
def test_any_modification_fails_verification(
    case: tuple[list[bytes], int], what: int, position: int, bit: int
) -> None:
    d, index = case
    n, leaf, root = len(d), d[index], merkle.root(d)
    path = merkle.inclusion_proof(d, index)
    assert merkle.verify_inclusion(leaf, index, n, path, root)
    if what == 0:  # another leaf
        bad = (leaf + b"!", index, n, path, root)
    elif what == 1:  # another index
        bad = (leaf, (index + 1 + position % n) % (n + 1) if n > 1 else 1, n, path, root)
    elif what == 2:  # another size
        other = position % 80 + 1
        bad = (leaf, index, other if other != n else n + 1, path, root)
    elif what == 3 and path:  # one path hash altered
        i = position % len(path)
        bad = (leaf, index, n, [*path[:i], flip(path[i], position, bit), *path[i + 1 :]], root)
    elif what == 4:  # a hash added to the path
        bad = (leaf, index, n, [*path, sha(bytes([bit]))], root)
    elif what == 5 and path:  # a hash dropped from the path
        i = position % len(path)
        bad = (leaf, index, n, path[:i] + path[i + 1 :], root)
    elif what == 6 and len(path) > 1:  # two hashes swapped
        bad = (leaf, index, n, [path[1], path[0], *path[2:]], root)
    else:  # another root
        bad = (leaf, index, n, path, flip(root, position, bit))
    if what in (1, 2):
        # (index, size) are authenticated only as far as the path's shape goes (see `sides`).
        same_shape = bad[1] < bad[2] and sides(bad[1], bad[2]) == sides(index, n)
        assert merkle.verify_inclusion(*bad) == same_shape
        return
    if what == 6 and len(path) > 1 and path[0] == path[1]:
        return  # swapping two equal hashes changes nothing
    assert not merkle.verify_inclusion(*bad)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    """An interior node presented as a leaf (the second-preimage attack RFC 9162 prevents) fails."""
    d = leaves_of(4)
    h = [merkle.leaf_hash(x) for x in d]
    fake_leaf = h[0] + h[1]  # the preimage of node(0, 1) without its 0x01 prefix
    assert not merkle.verify_inclusion(fake_leaf, 0, 2, [sha(b"\x01" + h[2] + h[3])], merkle.root(d))
