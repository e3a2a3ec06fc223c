"""Seal accepted bundles into gateway-signed Merkle batches, every T seconds or M bundles, at most B bytes.

One Ed25519 signature per batch (not per bundle) is what lets a gateway commit to every reading it
accepted at full ingest rate; the batch chain (each header names the previous batch's hash) lets the
network see a withheld or forked batch. A batch is sealed in ONE transaction: the batch row, the
bundles' batch/leaf assignment and the uplink outbox row (the exact body the uplink will send, encoded
once, here) commit together or not at all, so a crash leaves either the whole batch or nothing, and
the next seal simply takes the same bundles and the same batch number again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import faults
from pinseal_gateway.config import BatchSection
from pinseal_gateway.stopping import sleep_unless_stopped
from pinseal_gateway.storage import STORAGE_RETRY_MAX_S, WritePause
from pinseal_gateway.store import batches
from pinseal_protocol import batch, keys

if TYPE_CHECKING:
    from pinseal_gateway.context import GatewayContext

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = BatchSection.max_bytes
MAX_POLL_S = 1.0
"""How often the batcher looks whether `max_bundles` are waiting (one cheap bounded COUNT)."""


@dataclass(frozen=True)
class BatchInfo:
    """What one seal produced (the stored row plus the body the outbox will send)."""

    batch_no: int
    hash: bytes
    prev_hash: bytes
    root: bytes
    count: int
    first_received: float
    last_received: float
    header: bytes
    body_size: int


def seal_batch(
    conn: sqlite3.Connection,
    gateway_key: Ed25519PrivateKey,
    gateway_kid: bytes,
    mode: batch.Mode,
    max_bundles: int,
    now: float,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> BatchInfo | None:
    """Seal the oldest unbatched bundles (up to `max_bundles` and `max_bytes`) into the next batch.

    None if none wait. Runs in the database thread. Everything, reads included, happens inside one
    IMMEDIATE transaction, so the batch number, the previous hash and the set of bundles cannot change
    between reading and writing, and a failure anywhere before COMMIT leaves the store exactly as it was.
    """
    check_signer(mode, gateway_key, gateway_kid)
    with batches.transaction(conn):
        pending = batches.unbatched(conn, max_bundles)
        if not pending:
            return None
        last = batches.last_batch(conn)
        batch_no = 0 if last is None else last.batch_no + 1
        prev_hash = batch.ZERO_HASH if last is None else last.hash
        taken = pending[: fit(pending, mode, max_bytes)]
        return seal_bundles(conn, gateway_key, mode, batch_no, prev_hash, taken, now, max_bytes)


def check_signer(mode: str, gateway_key: Ed25519PrivateKey, gateway_kid: bytes) -> None:
    if mode not in batch.MODES:
        raise ValueError(f"batch mode is one of {batch.MODES}, not {mode!r}")
    if keys.key_id(gateway_key.public_key()) != gateway_kid:
        raise ValueError("gateway_kid is not the key id of gateway_key")


def fit(pending: Sequence[batches.PendingBundle], mode: str, max_bytes: int) -> int:
    """How many of `pending` (a prefix) the next batch holds within `max_bytes`; at least one.

    Counted from an upper bound of the encoded body (header at its protocol maximum, every CBOR head
    at its real length, in "proofs" mode every audit path at the tree's depth), so the body `encode`
    makes is never larger. At least one bundle: a bundle is at most `verify.max_bundle_bytes`, which
    config validation keeps under the cap, and a queue must never stall on its own cap.
    """
    fixed = 1 + 1 + _head(batch.MAX_HEADER_SIZE) + batch.MAX_HEADER_SIZE + 1  # {1: header, 2|3: [...]}
    fixed += 1 + 9  # {4: {leaf: flag, ...}}: the time flags map's key and head (version 2)
    items = 0
    count = 0
    for p in pending:
        if mode == "bundles":
            item = _head(len(p.raw)) + len(p.raw)
            paths = 0
        else:  # [leaf_index, bundle_hash, [path...]]: the path's hashes are counted in `paths`
            item = 1 + 9 + 2 + batch.HASH_SIZE + 1
            paths = (count + 1) * count.bit_length() * (2 + batch.HASH_SIZE)
        if p.time_flag is not None:  # its entry in the time flags map: leaf index, flag as text
            item += 9 + 1 + len(p.time_flag)
        if count and fixed + _head(count + 1) + items + item + paths > max_bytes:
            break
        items += item
        count += 1
    return count


def _head(n: int) -> int:
    """Bytes of a CBOR head carrying the argument n (RFC 8949 3: 1, 2, 3, 5 or 9)."""
    return 1 if n < 24 else 2 if n < 2**8 else 3 if n < 2**16 else 5 if n < 2**32 else 9


def seal_bundles(
    conn: sqlite3.Connection,
    gateway_key: Ed25519PrivateKey,
    mode: batch.Mode,
    batch_no: int,
    prev_hash: bytes,
    pending: Sequence[batches.PendingBundle],
    now: float,
    max_bytes: int,
) -> BatchInfo:
    """Encode, sign and store batch `batch_no` of exactly `pending`, inside the caller's transaction.

    The one place a batch is made: the batcher's next batch and the uplink's reseal of a refused chain
    (`uplink/reseal.py`) both come here, so both sign the same header and encode the same body.
    """
    hashes = [p.hash for p in pending]
    root = batch.batch_root(hashes)
    first = min(p.received_at for p in pending)
    latest = max(p.received_at for p in pending)
    # Version 2: the verifier's time flags travel to the network under this signature.
    time_flags = {i: p.time_flag for i, p in enumerate(pending) if p.time_flag is not None}
    header = batch.sign_header(
        gateway_key,
        batch_no=batch_no,
        prev_hash=prev_hash,
        root=root,
        count=len(pending),
        # Whole seconds in the signed header (no floats in v1 CBOR), rounded outwards so the
        # signed window always contains every receive time.
        first_received=math.floor(first),
        last_received=math.ceil(latest),
        time_flags=time_flags,
    )
    header_hash = batch.batch_hash(header)
    if mode == "bundles":
        body = batch.encode_uplink(header, bundles=[p.raw for p in pending], time_flags=time_flags)
    else:
        body = batch.encode_uplink(header, proofs=batch.leaf_proofs(hashes), time_flags=time_flags)
    if len(body) > max_bytes and len(pending) > 1:  # `fit` is an upper bound: this is a bug, not input
        raise RuntimeError(f"batch {batch_no}: {len(body)} bytes over the cap of {max_bytes}")
    batches.insert_batch(
        conn,
        batches.BatchRow(batch_no, header_hash, header, root, len(pending), first, latest, now),
    )
    batches.assign_leaves(conn, batch_no, hashes)
    batches.insert_outbox(conn, batch_no, body)
    faults.hold("seal_commit")  # test hook (hil_tests): off unless armed; the caller commits
    return BatchInfo(batch_no, header_hash, prev_hash, root, len(pending), first, latest, header, len(body))


async def run_batcher(
    ctx: GatewayContext,
    stop: asyncio.Event,
    *,
    clock: Callable[[], float] = time.time,
    poll_s: float | None = None,
) -> None:
    """Seal a batch every `batch.interval_s`, or at once whenever `batch.max_bundles` are waiting.

    A seal the byte cap (`batch.max_bytes`) cut short is followed by the next one at once, until a
    seal takes everything that waited: the bundles it left were due with it, and waiting an interval
    per capped batch would let a backlog grow without bound.

    A seal that fails (a full disk, or a bug) rolled back, so the same bundles are sealed on the next
    try; until one succeeds the batcher is paused (`storage.WritePause`): it waits with backoff, up to
    one interval, between tries, and logs the failure once and then at most once a minute.
    """
    cfg = ctx.config.batch
    poll = min(MAX_POLL_S, cfg.interval_s) if poll_s is None else poll_s
    loop = asyncio.get_running_loop()
    last_seal = loop.time()
    pause = WritePause(ctx.metrics, "batcher", initial_s=poll, max_s=min(STORAGE_RETRY_MAX_S, cfg.interval_s))
    backlog = False  # the last seal was cut short by the byte cap: what it left was due with it
    while not stop.is_set():
        cfg = ctx.config.batch  # afresh each round: a SIGHUP may have changed the interval or the limits
        next_due = last_seal + cfg.interval_s
        try:
            waiting = await ctx.db.run(batches.count_unbatched, cfg.max_bundles)
            full = waiting >= cfg.max_bundles
            if backlog or full or loop.time() >= next_due:
                info = await seal_once(ctx, clock())
                pause.succeeded()
                last_seal = loop.time()
                backlog = info is not None and info.count < waiting
                if info is not None and (full or backlog):
                    continue  # a backlog: keep sealing full batches without waiting
        except Exception as exc:
            await sleep_unless_stopped(stop, pause.failed(exc))
            continue
        await sleep_unless_stopped(stop, min(poll, max(0.0, next_due - loop.time())))


async def seal_once(ctx: GatewayContext, now: float) -> BatchInfo | None:
    """Seal one batch now (if any bundle waits) and account for it in metrics and logs."""
    cfg = ctx.config.batch
    info = await ctx.db.run(
        functools.partial(seal_batch, max_bytes=cfg.max_bytes),
        ctx.gateway_key,
        ctx.gateway_kid,
        cfg.mode,
        cfg.max_bundles,
        now,
    )
    if info is None:
        return None
    ctx.metrics.batches_sealed.inc()
    ctx.metrics.batch_latency_seconds.observe(max(0.0, now - info.first_received))
    log.info(
        "sealed batch %s: %s bundles, root %s, hash %s, %s bytes to send",
        info.batch_no,
        info.count,
        info.root.hex(),
        info.hash.hex(),
        info.body_size,
    )
    return info
