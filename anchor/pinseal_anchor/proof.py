"""The anchored proof document: a reading's bundle, up through its gateway batch and the ingest's anchor root
to a transaction in a block (docs/anchoring.md, "Proof document").

    {"version": 1,
     "bundle": "<hex of the bundle's bytes>",
     "batch": <the batch proof document of docs/protocol.md §9.4: bundle -> signed batch header>,
     "anchor": {"root": hex, "leaf_index": i, "tree_size": n, "path": [hex, ...], "chain_id": int,
                "mode": "calldata" | "contract", "tx_hash": hex, "block_number": int, "block_hash": hex}}

The anchor part proves that the batch hash (SHA-256 of the batch proof's `header`) is leaf `leaf_index` of
the anchored tree with `root`. Everything in it is a claim: `verify.verify_anchored_proof` checks each one
against the chain and the trust anchors its caller gives.
"""

from __future__ import annotations

from typing import Any

from pinseal_anchor import outbox
from pinseal_anchor.sql import Database
from pinseal_anchor.tree import anchor_tree

VERSION = 1


def anchored_proof(
    batch_proof_doc: dict[str, Any], bundle_body: bytes, anchor: dict[str, Any]
) -> dict[str, Any]:
    """The extended proof document from the batch proof document, the bundle's bytes and the anchor part
    (`anchor_proof`)."""
    return {
        "version": VERSION,
        "bundle": bytes(bundle_body).hex(),
        "batch": dict(batch_proof_doc),
        "anchor": anchor,
    }


def anchor_part(
    *,
    root: bytes,
    leaf_index: int,
    tree_size: int,
    path: list[bytes],
    chain_id: int,
    mode: str,
    tx_hash: bytes,
    block_number: int,
    block_hash: bytes,
) -> dict[str, Any]:
    return {
        "root": root.hex(),
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "path": [h.hex() for h in path],
        "chain_id": chain_id,
        "mode": mode,
        "tx_hash": tx_hash.hex(),
        "block_number": block_number,
        "block_hash": block_hash.hex(),
    }


def anchor_proof(db: Database, batch_hash: bytes, *, confirmed_only: bool = True) -> dict[str, Any] | None:
    """The anchor part for one batch hash, rebuilt from the anchor's recorded leaves; None while the batch is
    not anchored (not sealed yet, or its anchor not confirmed when `confirmed_only`)."""
    found = outbox.leaf_anchor(db, batch_hash)
    if found is None:
        return None
    anchor_id, index = found
    anchor = outbox.get(db, anchor_id)
    if anchor.state != "confirmed" and (confirmed_only or anchor.block_hash is None):
        return None
    assert anchor.tx_hash and anchor.block_hash and anchor.block_number is not None and anchor.chain_id
    tree = anchor_tree(outbox.leaves_of(db, anchor_id))
    if tree.root != anchor.root:  # the stored leaves must rebuild the anchored root
        raise RuntimeError(f"anchor {anchor_id}: its leaves do not rebuild its root")
    return anchor_part(
        root=anchor.root,
        leaf_index=index,
        tree_size=tree.size,
        path=tree.inclusion_proof(index),
        chain_id=anchor.chain_id,
        mode=anchor.mode or "calldata",
        tx_hash=anchor.tx_hash,
        block_number=anchor.block_number,
        block_hash=anchor.block_hash,
    )
