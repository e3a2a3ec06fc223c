"""Issue 11 #1: the protocol's full uint64 range for seq, boot and bt, and supervised pipeline tasks.

A validly signed bundle with a field >= 2**63 once raised OverflowError at the SQLite INTEGER bind,
killed the store task unobserved and stalled every device behind it. These tests push such bundles
through a real Mosquitto and gateway, migrate a schema-2 database file, and check that one message
whose handling raises costs only that message, and that a task dying stops the process non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import cli, silence, verifier
from pinseal_gateway.config import from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.link import Message
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.pipeline import Pipeline
from pinseal_gateway.store import bundles as bundle_store
from pinseal_gateway.store import db as store_db
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store.db import Database
from pinseal_gateway.verify import Checked
from pinseal_protocol import ack as pack
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import keys
from pinseal_protocol.senml import Reading, Record

TOP = 2**64 - 1
HALF = 2**63
GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(bytes([8]) * 32)
DEVICE_PUBLIC = keys.public_key_bytes(DEVICE_KEY)
DEVICE_KID = keys.key_id(DEVICE_PUBLIC)
TOPIC = f"pinseal/v1/{DEVICE_KID.hex()}/up"


def seal(seq: int, prev: bytes, *, n: int = 1, boot: int = 1, bt: int | None = None) -> bytes:
    base = int(time.time()) if bt is None else bt
    readings = [Reading(base - (n - 1) + i, (Record("p", "Pa", 101325 + i),)) for i in range(n)]
    return pbundle.seal(
        DEVICE_KEY, boot=boot, seq=seq, prev=prev, status=pbundle.Status(), time_source=1, readings=readings
    )


def stored_seqs(path: Path, kid: bytes) -> list[int]:
    """The device's bundles' seqs in the database's own ORDER BY seq, decoded."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT seq FROM bundles WHERE kid = ? ORDER BY seq", (kid,)).fetchall()
    finally:
        conn.close()
    return [bundle_store.from_u64(seq) for (seq,) in rows]


@pytest.mark.broker
def test_uint64_seq_boot_and_bt_are_stored_and_acked(env, start_gateway) -> None:
    """seq, boot and bt at 2**63 and 2**64-1 through Mosquitto and the gateway: stored, acked, in order."""
    low, high = env.devices[0], env.devices[1]
    low.boot, high.boot = HALF, TOP
    running = start_gateway(env.config)
    peers = []
    try:
        # low: a chain crossing 2**63 and ending at the last seq there is, boot 2**63, bt 2**63.
        a = low.seal(seq=HALF - 1)
        b = low.seal(seq=HALF, time_s=HALF)
        c = low.seal(seq=TOP - 1, n=2)
        # high: one bundle with every field at its maximum.
        d = high.seal(seq=TOP, time_s=TOP)
        p_low, p_high = env.device_peer(low), env.device_peer(high)
        peers += [p_low, p_high]
        for raw in (a, b, c):
            p_low.send(raw)
        p_high.send(d)
        acks = p_low.acks_for({pbundle.bundle_hash(r) for r in (a, b, c)}, timeout=10)
        (ack_d,) = p_high.acks_for({pbundle.bundle_hash(d)}, timeout=10).values()
        p_low.send(b)  # a duplicate across the boundary: re-acked, not stored twice
        again = p_low.ack(10)
    finally:
        for peer in peers:
            peer.close()
        running.stop()
    # Each ack carries the contiguous seq as its commit left it: at least its own bundle's last seq.
    assert acks[pbundle.bundle_hash(a)].covers(HALF - 1)
    assert acks[pbundle.bundle_hash(b)].covers(HALF)
    assert acks[pbundle.bundle_hash(c)].seq == TOP
    assert ack_d.seq == TOP and ack_d.device == high.kid
    assert (again.bundle_hash, again.seq) == (pbundle.bundle_hash(b), TOP)
    assert stored_seqs(env.config.db_path, low.kid) == [HALF - 1, HALF, TOP - 1]
    db = env.db()
    try:
        states = {s.kid: s for s in db.run_sync(bundle_store.all_states)}
        boots = db.run_sync(
            lambda conn: conn.execute("SELECT kid, boot, last_seq FROM bundles ORDER BY rowid").fetchall()
        )
        times = db.run_sync(
            lambda conn: conn.execute("SELECT seq, time FROM readings WHERE kid = ?", (high.kid,)).fetchall()
        )
    finally:
        db.close()
    assert (states[low.kid].high_seq, states[low.kid].contiguous_seq, states[low.kid].first_seq) == (
        TOP,
        TOP,
        HALF - 1,
    )
    assert (states[high.kid].high_seq, states[high.kid].contiguous_seq) == (TOP, TOP)
    decoded = [(kid, bundle_store.from_u64(boot), bundle_store.from_u64(last)) for kid, boot, last in boots]
    assert decoded == [
        (low.kid, HALF, HALF - 1),
        (low.kid, HALF, HALF),
        (low.kid, HALF, TOP),
        (high.kid, TOP, TOP),
    ]
    assert [(bundle_store.from_u64(s), bundle_store.from_u64(t)) for s, t in times] == [
        (TOP, TOP)
    ] * 2  # two records
    assert running.error is None


