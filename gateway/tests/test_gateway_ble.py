"""The BLE intake end to end (docs/protocol.md §11): the real gateway (pipeline, store, acks) with bleak's
unmodified BlueZ backend on BlueZoo's hci0, and host-simulated devices (real signed bundles, the
firmware's outbox rules) as peripherals on their own adapters. Every test accounts exactly: each reading
a device produced is stored once, nothing else is, and every outbox ends empty (acks verified)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from ble_bench import BleBench, bench_available, wait_until

from pinseal_devkit.simdevice import SimDevice
from pinseal_protocol import keys

BLE_FAST = {
    "enabled": True,
    "adapter": "hci0",
    "max_connections": 2,
    "connect_timeout_s": 5.0,
    "idle_timeout_s": 1.5,
    "scan_watchdog_s": 3.0,
    "backoff_max_s": 2.0,
}


@pytest.fixture(autouse=True)
def _bench(monkeypatch) -> None:
    bench_available()


def rows(db_path: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


class Produced:
    """Every reading the devices sealed into their outboxes: (kid, seq) -> its time."""

    def __init__(self) -> None:
        self.readings: dict[tuple[bytes, int], int] = {}

    def track(self, sim: SimDevice) -> SimDevice:
        sim.on_produced = lambda device, seq, values: self.readings.__setitem__((device.kid, seq), values[0])
        return sim


def stored_readings(db_path: Path) -> list[tuple[bytes, int, int]]:
    """(kid, seq, time) of every stored reading row with the first record's name (one per reading)."""
    return rows(db_path, "SELECT kid, seq, time FROM readings WHERE name = 't' ORDER BY kid, seq")


def assert_exact(db_path: Path, produced: Produced) -> None:
    stored = stored_readings(db_path)
    assert len(stored) == len(set((k, s) for k, s, _ in stored)), "a reading was stored twice"
    assert {(k, s): t for k, s, t in stored} == produced.readings
    (dups,) = rows(
        db_path,
        "SELECT count(*) FROM (SELECT kid, seq, name FROM readings GROUP BY 1, 2, 3 HAVING count(*) > 1)",
    )[0]
    assert dups == 0


def make(env, bench, produced, *, faults=None, register=True, per_bundle=5):
    sim = produced.track(SimDevice(per_bundle=per_bundle))
    if register:
        env.register(sim)
    return bench.device(sim, keys.load_public_key(env.gateway_public), faults=faults)


def test_one_device_delivers_its_outbox_over_ble(
    make_gateway_env, start_gateway, tmp_path, monkeypatch, caplog
) -> None:
    from pinseal_gateway import broker

    env = make_gateway_env(tmp_path, n_devices=0, ble=dict(BLE_FAST))
    proc = broker.start_mosquitto(env.broker_dir, env.port)
    produced = Produced()
    caplog.set_level(logging.INFO)
    try:
        with BleBench(tmp_path, devices=1) as bench:
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bench.address)
            device = make(env, bench, produced)
            gateway = start_gateway(env.config)
            try:
                bench.run(device.seal(6))
                wait_until("outbox drained", lambda: bench.call(lambda: device.outbox_depth) == 0, 60)
            finally:
                gateway.stop()
            assert_exact(env.config.db_path, produced)
            assert len(produced.readings) == 30
    finally:
        broker.stop_mosquitto(proc)
