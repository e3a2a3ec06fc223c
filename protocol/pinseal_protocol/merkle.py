"""Merkle Tree Hash and inclusion proofs of RFC 9162 §2.1, with SHA-256.

A gateway signs one root over many bundles instead of one signature per bundle; anyone holding a
bundle, its audit path and the signed batch header can then show that the gateway committed to that
bundle. The RFC's tree is used unchanged (leaf hash `SHA-256(0x00 || leaf)`, node hash
`SHA-256(0x01 || left || right)`, the split at the largest power of two below n), so any RFC 9162
(Certificate Transparency) verifier checks pinseal proofs too.

The tree is built bottom-up, level by level: pairing neighbours and carrying a lone last node up
unchanged yields exactly the RFC's recursive split, in O(n) hashes and one list per level, which keeps
100k-leaf batches fast. `verify_inclusion` is the RFC's §2.1.3.2 algorithm verbatim, written without
reference to how the tree was built, so the two check each other in the tests.
"""

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """`SHA-256(0x00 || leaf)`: the prefix keeps a leaf from ever passing for an interior node."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """`SHA-256(0x01 || left || right)`."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


class MerkleTree:
    """All levels of one tree, so that the root and every audit path come from a single O(n) pass.

    Level 0 holds the leaf hashes; level k+1 pairs the nodes of level k, a lone last node moving up
    unchanged (RFC 9162's split at the largest power of two puts it exactly there).
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._levels = _levels([leaf_hash(bytes(leaf)) for leaf in leaves])

    @classmethod
    def from_leaf_hashes(cls, hashes: Sequence[bytes]) -> "MerkleTree":
        """A tree from already computed leaf hashes (e.g. kept in a store)."""
        tree = cls.__new__(cls)
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("leaf hashes are 32 bytes")
        tree._levels = _levels([bytes(h) for h in hashes])
        return tree

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        """The Merkle Tree Hash (SHA-256 of the empty string for no leaves)."""
        top = self._levels[-1]
        return top[0] if top else EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        """The hash of leaf `index`."""
        self._check_index(index)
        return self._levels[0][index]

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[n]): sibling hashes from the leaf's level up to the root's."""
        self._check_index(index)
        path: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf index {index} outside a tree of {self.size}")


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    levels = [hashes]
    level = hashes
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        levels.append(paired)
        level = paired
    return levels


def root(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH(D[n]) over the leaves (arbitrary byte strings)."""
    return MerkleTree(leaves).root


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[n]). Building many proofs: keep one `MerkleTree` instead."""
    return MerkleTree(leaves).inclusion_proof(index)


def root_from_path(leaf_hash_: bytes, index: int, tree_size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that `path` leads to from a leaf hash (RFC 9162 §2.1.3.2 steps 1-4), None if invalid."""
    if not 0 <= index < tree_size or len(leaf_hash_) != HASH_SIZE:
        return None
    fn, sn = index, tree_size - 1
    r = bytes(leaf_hash_)
    for p in path:
        if sn == 0 or len(p) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion_hash(
    leaf_hash_: bytes, index: int, tree_size: int, path: Sequence[bytes], root_: bytes
) -> bool:
    """Whether `path` proves a leaf with this leaf hash at `index` in the tree of `tree_size` with `root_`."""
    computed = root_from_path(leaf_hash_, index, tree_size, path)
    return computed is not None and computed == bytes(root_)


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: whether `path` proves `leaf` (the leaf itself, not its hash) under `root`."""
    return verify_inclusion_hash(leaf_hash(bytes(leaf)), index, tree_size, path, root)