# -- schema 2 -> 3 ----------------------------------------------------------------------------------

SCHEMA_2 = """
CREATE TABLE devices (kid BLOB PRIMARY KEY, public_key BLOB NOT NULL, label TEXT, mqtt_password_hash TEXT,
    expected_interval_s INTEGER, added_at REAL NOT NULL, revoked_at REAL);
CREATE TABLE device_state (kid BLOB PRIMARY KEY, high_seq INTEGER, contiguous_seq INTEGER,
    last_bundle_hash BLOB, last_seen REAL, bundles INTEGER NOT NULL DEFAULT 0,
    readings INTEGER NOT NULL DEFAULT 0, gaps INTEGER NOT NULL DEFAULT 0, first_seq INTEGER,
    contiguous_hash BLOB, linear INTEGER NOT NULL DEFAULT 0);
CREATE TABLE bundles (hash BLOB PRIMARY KEY, kid BLOB NOT NULL, boot INTEGER, seq INTEGER,
    last_seq INTEGER, prev BLOB, n_readings INTEGER, time_source INTEGER, received_at REAL NOT NULL,
    raw BLOB NOT NULL, chain_gap INTEGER NOT NULL DEFAULT 0, time_flag TEXT, batch_id INTEGER,
    leaf_index INTEGER);
CREATE INDEX bundles_kid_seq ON bundles (kid, seq);
CREATE INDEX bundles_kid_prev ON bundles (kid, prev);
CREATE INDEX bundles_batch ON bundles (batch_id);
CREATE TABLE readings (bundle_hash BLOB NOT NULL, kid BLOB NOT NULL, seq INTEGER NOT NULL,
    time INTEGER NOT NULL, name TEXT NOT NULL, unit TEXT, value TEXT, error TEXT);
CREATE TABLE rejections (id INTEGER PRIMARY KEY, kid BLOB, topic TEXT, reason TEXT NOT NULL, detail TEXT,
    received_at REAL NOT NULL, evidence BLOB);
CREATE INDEX rejections_reason ON rejections (reason);
PRAGMA user_version = 2;
"""


class FakeTransport:
    """Records what the pipeline settles and acks (the MQTT side is tested through Mosquitto above)."""

    def __init__(self) -> None:
        self.settled: list[object] = []
        self.acks: list[tuple[bytes, bytes]] = []

    def settle(self, tokens: object) -> None:
        self.settled.extend(tokens)  # type: ignore[call-overload]

    def publish_acks(self, acks: object) -> None:
        self.acks.extend(acks)  # type: ignore[call-overload]


async def drive(db: Database, payloads: list[bytes], *, timeout: float = 10.0) -> FakeTransport:
    """Submit every payload before the pipeline runs (so they form one group), wait for all settled."""
    config = from_mapping({"pipeline": {"max_group": 500, "verify_process": False}})
    ctx = GatewayContext(config, db, GATEWAY_KEY, keys.key_id(GATEWAY_KEY.public_key()), Metrics())
    transport = FakeTransport()
    pipe = Pipeline(ctx)
    for i, payload in enumerate(payloads):
        await pipe.submit(Message(TOPIC, payload, time.time(), i, transport))
    stop = asyncio.Event()
    task = asyncio.create_task(pipe.run(stop))
    deadline = time.monotonic() + timeout
    while len(transport.settled) < len(payloads) and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.01)
    stop.set()
    try:
        await asyncio.wait_for(task, 10)
    except Exception as exc:  # reported through the assertions below, which say what is missing
        logging.getLogger(__name__).warning("pipeline ended with %r", exc)
    return transport


def acked_seqs(transport: FakeTransport) -> dict[bytes, int]:
    public = GATEWAY_KEY.public_key()
    return {a.bundle_hash: a.seq for a in (pack.verify_ack(raw, public, kid) for kid, raw in transport.acks)}


