"""Uplink: the durable outbox drains in order to the real network ingest (HTTP) or a real broker (MQTT).

No test sleeps through a backoff: the outbox is driven step by step with an injected clock, which is
advanced by exactly the delay each step asks for.
"""

import asyncio
import functools
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import host_bundles
import paho.mqtt.client as mqtt
import pytest
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import batcher
from pinseal_gateway.broker import free_port, start_mosquitto, stop_mosquitto, wait_for_port
from pinseal_gateway.config import from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.store import batches
from pinseal_gateway.store.db import Database
from pinseal_gateway.uplink import SendOutcome, SendResult, run_uplink
from pinseal_gateway.uplink.http import HttpUplink, classify
from pinseal_gateway.uplink.mqtt import BATCH_HASH_PROPERTY, MqttUplink
from pinseal_gateway.uplink.outbox import OutboxDrainer, backoff_delay
from pinseal_protocol import keys

GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([21]) * 32)
GATEWAY_KID = keys.key_id(GATEWAY_KEY.public_key())
DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(bytes([22]) * 32)
T0 = 1_760_000_000.0

make_bundles = functools.partial(host_bundles.make_bundles, DEVICE_KEY)
store_bundles = functools.partial(host_bundles.store_bundles, public_key=DEVICE_KEY.public_key())
INGEST_BIN = Path(sys.executable).with_name("pinseal-ingest")


# ---- helpers ------------------------------------------------------------------------------------------


