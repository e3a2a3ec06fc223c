"""Issue 11 #2: a batch the network refuses (413, 422) must never block the uplink behind it.

The real `pinseal-ingest` answers; the real outbox, HTTP backend and store react. Batches are
hash-chained, so a refused batch N is resealed together with every unsent successor, from number N
on, leaving out the bundles the ingest named: refused ones are dead-lettered, ones it already holds
(delivered by another gateway) count as delivered.
"""

import asyncio
import functools
import json
import sqlite3
import subprocess
import urllib.request

import host_bundles
import pytest
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gateway_uplink import (
    DEVICE_KEY,
    GATEWAY_KEY,
    GATEWAY_KID,
    INGEST_BIN,
    T0,
    Clock,
    Ingest,
    make_ctx,
    outbox_rows,
)

from pinseal_gateway import batcher
from pinseal_gateway.broker import free_port, wait_for_port
from pinseal_gateway.config import ConfigError, GatewayConfig, from_mapping
from pinseal_gateway.http.status import build_status
from pinseal_gateway.store import batches
from pinseal_gateway.store.db import Database
from pinseal_gateway.uplink import SendOutcome
from pinseal_gateway.uplink.http import HttpUplink, classify
from pinseal_gateway.uplink.outbox import OutboxDrainer
from pinseal_protocol import batch, keys

STRANGER_KEY = Ed25519PrivateKey.from_private_bytes(bytes([31]) * 32)  # unknown to the network
REVOKED_KEY = Ed25519PrivateKey.from_private_bytes(bytes([32]) * 32)  # revoked at the network
HELD_KEY = Ed25519PrivateKey.from_private_bytes(bytes([33]) * 32)  # its bundle came via another gateway
OTHER_GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([34]) * 32)


def bundles_of(key: Ed25519PrivateKey, n: int, start_seq: int = 0) -> list[bytes]:
    return host_bundles.make_bundles(key, n, start_seq=start_seq)


def store(db: Database, key: Ed25519PrivateKey, raws: list[bytes]) -> None:
    db.run_sync(functools.partial(host_bundles.store_bundles, public_key=key.public_key()), raws)


def seal(db: Database, max_bundles: int) -> batcher.BatchInfo:
    return db.run_sync(batcher.seal_batch, GATEWAY_KEY, GATEWAY_KID, "bundles", max_bundles, T0)


def capped(max_bytes: int):
    return functools.partial(batcher.seal_batch, max_bytes=max_bytes)


def hashes(raws: list[bytes]) -> set[bytes]:
    return {batch.bundle_hash(r) for r in raws}


def reseal(db: Database, take_out: list, max_bundles: int):
    """`reseal_from` batch 0 in bundles mode, as the uplink does after a 413/422 for it."""
    from pinseal_gateway.uplink.reseal import reseal_from

    return db.run_sync(
        functools.partial(
            reseal_from,
            take_out=take_out,
            max_bundles=max_bundles,
            max_bytes=1 << 20,
            first_max_bundles=None,
            why="422 test",
            now=T0,
        ),
        GATEWAY_KEY,
        GATEWAY_KID,
        "bundles",
        0,
    )


