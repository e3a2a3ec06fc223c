"""Batcher: signed Merkle batches over stored bundles, chained, sealed atomically (docs/gateway.md)."""

import asyncio
import functools
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import host_bundles
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import batcher
from pinseal_gateway.config import from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.store import batches
from pinseal_gateway.store.db import Database
from pinseal_protocol import batch, bundle, keys, merkle

GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
GATEWAY_KID = keys.key_id(GATEWAY_KEY.public_key())
DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
T0 = 1_760_000_000

make_bundles = functools.partial(host_bundles.make_bundles, DEVICE_KEY)
store_bundles = functools.partial(
    host_bundles.store_bundles, public_key=DEVICE_KEY.public_key(), received_at=T0 + 0.5, step_s=0.25
)


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "gateway.sqlite")
    yield database
    database.close()


def seal(db: Database, mode: str = "bundles", max_bundles: int = 1000, now: float = T0 + 100):
    return db.run_sync(batcher.seal_batch, GATEWAY_KEY, GATEWAY_KID, mode, max_bundles, now)


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_batch_root_and_header_verify_with_the_protocol_module_only(db, n):
    raws = make_bundles(n)
    db.run_sync(store_bundles, raws)
    info = seal(db)
    assert info is not None and info.count == n and info.batch_no == 0

    row = db.run_sync(batches.get_batch, 0)
    header = batch.verify_header(row.header, GATEWAY_KEY.public_key())
    hashes = [bundle.bundle_hash(r) for r in raws]
    # RFC 9162 root over the leaves as batch.py defines them, computed independently of the store
    assert header.root == merkle.root(hashes) == row.root
    assert header.count == n and header.gateway_kid == GATEWAY_KID
    assert header.prev_hash == batch.ZERO_HASH
    assert header.first_received <= T0 + 0.5 and header.last_received >= T0 + 0.5 + (n - 1) * 0.25
    assert row.hash == batch.batch_hash(row.header) == info.hash

    uplink = db.run_sync(batches.next_unsent)
    decoded = batch.decode_uplink(uplink.body)
    assert decoded.header == row.header and list(decoded.bundles) == raws
    assert batch.check_leaves(header, decoded) == hashes
    assert db.run_sync(batches.batch_bundle_hashes, 0) == hashes
    assert db.run_sync(batches.count_unbatched, 10_000) == 0


def test_proofs_mode_carries_verifiable_leaf_proofs(db):
    raws = make_bundles(7)
    db.run_sync(store_bundles, raws)
    seal(db, mode="proofs")
    body = db.run_sync(batches.next_unsent).body
    decoded = batch.decode_uplink(body)
    header = batch.verify_header(decoded.header, GATEWAY_KEY.public_key())
    assert decoded.mode == "proofs" and decoded.bundles is None
    assert batch.check_leaves(header, decoded) == [bundle.bundle_hash(r) for r in raws]


def test_chain_of_three_batches_in_rowid_order(db):
    raws = make_bundles(25)
    db.run_sync(store_bundles, raws)
    infos = [seal(db, max_bundles=10) for _ in range(3)]
    assert seal(db, max_bundles=10) is None  # nothing left: no empty batch
    assert [i.count for i in infos] == [10, 10, 5]

    stored = db.run_sync(batches.all_batches)
    assert [b.batch_no for b in stored] == [0, 1, 2]
    prev = batch.ZERO_HASH
    for k, row in enumerate(stored):
        header = batch.verify_header(row.header, GATEWAY_KEY.public_key())
        assert header.batch_no == k and header.prev_hash == prev
        assert header.root == merkle.root([bundle.bundle_hash(r) for r in raws[10 * k : 10 * k + 10]])
        prev = row.hash
    assert db.run_sync(batches.outbox_depth) == 3


def test_no_bundles_no_batch(db):
    assert seal(db) is None
    assert db.run_sync(batches.all_batches) == []


