"""Inclusion proofs: show that the gateway committed to a bundle, checkable without trusting the gateway.

The document (`pinseal_protocol.batch.proof_document`) carries the signed batch header, the bundle
hash, its leaf index and the RFC 9162 audit path, so anyone holding only the document and the
gateway's public key can check it (`batch.verify_proof_document`): a device owner proving a reading
was forwarded, or the network auditing a gateway. Proofs are rebuilt from the store on demand (a
batch's leaves are the bundle hashes, already indexed), so nothing extra is kept per bundle.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pinseal_gateway.store import batches
from pinseal_protocol import batch

PENDING = "pending"
"""`status` of the answer for a bundle that is stored but not yet sealed into a batch."""


def proof_for(conn: sqlite3.Connection, bundle_hash: bytes) -> dict[str, Any] | None:
    """The JSON-ready inclusion proof of a stored bundle.

    Returns None for a bundle hash the gateway does not hold; for a stored bundle still waiting for
    its batch, `{"status": "pending", "bundle_hash": hex, "received_at": unix time}` (a proof exists
    within one batch interval: ask again). For a bundle taken out of a batch the network refused,
    `{"status": "dead_letter", ..., "reason": why}` or `{"status": "held_elsewhere", ...}` (the network
    holds it from another gateway): no proof from this gateway will come. Otherwise the proof document
    exactly as `pinseal_protocol.batch.verify_proof_document` takes it (it has no "status" key).
    """
    place = batches.bundle_place(conn, bytes(bundle_hash))
    if place is None:
        return None
    fate = (
        batches.uplink_fate(conn, place.hash) if place.batch_no is not None and place.batch_no < 0 else None
    )
    if fate is not None:  # taken out of a refused batch (issue 11 #2): no proof will ever exist
        return {
            "status": fate[0],
            "bundle_hash": place.hash.hex(),
            "received_at": place.received_at,
            **fate[1],
        }
    if place.batch_no is None or place.leaf_index is None:
        return {"status": PENDING, "bundle_hash": place.hash.hex(), "received_at": place.received_at}
    stored = batches.get_batch(conn, place.batch_no)
    if stored is None:
        raise LookupError(f"bundle {place.hash.hex()} names batch {place.batch_no}, which is not stored")
    hashes = batches.batch_bundle_hashes(conn, place.batch_no)
    return batch.proof_document(stored.header, hashes, place.leaf_index)


def is_pending(answer: dict[str, Any] | None) -> bool:
    """Whether a `proof_for` answer means "stored, not yet in a batch" (HTTP 202, CLI: try later)."""
    return answer is not None and answer.get("status") == PENDING