class Clock:
    """An injected wall clock: the outbox reads it, the test advances it."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recorder:
    """An `UplinkBackend` that records what it is asked to send and answers from a script."""

    def __init__(self, *answers: SendResult) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, batch_hash: bytes, body: bytes) -> SendResult:
        self.sent.append((batch_hash, body))
        return self.answers.pop(0) if self.answers else SendResult.sent()

    async def close(self) -> None:
        pass


def seal_batches(db: Database, count: int, per_batch: int = 3, mode: str = "bundles") -> list[bytes]:
    """Store and seal `count` batches of chained bundles; returns the batch hashes in order."""
    raws = make_bundles(count * per_batch)
    db.run_sync(store_bundles, raws)
    hashes = []
    for _ in range(count):
        info = db.run_sync(batcher.seal_batch, GATEWAY_KEY, GATEWAY_KID, mode, per_batch, T0)
        hashes.append(info.hash)
    return hashes


def make_ctx(db: Database, **uplink) -> GatewayContext:
    config = from_mapping({"uplink": {"backoff_initial_s": 1.0, "backoff_max_s": 60.0, **uplink}})
    return GatewayContext(config, db, GATEWAY_KEY, GATEWAY_KID, Metrics())


async def drain(drainer: OutboxDrainer, clock: Clock, max_steps: int = 200) -> list[float]:
    """Step until the outbox is empty; the clock jumps over every wait. Returns the waits."""
    waits = []
    for _ in range(max_steps):
        if await drainer.ctx.db.run(batches.next_unsent) is None:
            return waits
        wait = await drainer.step()
        waits.append(wait)
        clock.t += wait
    raise AssertionError(f"outbox not drained after {max_steps} steps")


def outbox_rows(db: Database) -> list[tuple]:
    return db.run_sync(
        lambda c: c.execute(
            "SELECT batch_no, attempts, next_attempt_at, last_error, sent_at "
            "FROM uplink_outbox ORDER BY batch_no"
        ).fetchall()
    )


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "gateway.sqlite")
    yield database
    database.close()


# ---- the real network ingest ---------------------------------------------------------------------------


class Ingest:
    """`pinseal-ingest run` as a subprocess on a loopback port, its registry set up through its CLI."""

    def __init__(self, tmp_path: Path) -> None:
        self.db_path = tmp_path / "ingest.sqlite"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/batches"
        self.proc: subprocess.Popen | None = None
        self.cli("gateways", "add", keys.public_key_bytes(GATEWAY_KEY).hex())
        self.cli("devices", "add", keys.public_key_bytes(DEVICE_KEY).hex())

    def cli(self, *args: str) -> None:
        subprocess.run([str(INGEST_BIN), *args, "--db", str(self.db_path)], check=True, capture_output=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(INGEST_BIN), "run", "--db", str(self.db_path), "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if not wait_for_port("127.0.0.1", self.port, 20):
            self.stop()
            raise RuntimeError("pinseal-ingest did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def stored(self) -> list[tuple[int, bytes]]:
        """(batch_no, hash) of every batch the ingest holds, read from its own database."""
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute("SELECT batch_no, hash FROM batches ORDER BY rowid").fetchall()
        return [(int(n), bytes(h)) for n, h in rows]


@pytest.fixture
def ingest(tmp_path):
    if not INGEST_BIN.exists():
        pytest.fail("the pinseal-ingest console script is not installed (pip install -e .)")
    server = Ingest(tmp_path)
    yield server
    server.stop()


# ---- backoff schedule (pure) ---------------------------------------------------------------------------


def test_backoff_grows_and_is_jittered_within_bounds():
    initial, maximum = 1.0, 300.0
    assert backoff_delay(0, initial, maximum) == 0
    # the ceiling doubles per failure until the maximum: rand()=1 shows the ceiling, rand()=0 the floor
    ceilings = [backoff_delay(n, initial, maximum, rand=lambda: 1.0) for n in range(1, 12)]
    assert ceilings == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert all(backoff_delay(n, initial, maximum, rand=lambda: 0.0) == initial for n in range(1, 12))
    rng = random.Random(42)
    for n in range(1, 40):
        samples = [backoff_delay(n, initial, maximum, rng.random) for _ in range(200)]
        ceiling = min(maximum, initial * 2**n)
        assert all(initial <= s <= ceiling for s in samples)
        assert len(set(samples)) > 150  # jittered: a fleet does not retry in lockstep
    assert backoff_delay(10_000, initial, maximum, rand=lambda: 0.5) == pytest.approx(150.5)


def test_documented_ingest_answers_map_to_outcomes():
    assert classify(200, '{"status": "stored", "batch_hash": "ab"}').outcome is SendOutcome.SENT
    assert classify(200, '{"status": "duplicate", "batch_hash": "ab"}').outcome is SendOutcome.SENT
    gap = classify(409, '{"reason": "chain_gap", "expected": 4, "detail": "x"}')
    assert gap.outcome is SendOutcome.RESEND_FROM and gap.expected == 4
    assert classify(409, '{"reason": "conflict", "detail": "x"}').outcome is SendOutcome.CONFLICT
    for status in (400, 403):
        assert classify(status, '{"reason": "bad_proof"}').outcome is SendOutcome.REJECTED
    # issue 11 #2: the same bytes can never pass a 413 or a 422; the outbox reseals instead of retrying
    assert classify(413, '{"reason": "too_large"}').outcome is SendOutcome.TOO_LARGE
    assert classify(422, '{"reason": "bad_proof"}').outcome is SendOutcome.REFUSED
    for status in (500, 502, 503, 504, 429, 408):
        assert classify(status, "oops").outcome is SendOutcome.RETRY
    assert classify(409, '{"reason": "chain_gap"}').outcome is SendOutcome.RETRY  # unusable: do not guess


# ---- HTTP to the real ingest ---------------------------------------------------------------------------


def test_uplink_down_then_up_drains_in_order_exactly_once(db, ingest):
    hashes = seal_batches(db, 5)
    ctx = make_ctx(db)
    clock = Clock()

    async def main():
        drainer = OutboxDrainer(ctx, HttpUplink(ingest.url, timeout_s=5), clock=clock, rand=lambda: 0.5)
        try:
            waits = []
            for _ in range(4):  # ingest down: connection refused
                waits.append(await drainer.step())
                clock.t += waits[-1]
            assert waits == [1.5, 2.5, 4.5, 8.5]  # backoff 1..2, 1..4, 1..8, 1..16 at rand 0.5
            rows = outbox_rows(db)
            assert rows[0][1] == 4 and rows[0][3].startswith("retry") and rows[0][4] is None
            assert all(r[1] == 0 for r in rows[1:])  # strictly in order: nothing later was tried
            assert ctx.metrics.uplink_failures._value.get() == 4
            assert ctx.metrics.outbox_depth._value.get() == 5

            ingest.start()
            await drain(drainer, clock)
        finally:
            await drainer.backend.close()

    asyncio.run(main())
    assert ingest.stored() == list(enumerate(hashes))
    assert [r[0] for r in outbox_rows(db) if r[4] is not None] == [0, 1, 2, 3, 4]
    assert ctx.metrics.uplink_sent._value.get() == 5
    assert ctx.metrics.outbox_depth._value.get() == 0


def test_proofs_mode_batches_are_accepted_by_the_ingest(db, ingest):
    hashes = seal_batches(db, 2, mode="proofs")
    ingest.start()
    clock = Clock()

    async def main():
        drainer = OutboxDrainer(make_ctx(db), HttpUplink(ingest.url), clock=clock)
        await drain(drainer, clock)
        await drainer.backend.close()

    asyncio.run(main())
    assert ingest.stored() == list(enumerate(hashes))


async def start_proxy(target: str, port: int, hold_first_s: float):
    """Forwards to the ingest; the first answer is held back past the client's timeout (lost answer)."""
    state = {"requests": 0}

    async def forward(body: bytes, headers: dict) -> tuple[str, int]:
        async with ClientSession() as session, session.post(target, data=body, headers=headers) as up:
            return await up.text(), up.status

    async def handle(request: web.Request) -> web.Response:
        state["requests"] += 1
        body = await request.read()
        headers = {k: request.headers[k] for k in ("Content-Type", "Idempotency-Key")}
        # shielded: the client giving up must not stop the ingest from storing (that is the point)
        text, status = await asyncio.shield(asyncio.ensure_future(forward(body, headers)))
        if state["requests"] == 1:
            await asyncio.sleep(hold_first_s)
        return web.Response(status=status, text=text, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/batches", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, state


def test_timeout_after_the_ingest_stored_counts_as_sent_on_retry(db, ingest):
    hashes = seal_batches(db, 2)
    ingest.start()
    clock = Clock()
    proxy_port = free_port()

    async def main():
        runner, state = await start_proxy(ingest.url, proxy_port, hold_first_s=3)
        ctx = make_ctx(db)
        drainer = OutboxDrainer(
            ctx, HttpUplink(f"http://127.0.0.1:{proxy_port}/v1/batches", timeout_s=0.5), clock=clock
        )
        try:
            wait = await drainer.step()
            assert wait >= 1.0  # timed out: retry later...
            async with asyncio.timeout(10):
                while ingest.stored() != [(0, hashes[0])]:  # ...although the ingest did store it
                    await asyncio.sleep(0.05)
            clock.t += wait
            await drain(drainer, clock)
            assert state["requests"] == 3  # batch 0 twice (the retry was a duplicate), batch 1 once
        finally:
            await drainer.backend.close()
            await runner.cleanup()

    asyncio.run(main())
    assert ingest.stored() == list(enumerate(hashes))


def test_restart_resumes_from_the_first_unsent_batch_and_keeps_its_backoff(tmp_path, ingest):
    path = tmp_path / "gw.sqlite"
    first = Database(path)
    hashes = seal_batches(first, 4)
    ingest.start()
    clock = Clock()

    async def two_then_fail():
        backend = HttpUplink(ingest.url)
        drainer = OutboxDrainer(make_ctx(first), backend, clock=clock, rand=lambda: 1.0)
        assert await drainer.step() == 0 and await drainer.step() == 0  # batches 0 and 1 confirmed
        ingest.stop()
        assert await drainer.step() == 2.0  # batch 2 fails: retry at T0 + 2
        await backend.close()

    asyncio.run(two_then_fail())
    first.close()

    second = Database(path)  # a restarted gateway: only the table knows where the uplink stood
    try:
        ingest.start()
        recorder_wait = []

        async def resume():
            backend = HttpUplink(ingest.url)
            drainer = OutboxDrainer(make_ctx(second), backend, clock=clock)
            recorder_wait.append(await drainer.step())  # batch 2's backoff is still running
            clock.t += recorder_wait[0]
            await drain(drainer, clock)
            await backend.close()

        asyncio.run(resume())
        assert recorder_wait == [2.0]
        assert ingest.stored() == list(enumerate(hashes))
        assert [r[1] for r in outbox_rows(second)] == [1, 1, 2, 1]  # attempts per batch
    finally:
        second.close()


def test_chain_gap_resends_from_the_expected_batch(db, ingest):
    hashes = seal_batches(db, 3)
    ingest.start()
    # The outbox believes batch 0 went out (e.g. the network restored an older backup): the ingest
    # answers chain_gap for batch 1, and the outbox goes back to batch 0.
    db.run_sync(batches.mark_sent, 0, T0)
    clock = Clock()

    async def main():
        drainer = OutboxDrainer(make_ctx(db), HttpUplink(ingest.url), clock=clock)
        assert await drainer.step() == 0  # chain_gap → reopen from 0
        assert (await db.run(batches.next_unsent)).batch_no == 0
        await drain(drainer, clock)
        await drainer.backend.close()

    asyncio.run(main())
    assert ingest.stored() == list(enumerate(hashes))


def test_conflict_stops_the_uplink_for_good(tmp_path, ingest, caplog):
    ingest.start()
    # Another store with the same gateway key already sent a different batch 0 (a cloned SD card).
    other = Database(tmp_path / "other.sqlite")
    other.run_sync(store_bundles, make_bundles(2, start_seq=500))
    other.run_sync(batcher.seal_batch, GATEWAY_KEY, GATEWAY_KID, "bundles", 10, T0)
    clock = Clock()

    async def send_other():
        drainer = OutboxDrainer(make_ctx(other), HttpUplink(ingest.url), clock=clock)
        await drain(drainer, clock)
        await drainer.backend.close()

    asyncio.run(send_other())
    other.close()

    mine = Database(tmp_path / "mine.sqlite")
    try:
        seal_batches(mine, 2)

        async def main():
            backend = HttpUplink(ingest.url)
            drainer = OutboxDrainer(make_ctx(mine), backend, clock=clock)
            await drainer.step()
            assert drainer.halted is not None and "conflict" in drainer.halted
            for _ in range(3):
                clock.t += 1000
                await drainer.step()  # halted: never tries batch 0 again, never moves on to batch 1
            await backend.close()

        asyncio.run(main())
        rows = outbox_rows(mine)
        assert [r[1] for r in rows] == [1, 0] and rows[0][3].startswith("conflict")
        assert all(r[4] is None for r in rows)
        assert any(r.levelname == "CRITICAL" and "UPLINK STOPPED" in r.getMessage() for r in caplog.records)
        assert len(ingest.stored()) == 1
    finally:
        mine.close()


def test_run_uplink_task_drains_and_stops(db, ingest):
    hashes = seal_batches(db, 3)
    ingest.start()
    ctx = make_ctx(db, url=ingest.url)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(run_uplink(ctx, stop))
        async with asyncio.timeout(20):
            while await db.run(batches.outbox_depth):
                await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())
    assert ingest.stored() == list(enumerate(hashes))