class LimitedIngest(Ingest):
    """The test ingest, optionally with a small body limit (`pinseal-ingest run --max-body`)."""

    def start(self, max_body: int | None = None) -> None:
        args = [str(INGEST_BIN), "run", "--db", str(self.db_path), "--listen", f"127.0.0.1:{self.port}"]
        if max_body is not None:
            args += ["--max-body", str(max_body)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        if not wait_for_port("127.0.0.1", self.port, 20):
            self.stop()
            raise RuntimeError("pinseal-ingest did not start")

    def bundle_hashes(self) -> set[bytes]:
        with sqlite3.connect(self.db_path) as conn:
            return {bytes(r[0]) for r in conn.execute("SELECT hash FROM bundles")}

    def chain(self, gateway_kid: bytes) -> list[tuple[int, bytes, bytes]]:
        """(batch_no, prev_hash, hash) of one gateway's stored batches, in number order."""
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute(
                "SELECT batch_no, prev_hash, hash FROM batches WHERE gateway_kid = ? ORDER BY batch_no",
                (gateway_kid,),
            ).fetchall()
        return [(int(n), bytes(p), bytes(h)) for n, p, h in rows]


def assert_unbroken(chain: list[tuple[int, bytes, bytes]]) -> None:
    assert [n for n, _, _ in chain] == list(range(len(chain)))
    prev = batch.ZERO_HASH
    for _, prev_hash, batch_hash in chain:
        assert prev_hash == prev
        prev = batch_hash


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "gateway.sqlite")
    yield database
    database.close()


@pytest.fixture
def ingest(tmp_path):
    if not INGEST_BIN.exists():
        pytest.fail("the pinseal-ingest console script is not installed (pip install -e .)")
    server = LimitedIngest(tmp_path)
    yield server
    server.stop()


async def drain_counting(drainer: OutboxDrainer, clock: Clock, max_steps: int = 60) -> list[float]:
    """Step until the outbox is empty, jumping the clock over every wait; returns the waits."""
    waits: list[float] = []
    for _ in range(max_steps):
        if await drainer.ctx.db.run(batches.next_unsent) is None:
            return waits
        waits.append(await drainer.step())
        clock.t += waits[-1]
    raise AssertionError(f"outbox not drained after {max_steps} steps: waits {waits}")


