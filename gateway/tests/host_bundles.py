"""Bundles for gateway tests: chained and signed on the host exactly as a device would sign them, and stored
with the pipeline's own INSERT, so batcher, proof and uplink tests start from what a running gateway holds."""

from __future__ import annotations

import sqlite3

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_gateway.store import bundles as bundle_store
from pinseal_protocol import bundle
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.senml import Reading, Record

T0 = 1_760_000_000


def make_bundles(
    key: Ed25519PrivateKey, n: int, *, start_seq: int = 0, prev: bytes = bundle.ZERO_PREV, boot: int = 1
) -> list[bytes]:
    """n chained one-reading bundles from `key`, sequence numbers from `start_seq`."""
    out = []
    for i in range(n):
        seq = start_seq + i
        reading = Reading(T0 + 60 * seq, (Record("t", "Cel", DecimalFraction(-2, 2100 + seq % 500)),))
        raw = bundle.seal(
            key, boot=boot, seq=seq, prev=prev, status=bundle.Status(), time_source=1, readings=(reading,)
        )
        out.append(raw)
        prev = bundle.link_of(raw)
    return out


def store_bundles(
    conn: sqlite3.Connection,
    raws: list[bytes],
    *,
    public_key: Ed25519PublicKey,
    received_at: float = T0,
    step_s: float = 0.0,
) -> None:
    """Insert verified bundles as accepted, the i-th received at `received_at + i * step_s`."""
    with conn:
        for i, raw in enumerate(raws):
            b = bundle.verify_bundle(raw, public_key)
            row = (b.bundle_hash, b.kid, b.boot, b.seq, b.last_seq, b.prev, b.n_readings, b.time_source)
            conn.execute(bundle_store.INSERT_BUNDLE, (*row, received_at + i * step_s, raw, 0, None))