# ---- outbox behaviour with a scripted backend ----------------------------------------------------------


def test_the_stored_body_is_sent_byte_for_byte_on_every_attempt(db):
    seal_batches(db, 2)
    stored = db.run_sync(lambda c: c.execute("SELECT body FROM uplink_outbox ORDER BY batch_no").fetchall())
    recorder = Recorder(SendResult.retry("x"), SendResult.retry("y"), SendResult(SendOutcome.REJECTED, "403"))
    clock = Clock()
    asyncio.run(drain(OutboxDrainer(make_ctx(db), recorder, clock=clock), clock))
    bodies = [body for _, body in recorder.sent]
    assert bodies == [stored[0][0]] * 4 + [stored[1][0]]
    assert [h for h, _ in recorder.sent] == [db.run_sync(batches.get_batch, n).hash for n in (0, 0, 0, 0, 1)]


def test_a_backend_exception_is_a_retry_not_a_crash(db):
    seal_batches(db, 1)

    class Broken(Recorder):
        async def send(self, batch_hash, body):
            raise RuntimeError("bug")

    clock = Clock()
    drainer = OutboxDrainer(make_ctx(db), Broken(), clock=clock)
    assert asyncio.run(drainer.step()) >= 1.0
    assert outbox_rows(db)[0][3].startswith("retry: RuntimeError")