def post_other_gateway_batch(url: str, raws: list[bytes]) -> None:
    """Another registered gateway delivers these bundles first (batch 0 of its own chain)."""
    leaves = [batch.bundle_hash(r) for r in raws]
    header = batch.sign_header(
        OTHER_GATEWAY_KEY,
        batch_no=0,
        prev_hash=batch.ZERO_HASH,
        root=batch.batch_root(leaves),
        count=len(raws),
        first_received=int(T0),
        last_received=int(T0),
    )
    request = urllib.request.Request(
        url,
        data=batch.encode_uplink(header, bundles=raws),
        headers={"Content-Type": "application/cbor", "Idempotency-Key": batch.batch_hash(header).hex()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["status"] == "stored"


# ---- the byte cap -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bundles", "proofs"])
def test_seal_batch_caps_a_batch_by_bytes(db, mode):
    raws = bundles_of(DEVICE_KEY, 60)
    store(db, DEVICE_KEY, raws)
    cap = 2500 if mode == "bundles" else 1500
    counts = []
    while info := db.run_sync(capped(cap), GATEWAY_KEY, GATEWAY_KID, mode, 1000, T0):
        assert info.body_size <= cap
        counts.append(info.count)
    assert sum(counts) == 60 and len(counts) > 2 and min(counts[:-1]) > 1
    bodies = db.run_sync(lambda c: [bytes(r[0]) for r in c.execute("SELECT body FROM uplink_outbox")])
    assert all(len(b) <= cap for b in bodies)
    # a cap below one bundle still seals one bundle per batch: the queue never stalls on the cap
    store(db, DEVICE_KEY, bundles_of(DEVICE_KEY, 2, start_seq=60))
    info = db.run_sync(capped(10), GATEWAY_KEY, GATEWAY_KID, mode, 1000, T0)
    assert info.count == 1


def test_batch_max_bytes_is_configured_within_bounds():
    from pinseal_ingest.api import MAX_BODY

    default = GatewayConfig().batch.max_bytes
    assert 0 < default <= MAX_BODY // 4  # well under the reference ingest's body limit
    assert from_mapping({"batch": {"max_bytes": 65536}}).batch.max_bytes == 65536
    with pytest.raises(ConfigError, match=r"batch\.max_bytes .*at most 16777216"):
        from_mapping({"batch": {"max_bytes": MAX_BODY + 1}})
    with pytest.raises(ConfigError, match=r"batch\.max_bytes .*at least"):
        from_mapping({"batch": {"max_bytes": 1000}})  # must hold one bundle of verify.max_bundle_bytes


# ---- classify over anything an ingest (or a proxy in front of it) may answer -----------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["reason", "detail", "refused", "limit", "bundle_index", "bundle_hash", "expected"])
ANSWERS = st.one_of(
    st.text(max_size=200),
    st.dictionaries(FIELDS, JSON, max_size=6).map(json.dumps),
    JSON.map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(status=st.integers(0, 999), text=ANSWERS)
def test_classify_maps_any_answer_without_raising(status, text):
    result = classify(status, text)
    assert isinstance(result.outcome, SendOutcome)
    if status == 200:
        assert result.outcome is SendOutcome.SENT
    elif status == 413:
        assert result.outcome is SendOutcome.TOO_LARGE
        assert result.limit is None or (type(result.limit) is int and result.limit > 0)
    elif status == 422:
        assert result.outcome is SendOutcome.REFUSED
        for refused in result.refused:
            assert refused.bundle_hash is None or len(refused.bundle_hash) == 32
            assert refused.bundle_index is None or refused.bundle_index >= 0
            assert refused.bundle_hash is not None or refused.bundle_index is not None
            assert isinstance(refused.reason, str) and isinstance(refused.held, bool)
    elif status == 409:
        assert result.outcome in (SendOutcome.RESEND_FROM, SendOutcome.CONFLICT, SendOutcome.RETRY)
    elif status >= 500 or status in (408, 425, 429) or not 400 <= status < 500:
        assert result.outcome is SendOutcome.RETRY
    else:
        assert result.outcome is SendOutcome.REJECTED


REASONS = st.text(min_size=1, max_size=20)  # the ingest's reason words are never empty


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.binary(min_size=32, max_size=32), REASONS, st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_classify_reads_every_refused_bundle_of_a_422(entries):
    refused = [
        {"bundle_index": i, "bundle_hash": h.hex(), "reason": r, "detail": "d", "held": held}
        for i, h, r, held in entries
    ]
    result = classify(422, json.dumps({"reason": "x", "detail": "y", "refused": refused}))
    assert [(r.bundle_index, r.bundle_hash, r.reason, r.held) for r in result.refused] == entries
    limited = classify(413, json.dumps({"reason": "too_large", "limit": 4096}))
    assert (limited.outcome, limited.limit) == (SendOutcome.TOO_LARGE, 4096)


# ---- with the real ingest --------------------------------------------------------------------------------


def test_three_refused_bundles_in_batch_n_do_not_block_the_batches_behind_it(db, ingest):
    ingest.cli("devices", "add", keys.public_key_bytes(REVOKED_KEY).hex())
    ingest.cli("devices", "add", keys.public_key_bytes(HELD_KEY).hex())
    ingest.cli("gateways", "add", keys.public_key_bytes(OTHER_GATEWAY_KEY).hex())
    ingest.cli("devices", "revoke", keys.key_id(REVOKED_KEY.public_key()).hex())

    honest = bundles_of(DEVICE_KEY, 15)
    stranger, revoked, held = bundles_of(STRANGER_KEY, 1), bundles_of(REVOKED_KEY, 1), bundles_of(HELD_KEY, 1)
    store(db, DEVICE_KEY, honest[:3])
    seal(db, 3)  # batch 0: honest, delivered first
    store(db, DEVICE_KEY, honest[3:4])
    store(db, STRANGER_KEY, stranger)
    store(db, DEVICE_KEY, honest[4:5])
    store(db, REVOKED_KEY, revoked)
    store(db, HELD_KEY, held)
    store(db, DEVICE_KEY, honest[5:6])
    assert seal(db, 6).count == 6  # batch N = 1: three honest, three the network will not take
    store(db, DEVICE_KEY, honest[6:])
    seal(db, 4), seal(db, 5)  # N+1 and N+2: honest, queued behind N
    ingest.start()
    post_other_gateway_batch(ingest.url, held)

    ctx = make_ctx(db)
    clock = Clock()

    async def main():
        drainer = OutboxDrainer(ctx, HttpUplink(ingest.url, timeout_s=10), clock=clock, rand=lambda: 0.5)
        try:
            return await drain_counting(drainer, clock)
        finally:
            await drainer.backend.close()

    waits = asyncio.run(main())
    # one resend cycle: batch 0, the refused N, then the resealed chain at once, no backoff anywhere
    assert waits == [0.0] * len(waits) and len(waits) <= 5
    assert hashes(honest) <= ingest.bundle_hashes()
    assert not (hashes(stranger) | hashes(revoked)) & ingest.bundle_hashes()
    chain = ingest.chain(GATEWAY_KID)
    assert_unbroken(chain)
    assert [n for n, _, _ in chain] == [b.batch_no for b in db.run_sync(batches.all_batches)]
    assert all(r[4] is not None for r in outbox_rows(db))

    dead = db.run_sync(
        lambda c: c.execute("SELECT bundle_hash, reason, detail, dead_at FROM uplink_dead_letters").fetchall()
    )
    assert {(bytes(h), reason) for h, reason, _, _ in dead} == {
        (batch.bundle_hash(stranger[0]), "unknown_device"),
        (batch.bundle_hash(revoked[0]), "revoked"),
    }
    assert all(detail and at == T0 for _, _, detail, at in dead)
    held_rows = db.run_sync(lambda c: c.execute("SELECT bundle_hash FROM uplink_held_elsewhere").fetchall())
    assert [bytes(r[0]) for r in held_rows] == [batch.bundle_hash(held[0])]
    superseded = db.run_sync(
        lambda c: c.execute(
            "SELECT batch_no, hash, reason FROM superseded_batches ORDER BY batch_no"
        ).fetchall()
    )
    assert [r[0] for r in superseded] == [1, 2, 3] and all("422" in r[2] for r in superseded)
    assert not {bytes(r[1]) for r in superseded} & {h for _, _, h in chain}  # old headers kept, never sent

    status = db.run_sync(build_status, ctx.config)
    uplink = status["uplink"]
    assert uplink["dead_letters"] == 2 and uplink["held_elsewhere"] == 1
    assert uplink["dead_letters_by_reason"] == {"revoked": 1, "unknown_device": 1}
    assert uplink["superseded_batches"] == 3
    assert {d["reason"] for d in uplink["recent_dead_letters"]} == {"revoked", "unknown_device"}
    metrics = ctx.metrics.render().decode()
    assert 'pinseal_gateway_uplink_dead_letters_total{reason="revoked"} 1.0' in metrics
    assert "pinseal_gateway_uplink_held_elsewhere_total 1.0" in metrics
    assert "pinseal_gateway_uplink_resealed_batches_total 3.0" in metrics


def test_a_batch_over_the_ingest_body_limit_is_resplit_and_delivered(db, ingest):
    raws = bundles_of(DEVICE_KEY, 60)
    store(db, DEVICE_KEY, raws)
    seal(db, 30), seal(db, 30)
    sizes = db.run_sync(lambda c: [len(r[0]) for r in c.execute("SELECT body FROM uplink_outbox")])
    limit = 3000
    assert min(sizes) > limit
    ingest.start(max_body=limit)
    clock = Clock()

    async def main():
        drainer = OutboxDrainer(make_ctx(db), HttpUplink(ingest.url, timeout_s=10), clock=clock)
        try:
            return await drain_counting(drainer, clock)
        finally:
            await drainer.backend.close()

    waits = asyncio.run(main())
    assert waits == [0.0] * len(waits)
    assert hashes(raws) == ingest.bundle_hashes()
    assert_unbroken(ingest.chain(GATEWAY_KID))
    bodies = db.run_sync(lambda c: [len(r[0]) for r in c.execute("SELECT body FROM uplink_outbox")])
    assert max(bodies) <= limit and len(bodies) >= 4
    assert db.run_sync(lambda c: c.execute("SELECT COUNT(*) FROM uplink_dead_letters").fetchone()[0]) == 0


async def start_stripping_proxy(target: str, port: int) -> web.AppRunner:
    """Forwards to the ingest but answers 413 and 422 with only reason and detail (as an old ingest or a
    proxy of its own would): the gateway gets no bundle list and no limit to act on."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: request.headers[k] for k in ("Content-Type", "Idempotency-Key")}
        async with ClientSession() as session, session.post(target, data=body, headers=headers) as up:
            doc, status = await up.json(), up.status
        if status in (413, 422):
            doc = {"reason": doc.get("reason"), "detail": doc.get("detail")}
        return web.json_response(doc, status=status)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/batches", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def test_refusals_without_a_bundle_list_are_bisected_and_end(db, ingest):
    honest = bundles_of(DEVICE_KEY, 40)
    stranger = bundles_of(STRANGER_KEY, 1)
    store(db, DEVICE_KEY, honest[:25])
    store(db, STRANGER_KEY, stranger)
    store(db, DEVICE_KEY, honest[25:])
    seal(db, 20), seal(db, 21)
    ingest.start(max_body=3000)
    clock = Clock()
    port = free_port()

    async def main():
        runner = await start_stripping_proxy(ingest.url, port)
        url = f"http://127.0.0.1:{port}/v1/batches"
        drainer = OutboxDrainer(make_ctx(db), HttpUplink(url, timeout_s=10), clock=clock)
        try:
            return await drain_counting(drainer, clock)
        finally:
            await drainer.backend.close()
            await runner.cleanup()

    waits = asyncio.run(main())
    assert waits == [0.0] * len(waits)  # every step made progress: no backoff, no retry of the same bytes
    assert hashes(honest) == ingest.bundle_hashes()
    assert_unbroken(ingest.chain(GATEWAY_KID))
    dead = db.run_sync(lambda c: c.execute("SELECT bundle_hash, reason FROM uplink_dead_letters").fetchall())
    assert [(bytes(h), r) for h, r in dead] == [(batch.bundle_hash(stranger[0]), "unknown_device")]


# ---- the store after a reseal ----------------------------------------------------------------------------


def test_after_a_reseal_proofs_name_the_new_batch_or_the_bundles_fate(db):
    from pinseal_gateway import proofs
    from pinseal_gateway.uplink.reseal import TakeOut

    raws = bundles_of(DEVICE_KEY, 9)
    store(db, DEVICE_KEY, raws)
    seal(db, 3), seal(db, 3), seal(db, 3)
    dead, held = batch.bundle_hash(raws[0]), batch.bundle_hash(raws[2])
    take_out = [TakeOut(dead, "unknown_device", "not registered", False), TakeOut(held, "replayed", "", True)]
    done = reseal(db, take_out, 4)
    assert (done.superseded, [b.count for b in done.sealed]) == (3, [4, 3])
    assert [b.batch_no for b in db.run_sync(batches.all_batches)] == [0, 1]
    for raw in raws[1:2] + raws[3:]:
        proof = db.run_sync(proofs.proof_for, batch.bundle_hash(raw))
        batch.verify_proof_document(proof, GATEWAY_KEY.public_key(), raw)  # against the new headers
    assert db.run_sync(proofs.proof_for, dead) == {
        "status": "dead_letter",
        "bundle_hash": dead.hex(),
        "received_at": T0,
        "reason": "unknown_device",
    }
    assert db.run_sync(proofs.proof_for, held)["status"] == "held_elsewhere"


def test_a_reseal_that_cannot_apply_changes_nothing(db):
    from pinseal_gateway.uplink.reseal import ResealError, TakeOut, reseal_from

    raws = bundles_of(DEVICE_KEY, 6)
    store(db, DEVICE_KEY, raws)
    seal(db, 3), seal(db, 3)

    def snapshot(conn):
        tables = ("batches", "uplink_outbox", "superseded_batches", "uplink_dead_letters", "bundles")
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}

    before = db.run_sync(snapshot)
    reseal = functools.partial(
        reseal_from, max_bundles=10, max_bytes=1 << 20, first_max_bundles=None, why="test", now=T0
    )
    # a bundle of batch 1 named while batch 0 is the refused one: nothing is written
    wrong = [TakeOut(batch.bundle_hash(raws[4]), "revoked", "", False)]
    with pytest.raises(ResealError, match="not in batch 0"):
        db.run_sync(functools.partial(reseal, take_out=wrong), GATEWAY_KEY, GATEWAY_KID, "bundles", 0)
    db.run_sync(
        batches.mark_sent, 1, T0
    )  # batch 1 confirmed: resealing from 0 would fork the network's chain
    with pytest.raises(ResealError, match="confirmed"):
        db.run_sync(functools.partial(reseal, take_out=[]), GATEWAY_KEY, GATEWAY_KID, "bundles", 0)
    after = db.run_sync(snapshot)
    assert after["uplink_outbox"][1][-1] == T0
    after["uplink_outbox"] = before["uplink_outbox"]
    assert after == before


def test_a_resealed_chain_keeps_its_bundles_time_flags(db):
    """A reseal re-signs the bundles of the refused chain: the time flags the verifier stored for them
    must be signed into the new version 2 headers too, or the network never learns of them."""
    from pinseal_gateway.uplink.reseal import TakeOut

    raws = bundles_of(DEVICE_KEY, 6)
    store(db, DEVICE_KEY, raws)
    flagged = batch.bundle_hash(raws[4])

    def flag(conn: sqlite3.Connection) -> None:
        with conn:
            conn.execute("UPDATE bundles SET time_flag = 'future' WHERE hash = ?", (flagged,))

    db.run_sync(flag)
    seal(db, 3), seal(db, 3)
    dead = batch.bundle_hash(raws[0])
    done = reseal(db, [TakeOut(dead, "unknown_device", "not registered", False)], 10)
    assert [b.count for b in done.sealed] == [5]
    body = db.run_sync(batches.next_unsent).body
    uplink = batch.decode_uplink(body)
    header = batch.verify_header(uplink.header, GATEWAY_KEY.public_key())
    assert batch.check_time_flags(header, uplink) == {3: "future"}  # raws[4] is leaf 3 without raws[0]


def test_a_backlog_capped_by_bytes_is_sealed_without_waiting_an_interval_per_batch(db):
    """Seen in `make bench-gateway` after the byte cap: 26,716 of 49,000 bundles never reached the
    ingest, because the batcher sealed one capped batch and then waited a whole interval (60 s) for
    the next, as if what remained were a fresh partial batch. What was due must all be sealed now."""
    from pinseal_gateway.context import GatewayContext
    from pinseal_gateway.metrics import Metrics

    config = from_mapping(
        {"uplink": {"kind": "none"}, "batch": {"interval_s": 3600, "max_bundles": 50, "max_bytes": 3136}}
    )
    ctx = GatewayContext(config, db, GATEWAY_KEY, GATEWAY_KID, Metrics())
    raws = bundles_of(DEVICE_KEY, 200)
    store(db, DEVICE_KEY, raws)

    async def main() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(batcher.run_batcher(ctx, stop))
        for _ in range(100):  # bounded: 5 s, where the bug waits an hour
            left = await db.run(batches.count_unbatched, 1000)
            if left == 0:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
        return left

    assert asyncio.run(main()) == 0
    sealed = db.run_sync(batches.all_batches)
    assert len(sealed) > 200 // 50  # capped by bytes, not by count
    assert sum(b.count for b in sealed) == 200