def test_schema_2_database_file_migrates_and_continues_past_2_63() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.sqlite"
        first = seal(5, pbundle.ZERO_PREV)
        conn = sqlite3.connect(path)
        conn.executescript(SCHEMA_2)
        bundle = pbundle.verify_bundle(first, keys.load_public_key(DEVICE_PUBLIC))
        with conn:
            conn.execute(
                "INSERT INTO devices (kid, public_key, added_at) VALUES (?, ?, ?)",
                (DEVICE_KID, DEVICE_PUBLIC, 1.0),
            )
            conn.execute(
                "INSERT INTO bundles (hash, kid, boot, seq, last_seq, prev, n_readings, time_source, "
                "received_at, raw) VALUES (?, ?, 1, 5, 5, ?, 1, 1, 1.0, ?)",
                (bundle.bundle_hash, DEVICE_KID, bundle.prev, first),
            )
            conn.execute(
                "INSERT INTO device_state VALUES (?, 5, 5, ?, 1.0, 1, 1, 0, 5, ?, 1)",
                (DEVICE_KID, bundle.bundle_hash, bundle.bundle_hash),
            )
        conn.close()
        db = Database(path)
        try:
            (version,) = db.run_sync(lambda c: c.execute("PRAGMA user_version").fetchone())
            assert version == store_db.SCHEMA_VERSION == 3
            (state,) = db.run_sync(bundle_store.all_states)
            assert (state.high_seq, state.contiguous_seq, state.first_seq, state.linear) == (5, 5, 5, True)
            nxt = seal(HALF, pbundle.link_of(first), boot=TOP, bt=TOP)
            transport = asyncio.run(drive(db, [nxt]))
            assert acked_seqs(transport) == {pbundle.bundle_hash(nxt): HALF}
            (state,) = db.run_sync(bundle_store.all_states)
            assert (state.high_seq, state.contiguous_seq, state.first_seq) == (HALF, HALF, 5)
        finally:
            db.close()
        assert stored_seqs(path, DEVICE_KID) == [5, HALF]


# -- one message's failure is that message's rejection ----------------------------------------------


class RaisingRows:
    """Readings rows whose building fails the moment the store reads them (a bug in row building)."""

    def __iter__(self) -> Iterator[tuple[object, ...]]:
        raise RuntimeError("row building failed")

    def __len__(self) -> int:
        return 1


def test_one_raising_message_in_a_group_of_100_costs_only_that_message(monkeypatch) -> None:
    chain, prev = [], pbundle.ZERO_PREV
    for seq in range(100):
        raw = seal(seq, prev)
        chain.append(raw)
        prev = pbundle.link_of(raw)
    bad = chain[50]
    real_check = verifier.check_message

    def check(topic: str, payload: bytes, *args: object) -> object:
        checked = real_check(topic, payload, *args)  # type: ignore[arg-type]
        if payload == bad and isinstance(checked, Checked):
            return Checked(checked.bundle, checked.time_flag, RaisingRows())  # type: ignore[arg-type]
        return checked

    monkeypatch.setattr(verifier, "check_message", check)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "gateway.sqlite")
        try:
            db.run_sync(
                lambda conn: device_store.add_device(
                    conn, DEVICE_PUBLIC, label=None, expected_interval_s=None, password_hash="x"
                )
            )
            transport = asyncio.run(drive(db, chain))
            stored = db.run_sync(lambda c: {h for (h,) in c.execute("SELECT hash FROM bundles")})
            rejections = db.run_sync(lambda c: c.execute("SELECT reason, detail FROM rejections").fetchall())
        finally:
            db.close()
    assert sorted(transport.settled) == list(range(100))  # all settled: the broker forgets them
    acked = acked_seqs(transport)
    others = {pbundle.bundle_hash(r) for r in chain if r != bad}
    assert set(acked) == others and stored == others
    assert acked[pbundle.bundle_hash(chain[49])] == 49  # the chain stops before the failed bundle
    assert len(rejections) == 1 and rejections[0][0] == "internal_error"
    assert "row building failed" in rejections[0][1]


# -- a dead task stops the process with a non-zero status -----------------------------------------


@pytest.mark.broker
def test_a_task_that_dies_stops_the_gateway_with_a_non_zero_status(env, monkeypatch, caplog) -> None:
    async def broken_watch(ctx: object, stop: asyncio.Event) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("silence watch broke")

    monkeypatch.setattr(silence, "run_silence_watch", broken_watch)
    monkeypatch.setattr(cli.logformat, "configure", lambda level, fmt: None)  # keep pytest's log capture
    config = env.write_toml(env.tmp / "gateway.toml")
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        status = cli.main(["run", "--config", str(config)])
    assert status != 0
    assert time.monotonic() - started < 15
    assert any("run_silence_watch failed" in r.getMessage() for r in caplog.records)


def test_a_dead_mqtt_connection_task_stops_the_process_non_zero(env, tmp_path) -> None:
    """paho refuses an empty host with ValueError (not a connection error to retry): the connection task
    dies. Unwatched, the gateway ran on without ever receiving a message; watched, it stops and says so."""
    env.extra["raw"]["mqtt"]["host"] = ""
    config = env.write_toml(tmp_path / "gateway.toml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinseal_gateway.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the gateway kept running without its MQTT connection task")
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert code == cli.FAILED_EXIT, output
    assert "mqtt-ingest failed; stopping the gateway" in output