def test_kind_none_starts_no_uplink(db):
    seal_batches(db, 1)
    ctx = make_ctx(db, kind="none")

    async def main():
        await asyncio.wait_for(run_uplink(ctx, asyncio.Event()), 2)

    asyncio.run(main())
    assert db.run_sync(batches.outbox_depth) == 1


# ---- MQTT to a real broker -----------------------------------------------------------------------------


def start_broker(tmp_path: Path, port: int) -> subprocess.Popen:
    conf_dir = tmp_path / f"broker-{port}"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    return start_mosquitto(conf_dir, port)


@pytest.fixture
def broker_port(tmp_path):
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed (make setup)")
    port = free_port()
    proc = start_broker(tmp_path, port)
    yield port
    stop_mosquitto(proc)


class Subscriber:
    """A plain paho v5 subscriber on the upstream topic, collecting (payload, user properties)."""

    def __init__(self, port: int, topic: str) -> None:
        self.received: list[tuple[bytes, dict]] = []
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id="upstream-test",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = lambda c, u, msg: self.received.append(
            (msg.payload, dict(getattr(msg.properties, "UserProperty", [])))
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        result, _mid = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS and subscribed.wait(10)  # SUBACK: nothing published is missed

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_uplink_publishes_the_exact_stored_bytes(db, broker_port):
    hashes = seal_batches(db, 3)
    topic = f"pinseal/v1/gateways/{GATEWAY_KID.hex()}/batches"
    subscriber = Subscriber(broker_port, topic)
    ctx = make_ctx(db, kind="mqtt", mqtt_port=broker_port)
    clock = Clock()
    try:

        async def main():
            drainer = OutboxDrainer(
                ctx, MqttUplink("127.0.0.1", broker_port, topic, client_id="gw-up"), clock=clock
            )
            await drain(drainer, clock)
            await drainer.backend.close()
            async with asyncio.timeout(5):
                while len(subscriber.received) < 3:
                    await asyncio.sleep(0.05)

        asyncio.run(main())
    finally:
        subscriber.close()
    stored = db.run_sync(
        lambda c: [bytes(r[0]) for r in c.execute("SELECT body FROM uplink_outbox ORDER BY batch_no")]
    )
    assert [payload for payload, _ in subscriber.received] == stored
    assert [props[BATCH_HASH_PROPERTY] for _, props in subscriber.received] == [h.hex() for h in hashes]
    assert ctx.metrics.uplink_sent._value.get() == 3


def test_mqtt_uplink_retries_while_the_broker_is_down(db, tmp_path):
    seal_batches(db, 2)
    port = free_port()
    ctx = make_ctx(db, kind="mqtt", mqtt_port=port)
    topic = ctx.config.uplink.mqtt_topic.format(gateway_kid=GATEWAY_KID.hex())
    clock = Clock()
    proc = None
    try:

        async def main():
            nonlocal proc
            backend = MqttUplink("127.0.0.1", port, topic, client_id="gw-up-2", timeout_s=0.5)
            drainer = OutboxDrainer(ctx, backend, clock=clock)
            wait = await drainer.step()
            assert wait >= 1.0 and outbox_rows(db)[0][3].startswith("retry: not connected")
            clock.t += wait
            proc = start_broker(tmp_path, port)
            backend.timeout_s = 10  # paho reconnects on its own (1 s first delay)
            await drain(drainer, clock)
            await backend.close()

        asyncio.run(main())
    finally:
        if proc is not None:
            stop_mosquitto(proc)
    assert all(r[4] is not None for r in outbox_rows(db))


def test_make_backend_formats_the_topic_with_the_gateway_kid(db):
    from pinseal_gateway.uplink.outbox import make_backend

    backend = make_backend(make_ctx(db, kind="mqtt"))
    assert isinstance(backend, MqttUplink)
    assert backend.topic == f"pinseal/v1/gateways/{GATEWAY_KID.hex()}/batches"
    assert isinstance(make_backend(make_ctx(db, kind="http")), HttpUplink)
    assert make_backend(make_ctx(db, kind="none")) is None
