"""Reseal a refused batch and every unsent successor, in one transaction, so nothing blocks the uplink.

Batches are hash-chained (N+1 is signed with prev = hash(N)), so a batch the network refused (413, 422:
nothing of it stored) can be neither dropped nor resealed alone: every unsent batch after it names it.
The network's chain for this gateway ends at N-1 and it expects batch N next, so the new chain starts
again at number N with prev = hash(N-1), over the same bundles in the same order, minus the ones taken
out: refused for good (dead letters, kept with the reason) or already held by the network (delivered).
The old headers move to `superseded_batches` with their leaves: what the gateway once signed stays on
record, it just never leaves the gateway. Everything commits together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import batcher
from pinseal_gateway.store import batches
from pinseal_protocol import batch


class ResealError(RuntimeError):
    """The store is not in a state a reseal may change (the refused batch is not the unsent head)."""


@dataclass(frozen=True)
class TakeOut:
    """A bundle of the refused batch that must not be sent again, and why."""

    bundle_hash: bytes
    reason: str
    detail: str
    held: bool
    """The network already holds it (delivered elsewhere); otherwise it is dead-lettered."""


@dataclass(frozen=True)
class Resealed:
    """What one reseal did."""

    superseded: int
    sealed: list[batcher.BatchInfo] = field(default_factory=list)
    taken_out: list[TakeOut] = field(default_factory=list)


def reseal_from(
    conn: sqlite3.Connection,
    gateway_key: Ed25519PrivateKey,
    gateway_kid: bytes,
    mode: batch.Mode,
    batch_no: int,
    *,
    take_out: Sequence[TakeOut],
    max_bundles: int,
    max_bytes: int,
    first_max_bundles: int | None,
    why: str,
    now: float,
) -> Resealed:
    """Supersede batch `batch_no` and its successors, take `take_out` out, seal the rest from `batch_no`.

    `take_out` must name bundles of batch `batch_no` itself (the one the network judged).
    `first_max_bundles` caps only the first new batch: the bisection of a refusal that named no bundle.
    """
    batcher.check_signer(mode, gateway_key, gateway_kid)
    with batches.transaction(conn):
        old = batches.batches_from(conn, batch_no)
        if not old or old[0].batch_no != batch_no:
            raise ResealError(f"batch {batch_no} is not stored")
        if batches.sent_from(conn, batch_no):
            raise ResealError(f"a batch from {batch_no} on was confirmed by the network: not resealing")
        refused_hash = old[0].hash
        in_refused = set(batches.batch_bundle_hashes(conn, batch_no))
        chosen = {t.bundle_hash: t for t in take_out}
        if not chosen.keys() <= in_refused:
            raise ResealError(f"bundles to take out are not in batch {batch_no}")
        kept = [b for b in batches.bundles_from(conn, batch_no) if b.hash not in chosen]
        superseded = batches.supersede_from(conn, batch_no, why, now)
        for t in chosen.values():
            if t.held:
                batches.held_elsewhere(conn, t.bundle_hash, t.detail, refused_hash, now)
            else:
                batches.dead_letter(conn, t.bundle_hash, t.reason, t.detail, refused_hash, now)
        prev = batch.ZERO_HASH if batch_no == 0 else _hash_of(conn, batch_no - 1)
        sealed: list[batcher.BatchInfo] = []
        start = 0
        while start < len(kept):
            cap = first_max_bundles if first_max_bundles and not sealed else max_bundles
            chunk = kept[start : start + cap]
            chunk = chunk[: batcher.fit(chunk, mode, max_bytes)]
            info = batcher.seal_bundles(
                conn, gateway_key, mode, batch_no + len(sealed), prev, chunk, now, max_bytes
            )
            sealed.append(info)
            prev = info.hash
            start += len(chunk)
    return Resealed(superseded, sealed, list(chosen.values()))


def _hash_of(conn: sqlite3.Connection, batch_no: int) -> bytes:
    previous = batches.get_batch(conn, batch_no)
    if previous is None:
        raise ResealError(f"batch {batch_no}, the predecessor of the refused one, is not stored")
    return previous.hash