def test_failure_before_commit_leaves_nothing(db, monkeypatch):
    raws = make_bundles(5)
    db.run_sync(store_bundles, raws)

    def boom(conn, batch_no, body):
        raise sqlite3.OperationalError("disk I/O error (injected)")

    monkeypatch.setattr(batches, "insert_outbox", boom)
    with pytest.raises(sqlite3.OperationalError):
        seal(db)
    assert db.run_sync(batches.all_batches) == []
    assert db.run_sync(batches.count_unbatched, 100) == 5
    monkeypatch.undo()

    info = seal(db)  # the same bundles, the same batch number
    assert info.batch_no == 0 and info.count == 5
    assert db.run_sync(batches.next_unsent).batch_no == 0


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pinseal_gateway import batcher
    from pinseal_gateway.store import batches
    from pinseal_gateway.store.db import Database
    from pinseal_protocol import keys

    step = sys.argv[2]
    real = getattr(batches, step)

    def die(*args):
        real(*args)  # the step itself completed, the transaction has not committed
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(batches, step, die)
    key = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    db = Database(Path(sys.argv[1]))
    db.run_sync(batcher.seal_batch, key, keys.key_id(key.public_key()), "bundles", 1000, 1.0)
    """
)


@pytest.mark.parametrize("step", ["insert_batch", "assign_leaves", "insert_outbox"])
def test_sigkill_between_steps_leaves_a_consistent_store(tmp_path, step):
    path = tmp_path / "gateway.sqlite"
    first = Database(path)
    raws = make_bundles(4)
    first.run_sync(store_bundles, raws)
    seal(first)  # batch 0 committed before the crash
    more = make_bundles(3, start_seq=100)
    first.run_sync(store_bundles, more)
    first.close()

    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(path), step], capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    again = Database(path)
    try:
        assert [b.batch_no for b in again.run_sync(batches.all_batches)] == [0]
        assert again.run_sync(batches.count_unbatched, 100) == 3
        assert again.run_sync(batches.outbox_depth) == 1
        info = seal(again)
        assert info.batch_no == 1 and info.count == 3
        header = batch.verify_header(again.run_sync(batches.get_batch, 1).header, GATEWAY_KEY.public_key())
        assert header.prev_hash == again.run_sync(batches.get_batch, 0).hash
    finally:
        again.close()


def test_wrong_gateway_kid_is_refused(db):
    db.run_sync(store_bundles, make_bundles(1))
    with pytest.raises(ValueError):
        db.run_sync(batcher.seal_batch, GATEWAY_KEY, bytes(16), "bundles", 10, T0)


def make_ctx(db: Database, **batch_cfg) -> GatewayContext:
    config = from_mapping({"uplink": {"kind": "none"}})
    # replace(), not from_mapping: sub-second intervals keep the test fast (config wants whole seconds)
    config = replace(config, batch=replace(config.batch, **batch_cfg))
    return GatewayContext(config, db, GATEWAY_KEY, GATEWAY_KID, Metrics())


def run_until(ctx: GatewayContext, predicate, timeout: float = 10.0) -> None:
    """Run the batcher task until `predicate()` holds (checked from the test, not by sleeping blindly)."""

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(batcher.run_batcher(ctx, stop, poll_s=0.02))
        try:
            async with asyncio.timeout(timeout):
                while not await ctx.db.run(lambda conn: predicate(conn)):
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task

    asyncio.run(main())


def test_run_batcher_seals_as_soon_as_max_bundles_wait(db):
    ctx = make_ctx(db, interval_s=3600, max_bundles=10)
    db.run_sync(store_bundles, make_bundles(25))
    run_until(ctx, lambda conn: len(batches.all_batches(conn)) == 2)
    assert [b.count for b in db.run_sync(batches.all_batches)] == [10, 10]
    assert db.run_sync(batches.count_unbatched, 100) == 5  # below max_bundles, the hour has not passed
    assert ctx.metrics.batches_sealed._value.get() == 2


def test_run_batcher_seals_every_interval_and_observes_latency(db):
    ctx = make_ctx(db, interval_s=0.1, max_bundles=1000)
    db.run_sync(functools.partial(store_bundles, received_at=T0), make_bundles(3))
    run_until(ctx, lambda conn: len(batches.all_batches(conn)) == 1)
    assert db.run_sync(batches.all_batches)[0].count == 3
    samples = {s.name: s.value for s in ctx.metrics.batch_latency_seconds.collect()[0].samples}
    assert samples["pinseal_gateway_batch_latency_seconds_count"] == 1
    assert samples["pinseal_gateway_batch_latency_seconds_sum"] > 1000  # received at T0, long ago


def test_store_outbox_and_batch_tables_keep_their_documented_shape(db):
    cols = db.run_sync(lambda c: [r[1] for r in c.execute("PRAGMA table_info(uplink_outbox)")])
    assert cols == ["batch_no", "body", "attempts", "next_attempt_at", "last_error", "sent_at"]
    cols = db.run_sync(lambda c: [r[1] for r in c.execute("PRAGMA table_info(batches)")])
    assert cols == [
        "batch_no",
        "hash",
        "header",
        "root",
        "count",
        "first_received",
        "last_received",
        "created_at",
    ]
