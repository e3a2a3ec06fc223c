"""The anchor tree: one RFC 9162 Merkle tree (pinseal_protocol.merkle) over batch hashes.

Its leaves are the **batch hashes** (SHA-256 of each signed gateway batch header, `batch.batch_hash`), not
the gateways' bare Merkle roots. A bare root commits only to the bundles; the batch hash commits to the
whole signed header: the root, the count (which fixes the batch tree's size, so the bundle's audit path is
unambiguous), the gateway's key id, batch number and chain link, the receive-time window, and the gateway's
signature. So an anchored batch hash pins one exact header a verifier can check, and two gateways that
happen to sign the same root are still two leaves. It is also the name the ingest already stores each
batch under, so the ingest hands its stored names over as they are.

A leaf's hash is the RFC's `SHA-256(0x00 || batch_hash)`; the tree, audit paths and their check are the
protocol's, so any RFC 9162 verifier checks an anchor path too.
"""

from __future__ import annotations

from collections.abc import Sequence

from pinseal_protocol import merkle

LEAF_SIZE = 32


def check_leaves(leaves: Sequence[bytes]) -> None:
    if any(len(leaf) != LEAF_SIZE for leaf in leaves):
        raise ValueError("anchor leaves are 32-byte batch hashes")


def anchor_tree(leaves: Sequence[bytes]) -> merkle.MerkleTree:
    check_leaves(leaves)
    return merkle.MerkleTree([bytes(leaf) for leaf in leaves])


def anchor_root(leaves: Sequence[bytes]) -> bytes:
    """The root anchored on the chain for these batch hashes, in this order."""
    return anchor_tree(leaves).root


def root_from_path(batch_hash: bytes, index: int, tree_size: int, path: Sequence[bytes]) -> bytes | None:
    """The root an audit path leads to from a batch hash, None if the path is invalid."""
    return merkle.root_from_path(merkle.leaf_hash(batch_hash), index, tree_size, path)
