"""Silent devices ("online but not reporting"), found with an injected clock."""

import asyncio
import itertools
import logging
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import silence
from pinseal_gateway.config import from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.store import devices
from pinseal_gateway.store.db import Database
from pinseal_protocol import keys

T0 = 1_760_000_000.0
GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([5]) * 32)


def device_key(n: int) -> bytes:
    return keys.public_key_bytes(Ed25519PrivateKey.from_private_bytes(bytes([100 + n]) * 32))


def add(conn: sqlite3.Connection, n: int, interval: int | None = None, added_at: float = T0) -> bytes:
    device = devices.add_device(
        conn, device_key(n), label=f"dev{n}", expected_interval_s=interval, password_hash="x", now=added_at
    )
    return device.kid


def seen(conn: sqlite3.Connection, kid: bytes, at: float) -> None:
    with conn:
        conn.execute(
            "INSERT INTO device_state (kid, last_seen) VALUES (?, ?) "
            "ON CONFLICT (kid) DO UPDATE SET last_seen = excluded.last_seen",
            (kid, at),
        )


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "gateway.sqlite")
    yield database
    database.close()


def silent_kids(db: Database, now: float, default: float = 60, after: float = 3) -> list[bytes]:
    return [d.kid for d in db.run_sync(silence.silent_devices, now, default, after)]


def test_silent_after_the_configured_number_of_intervals(db):
    kid = db.run_sync(add, 1)
    db.run_sync(seen, kid, T0 + 100)
    assert silent_kids(db, T0 + 100 + 180) == []  # exactly 3 intervals: not yet
    assert silent_kids(db, T0 + 100 + 181) == [kid]
    (device,) = db.run_sync(silence.silent_devices, T0 + 400, 60, 3)
    assert device.last_seen == T0 + 100 and device.silent_for_s == 300
    assert device.expected_interval_s == 60 and device.label == "dev1"


def test_per_device_interval_overrides_the_default(db):
    slow = db.run_sync(add, 1, 3600)
    fast = db.run_sync(add, 2, 10)
    for kid in (slow, fast):
        db.run_sync(seen, kid, T0)
    assert silent_kids(db, T0 + 31) == [fast]
    assert set(silent_kids(db, T0 + 3 * 3600 + 1)) == {slow, fast}


def bundles_at(conn: sqlite3.Connection, kid: bytes, times: list[float]) -> None:
    """Bundles as the store keeps them (only what the interval learning reads: seq and arrival)."""
    with conn:
        for seq, at in enumerate(times):
            conn.execute(
                "INSERT INTO bundles (hash, kid, seq, last_seq, received_at, raw) "
                "VALUES (?, ?, ?, ?, ?, x'')",
                (kid + seq.to_bytes(4, "big"), kid, seq * 16, seq * 16 + 15, at),
            )
    seen(conn, kid, times[-1])


def test_a_device_is_judged_by_the_interval_it_keeps_when_that_is_longer(db):
    """Registered at its 60 s sampling interval but sending a bundle of 16 every 960 s: a healthy board,
    never silent between two bundles (it flapped silent / no longer silent every bundle)."""
    kid = db.run_sync(add, 1, 60)
    arrivals = [T0 + 960 * i for i in range(6)]
    arrivals[3] += 400  # one late bundle does not move the median
    db.run_sync(bundles_at, kid, arrivals)
    last = arrivals[-1]
    assert silent_kids(db, last + 900) == []  # within one of its intervals
    assert silent_kids(db, last + 3 * 960 + 1) == [kid]  # three of them missed: silent
    (device,) = db.run_sync(silence.silent_devices, last + 3 * 960 + 1, 60, 3)
    assert device.expected_interval_s == 960
    # one that sends more often than it registered keeps the registered (more lenient) interval
    fast = db.run_sync(add, 2, 3600)
    db.run_sync(bundles_at, fast, [T0 + 10 * i for i in range(6)])
    assert silent_kids(db, T0 + 50 + 3 * 3600) == [kid]
    # too few bundles to learn from: the registered interval
    new = db.run_sync(add, 3, 60)
    db.run_sync(bundles_at, new, [T0, T0 + 960])
    assert new in silent_kids(db, T0 + 960 + 181)


def test_revoked_devices_are_never_silent(db):
    kid = db.run_sync(add, 1)
    db.run_sync(devices.revoke_device, kid, T0 + 1)
    assert silent_kids(db, T0 + 10_000) == []


def test_never_reported_counts_from_registration(db):
    kid = db.run_sync(add, 1, None, T0 + 1000)
    assert silent_kids(db, T0 + 1000 + 180) == []
    (device,) = db.run_sync(silence.silent_devices, T0 + 1200, 60, 3)
    assert device.kid == kid and device.last_seen is None and device.silent_for_s == 200


def test_last_bundle_time_used_when_state_has_none(db):
    kid = db.run_sync(add, 1)

    def insert(conn):
        with conn:
            conn.execute(
                "INSERT INTO bundles (hash, kid, received_at, raw) VALUES (?, ?, ?, ?)",
                (bytes(32), kid, T0 + 500, b"x"),
            )

    db.run_sync(insert)
    assert silent_kids(db, T0 + 600) == []
    (device,) = db.run_sync(silence.silent_devices, T0 + 700, 60, 3)
    assert device.last_seen == T0 + 500


def make_ctx(db: Database) -> GatewayContext:
    config = from_mapping({"devices": {"expected_interval_s": 60, "silent_after_intervals": 3}})
    return GatewayContext(config, db, GATEWAY_KEY, keys.key_id(GATEWAY_KEY.public_key()), Metrics())


def test_each_change_is_logged_once_and_the_gauge_follows(db, caplog):
    ctx = make_ctx(db)
    a, b = db.run_sync(add, 1), db.run_sync(add, 2)
    db.run_sync(seen, a, T0)
    db.run_sync(seen, b, T0 + 150)
    tracker = silence.SilenceTracker()
    caplog.set_level(logging.INFO, logger="pinseal_gateway.silence")

    async def checks():
        await silence.check_once(ctx, tracker, T0 + 100)
        assert ctx.metrics.devices_silent._value.get() == 0
        await silence.check_once(ctx, tracker, T0 + 200)  # a silent
        await silence.check_once(ctx, tracker, T0 + 250)  # still: no second log line
        assert ctx.metrics.devices_silent._value.get() == 1
        await silence.check_once(ctx, tracker, T0 + 400)  # b silent too
        assert ctx.metrics.devices_silent._value.get() == 2
        await ctx.db.run(seen, a, T0 + 390)
        await silence.check_once(ctx, tracker, T0 + 410)  # a reports again
        assert ctx.metrics.devices_silent._value.get() == 1

    asyncio.run(checks())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 2
    assert a.hex() in warnings[0] and "no bundle for 200 s" in warnings[0]
    assert b.hex() in warnings[1]
    assert infos == [f"device {a.hex()} no longer silent"]


def test_run_silence_watch_checks_until_stopped(db):
    ctx = make_ctx(db)
    db.run_sync(add, 1)
    times = itertools.chain([T0 + 10], itertools.repeat(T0 + 500))

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(
            silence.run_silence_watch(ctx, stop, clock=lambda: next(times), every_s=0.01)
        )
        async with asyncio.timeout(5):
            while ctx.metrics.devices_silent._value.get() != 1:
                await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(main())


def test_check_interval_is_bounded():
    assert silence.check_every_s(60) == 30
    assert silence.check_every_s(3600) == silence.MAX_CHECK_EVERY_S
    assert silence.check_every_s(1) == 1.0
