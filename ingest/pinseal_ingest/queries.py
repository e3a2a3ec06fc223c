"""Reads for the network's users: a device's readings, a bundle's proof. Each is a handful of index
lookups (docs/network-queries.md lists them with their plans), so they cost the same at 10^7 bundles as
at 10^3.

Readings are decoded from the stored signed bytes without checking the signature again: every stored
bundle was verified when it was stored, against the key its kid names (kid = hash of the key, so the key
of a kid never changes), and the rows are the ingest's own record. Checking again would cost an Ed25519
verification per bundle (a 1,000-bundle page: about 60 ms of CPU on the one database thread) and would
catch only someone who can write the database, who could as well replace the key beside the bytes. A
reader who wants to check for themselves gets the body from the proof endpoint and verifies it with
the device's public key. Device-written bundles are decoded by `fastbundle.parse` (structure only);
a bundle in any other valid layout, which only the generic decoder reads, is decoded through
`bundle.verify_bundle` (the protocol exposes no decode-only generic path), at the cost of its check.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pinseal_ingest.db import seq_key, seq_value
from pinseal_ingest.storage import Database
from pinseal_protocol import batch, bundle, fastbundle, keys
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.senml import Record

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SEQ = bundle.MAX_UINT
PROOF_VERSION = 1

AnchorPart = Callable[[bytes], dict[str, Any] | None]
"""batch hash -> the proof document's "anchor" part (the anchoring package's), or None if not anchored."""

_READINGS = (
    "SELECT u.hash, u.seq, u.last_seq, u.raw, u.ingest_time_flag, l.gateway_time_flag"
    " FROM bundles u LEFT JOIN leaves l ON l.bundle_hash = u.hash"
    " WHERE u.kid = ? AND u.seq >= ? ORDER BY u.seq LIMIT ?"
)


def device_readings(
    db: Database, kid: bytes, *, after_seq: int | None = None, limit: int = DEFAULT_LIMIT
) -> dict[str, Any] | None:
    """The device's stored bundles whose first sequence number is above `after_seq`, in seq order,
    each with its readings; None for a device that is not registered.

    `next_after_seq` (the last sequence number of the page's last bundle) pages on; it is null once a
    page comes back short, i.e. nothing more is stored yet.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit is 1 to {MAX_LIMIT}")
    if after_seq is not None and not 0 <= after_seq <= MAX_SEQ:
        raise ValueError("after_seq is an unsigned 64-bit sequence number")
    public_key = db.scalar("SELECT public_key FROM devices WHERE kid = ?", (kid,))
    if public_key is None:
        return None
    bundles: list[dict[str, Any]] = []
    if after_seq != MAX_SEQ:
        first = seq_key(0 if after_seq is None else after_seq + 1)
        for row in db.execute(_READINGS, (kid, first, limit)).fetchall():
            bundles.append(_bundle_json(bytes(public_key), *row))
    return {
        "device": kid.hex(),
        "bundles": bundles,
        "next_after_seq": bundles[-1]["last_seq"] if len(bundles) == limit else None,
    }


def _bundle_json(
    public_key: bytes,
    hash_: bytes,
    seq: bytes,
    last_seq: bytes,
    raw: bytes,
    ingest_flag: str | None,
    gateway_flag: str | None,
) -> dict[str, Any]:
    parsed = decode_stored(bytes(raw), public_key)
    first = seq_value(seq)
    return {
        "bundle_hash": bytes(hash_).hex(),
        "seq": first,
        "last_seq": seq_value(last_seq),
        "time_flag": {"gateway": gateway_flag, "ingest": ingest_flag},
        "readings": [
            {"seq": first + i, "time": reading.time, "records": [_record_json(r) for r in reading.records]}
            for i, reading in enumerate(parsed.readings)
        ],
    }


def decode_stored(raw: bytes, public_key: bytes) -> bundle.Bundle:
    """A stored bundle's fields (verified when stored: see the module's docstring)."""
    parsed = fastbundle.parse(raw)
    if parsed is None:
        parsed = bundle.verify_bundle(raw, keys.load_public_key(public_key))
    return parsed


def _record_json(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"name": record.name, "unit": record.unit, "value": _number(record.value)}
    if record.string_value is not None:
        out["error"] = record.string_value
    return out


def _number(value: int | DecimalFraction | None) -> int | float | None:
    """A decimal fraction as the nearest float (SenML JSON's numbers); an integer exactly."""
    if value is None or isinstance(value, int):
        return value
    return float(Decimal(value.mantissa).scaleb(value.exponent))


def bundle_proof(
    db: Database, bundle_hash: bytes, *, anchor_part: AnchorPart | None = None
) -> dict[str, Any] | None:
    """The proof document of a committed bundle, None if no batch commits it.

    Four index lookups: the leaf (leaves' key), the batch's leaf hashes in leaf order
    (UNIQUE (batch_hash, leaf_index)), the batch header (batches' key) and the body (bundles' key; null
    for a leaf held on its gateway's word only). The audit path needs every leaf hash of the batch: a
    batch of n leaves costs n rows read and about 2n SHA-256 (docs/network-queries.md has the numbers).
    `anchor_part` is the one place the anchoring fills in "anchor".
    """
    leaf = db.execute(
        "SELECT batch_hash, leaf_index FROM leaves WHERE bundle_hash = ?", (bundle_hash,)
    ).fetchone()
    if leaf is None:
        return None
    batch_hash, leaf_index = bytes(leaf[0]), int(leaf[1])
    hashes = [
        bytes(row[0])
        for row in db.execute(
            "SELECT bundle_hash FROM leaves WHERE batch_hash = ? ORDER BY leaf_index", (batch_hash,)
        ).fetchall()
    ]
    header = db.scalar("SELECT header FROM batches WHERE hash = ?", (batch_hash,))
    body = db.scalar("SELECT raw FROM bundles WHERE hash = ?", (bundle_hash,))
    tree = batch.batch_tree(hashes)
    return {
        "version": PROOF_VERSION,
        "bundle": None if body is None else bytes(body).hex(),
        "batch": batch.make_proof_document(
            header=bytes(header),
            bundle_hash=bundle_hash,
            leaf_index=leaf_index,
            tree_size=tree.size,
            path=tree.inclusion_proof(leaf_index),
        ),
        "anchor": None if anchor_part is None else anchor_part(batch_hash),
    }
