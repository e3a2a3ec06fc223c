"""The BLE intake end to end (docs/protocol.md §11): the real gateway (pipeline, store, acks) with bleak's
unmodified BlueZ backend on BlueZoo's hci0, and host-simulated devices (real signed bundles, the
firmware's outbox rules) as peripherals on their own adapters. Every test accounts exactly: each reading
a device produced is stored once, nothing else is, and every outbox ends empty (acks verified)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ble_bench import BleBench, bench_available, wait_until

from pinseal_devkit.ble_device import BleDevice, Faults
from pinseal_devkit.simdevice import SimDevice
from pinseal_gateway import broker
from pinseal_gateway.store import devices as device_store
from pinseal_protocol import ble_link as bl
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import keys, rejection
from pinseal_vboard.bluez.bus import devices_of, drop_connections, stop_discovery
from pinseal_vboard.bluez.peripheral import Advertisement

BLE_FAST = {
    "enabled": True,
    "adapter": "hci0",
    "max_connections": 2,
    "connect_timeout_s": 5.0,
    "idle_timeout_s": 1.5,
    "scan_watchdog_s": 3.0,
    "backoff_max_s": 2.0,
}
INTAKE_LOG = "pinseal_gateway.intake.ble"


@pytest.fixture(autouse=True)
def _bench_tools() -> None:
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
        self._lock = threading.Lock()

    def track(self, sim: SimDevice) -> SimDevice:
        sim.on_produced = self._record
        return sim

    def _record(self, device: SimDevice, seq: int, values: tuple) -> None:
        with self._lock:
            self.readings[(device.kid, seq)] = values[0]


def assert_exact(db_path: Path, produced: Produced) -> None:
    """Each produced reading stored once with its time, and nothing else (three records a reading)."""
    stored = rows(db_path, "SELECT kid, seq, time, count(*) FROM readings GROUP BY kid, seq, name")
    assert all(n == 1 for *_, n in stored), "a reading was stored twice"
    by_reading: dict[tuple[bytes, int], list[int]] = {}
    for kid, seq, time_s, _ in stored:
        by_reading.setdefault((kid, seq), []).append(time_s)
    assert {k: v[0] for k, v in by_reading.items()} == produced.readings
    assert all(len(v) == 3 for v in by_reading.values())


class Stack:
    """A gateway environment with [ble] on, its Mosquitto, a BlueZoo bench, and the devices on it."""

    def __init__(self, env, bench: BleBench) -> None:
        self.env = env
        self.bench = bench
        self.produced = Produced()
        self.gateway_public = keys.load_public_key(env.gateway_public)

    def device(
        self, *, faults: Faults | None = None, register: bool = True, per_bundle: int = 5
    ) -> BleDevice:
        sim = self.produced.track(SimDevice(password=device_store.new_mqtt_password(), per_bundle=per_bundle))
        if register:
            self.env.register(sim)
        return self.bench.device(sim, self.gateway_public, faults=faults)

    def seal(self, device: BleDevice, bundles: int) -> None:
        self.bench.run(device.seal(bundles))

    def drained(self, *devices: BleDevice, timeout: float = 60.0) -> None:
        wait_until(
            "every outbox drained",
            lambda: all(self.bench.call(lambda d=d: d.outbox_depth) == 0 for d in devices),
            timeout,
        )

    @property
    def db_path(self) -> Path:
        return self.env.config.db_path


@contextmanager
def ble_stack(make_gateway_env, tmp_path: Path, monkeypatch, devices: int, **ble: object) -> Iterator[Stack]:
    env = make_gateway_env(tmp_path, n_devices=0, ble={**BLE_FAST, **ble})
    proc = broker.start_mosquitto(env.broker_dir, env.port)
    try:
        with BleBench(tmp_path, devices) as bench:
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bench.address)
            yield Stack(env, bench)
    finally:
        broker.stop_mosquitto(proc)


def metric(gateway, name: str, **labels: str) -> float:
    value = gateway.ctx.metrics.registry.get_sample_value(f"pinseal_gateway_{name}_total", labels or None)
    return value or 0.0


def test_readings_survive_disconnects_on_both_sides(
    make_gateway_env, start_gateway, tmp_path, monkeypatch, caplog
) -> None:
    """(a) 320 readings from two devices, sealed in two waves; each device drops its link at seeded random
    points (while sending, after an ack) and the gateway's side drops links at seeded times too. Nothing
    is lost, nothing stored twice, every outbox ends empty."""
    caplog.set_level(logging.INFO, logger=INTAKE_LOG)
    caplog.set_level(logging.INFO, logger="pinseal.ble_device")
    with ble_stack(make_gateway_env, tmp_path, monkeypatch, 2) as stack:
        devices = [stack.device(faults=Faults(disconnect=0.006, seed=seed)) for seed in (11, 12)]
        gateway = start_gateway(stack.env.config)
        chaos_rng = random.Random(7)
        dropped: list[str] = []
        try:
            for _wave in range(2):
                for device in devices:
                    stack.seal(device, 16)
                for _ in range(4):  # the central's side: a link broken under a session, at seeded moments
                    stack.bench.run(asyncio.sleep(chaos_rng.uniform(0.2, 0.8)))
                    dropped += stack.bench.run(drop_connections(stack.bench.address, 0, chaos_rng))
                stack.drained(*devices, timeout=80)
        finally:
            gateway.stop()
        assert_exact(stack.db_path, stack.produced)
        assert len(stack.produced.readings) == 320
        assert sum(d.stats.disconnects for d in devices) > 0, "no device-side disconnect happened"
        assert dropped, "no gateway-side disconnect happened"
        assert metric(gateway, "ble_bundles_received") >= 64


@pytest.mark.parametrize("use_start_notify", [False, True], ids=["AcquireNotify", "StartNotify"])
def test_lost_and_reordered_notifications_are_asked_for_again(
    make_gateway_env, start_gateway, tmp_path, monkeypatch, use_start_notify: bool
) -> None:
    """(b, f) 5% of notifications dropped or reordered (seeded), through bleak's AcquireNotify and its
    StartNotify: the reassembler's resend requests recover every bundle, each stored once."""
    with ble_stack(make_gateway_env, tmp_path, monkeypatch, 1, use_start_notify=use_start_notify) as stack:
        device = stack.device(faults=Faults(drop=0.025, reorder=0.025, seed=5))
        gateway = start_gateway(stack.env.config)
        try:
            stack.seal(device, 20)
            stack.drained(device)
        finally:
            gateway.stop()
        assert_exact(stack.db_path, stack.produced)
        assert len(stack.produced.readings) == 100
        assert device.stats.dropped > 0 and device.stats.reordered > 0
        assert metric(gateway, "ble_resend_requests") > 0
        assert device.stats.resend_requests > 0


def test_three_devices_share_two_connection_slots(
    make_gateway_env, start_gateway, tmp_path, monkeypatch, caplog
) -> None:
    """(c) Three devices at once with max_connections = 2: all served, never more than two connected."""
    caplog.set_level(logging.DEBUG, logger=INTAKE_LOG)
    with ble_stack(make_gateway_env, tmp_path, monkeypatch, 3, max_connections=2) as stack:
        devices = [stack.device() for _ in range(3)]
        for device in devices:
            stack.seal(device, 8)
        gateway = start_gateway(stack.env.config)
        try:
            stack.drained(*devices)
        finally:
            gateway.stop()
        assert_exact(stack.db_path, stack.produced)
        in_use = [int(m.group(1)) for m in re.finditer(r"BLE slots: (\d+) of 2 in use", caplog.text)]
        assert in_use and max(in_use) == 2, in_use
        assert all(d.stats.connections >= 1 for d in devices)


def test_revoked_and_unregistered_devices_are_never_connected(
    make_gateway_env, start_gateway, tmp_path, monkeypatch, caplog
) -> None:
    """(d) A revoked and an unregistered device advertise the whole time a registered one delivers: BlueZ
    on their adapters never sees a connection, and each is logged once with the reason."""
    caplog.set_level(logging.INFO, logger=INTAKE_LOG)
    with ble_stack(make_gateway_env, tmp_path, monkeypatch, 3) as stack:
        good = stack.device()
        revoked = stack.device()
        stranger = stack.device(register=False)
        db = stack.env.db()
        try:
            db.run_sync(lambda conn: device_store.revoke_device(conn, revoked.sim.kid))
        finally:
            db.close()
        for device in (revoked, stranger, good):
            stack.seal(device, 3)
        gateway = start_gateway(stack.env.config)
        try:
            stack.drained(good)
            wait_until("both refused", lambda: metric(gateway, "ble_refused_devices", reason="revoked") == 1)
            wait_until(
                "both refused", lambda: metric(gateway, "ble_refused_devices", reason="unregistered") == 1
            )
        finally:
            gateway.stop()
        for device in (revoked, stranger):
            assert device.stats.connections == 0
            assert stack.bench.run(devices_of(stack.bench.address, device.adapter)) == {}
            assert device.outbox_depth == 3
        prefix = {d: d.sim.kid[:8].hex() for d in (revoked, stranger)}
        refusals = [r.getMessage() for r in caplog.records if "not connecting to" in r.getMessage()]
        assert len(refusals) == 2, refusals
        assert any(prefix[revoked] in m and "revoked" in m for m in refusals)
        assert any(prefix[stranger] in m and "no registered device" in m for m in refusals)
        assert {kid for (kid,) in rows(stack.db_path, "SELECT DISTINCT kid FROM readings")} == {good.sim.kid}


@pytest.mark.parametrize("how", ["discovery stopped", "BlueZ frozen"])
def test_watchdog_restarts_discovery_when_bluez_goes_quiet(
    make_gateway_env, start_gateway, tmp_path, monkeypatch, caplog, how: str
) -> None:
    """(e) BlueZ goes quiet: its discovery stopped behind the gateway's back while a device waits with new
    bundles, or the whole BlueZ(oo) process stopped (SIGSTOP: every D-Bus call to it hangs) past the
    watchdog's period, then resumed. The watchdog logs it and restarts discovery (its calls bounded in
    time), and the bundles arrive, each once. (BlueZoo reports a device once: a report that falls in
    the instant a restart has no scanner listening is lost to the bench, where real BlueZ would report
    the device again, so the frozen case seals after discovery is back.)"""
    caplog.set_level(logging.INFO, logger=INTAKE_LOG)
    with ble_stack(make_gateway_env, tmp_path, monkeypatch, 1) as stack:
        device = stack.device()
        gateway = start_gateway(stack.env.config)
        try:
            stack.seal(device, 3)
            stack.drained(device)
            wait_until("the device off the link", lambda: stack.bench.call(lambda: device.idle))
            if how == "discovery stopped":
                stack.bench.run(stop_discovery(stack.bench.address, 0))
                stack.seal(device, 4)  # advertised, but nobody discovers it until the watchdog acts
            else:
                restarts = metric(gateway, "ble_watchdog_restarts")
                os.kill(stack.bench.bus.bluezoo_pid, signal.SIGSTOP)
                try:  # the watchdog fires, and its calls to a BlueZ that does not answer are bounded
                    wait_until(
                        "the watchdog fired", lambda: metric(gateway, "ble_watchdog_restarts") > restarts
                    )
                finally:
                    os.kill(stack.bench.bus.bluezoo_pid, signal.SIGCONT)
                started = caplog.text.count("BLE discovery on hci0")
                wait_until("discovery back", lambda: caplog.text.count("BLE discovery on hci0") > started)
                stack.seal(device, 4)
            stack.drained(device)
        finally:
            gateway.stop()
        assert_exact(stack.db_path, stack.produced)
        assert len(stack.produced.readings) == 35
        assert metric(gateway, "ble_watchdog_restarts") >= 1
        assert "BLE watchdog: no advertisement on hci0" in caplog.text


def test_a_device_whose_info_names_another_key_is_refused(
    make_gateway_env, start_gateway, tmp_path, monkeypatch, caplog
) -> None:
    """An impostor advertising a registered device's key id prefix: connected to (the prefix matches),
    but its info's key id is not that device's, so it is disconnected before subscribing and nothing it
    holds is taken; the real device is served."""
    caplog.set_level(logging.INFO, logger=INTAKE_LOG)
    with ble_stack(make_gateway_env, tmp_path, monkeypatch, 2, backoff_max_s=1.0) as stack:
        real = stack.device()
        impostor = stack.device(register=False)
        real_prefix = real.sim.kid[: bl.PREFIX_BYTES]
        stack.bench.run(impostor.peripheral.advertise(False))
        impostor.peripheral.advertisement = Advertisement((bl.SERVICE_UUID,), {bl.SERVICE_UUID: real_prefix})
        stack.seal(impostor, 2)
        gateway = start_gateway(stack.env.config)
        try:
            wait_until(
                "the impostor refused", lambda: metric(gateway, "ble_connections", outcome="refused") >= 1
            )
            stack.seal(real, 2)
            stack.drained(real)
        finally:
            gateway.stop()
        assert impostor.outbox_depth == 2 and impostor.stats.transfers == 0
        assert {kid for (kid,) in rows(stack.db_path, "SELECT DISTINCT kid FROM readings")} == {real.sim.kid}
        assert (
            f"the info's key id {impostor.sim.kid.hex()} does not start with the advertised prefix"
            in caplog.text
        )


def test_a_bundle_delivered_over_mqtt_and_ble_is_stored_once(
    make_gateway_env, start_gateway, tmp_path, monkeypatch
) -> None:
    """The same bundle over both links: stored once (the store keys bundles by hash), acked on both."""
    with ble_stack(make_gateway_env, tmp_path, monkeypatch, 1) as stack:
        device = stack.device()
        gateway = start_gateway(stack.env.config)
        # the broker's test superuser stands in for the device's MQTT login (same topics, same bytes)
        peer = stack.env.superuser(subscribe=f"pinseal/v1/{device.sim.kid_hex}/ack")
        try:
            stack.seal(device, 3)
            first = stack.bench.call(lambda: next(iter(device.sim.outbox.values())).raw)
            peer.publish(device.sim.up_topic, first)
            _, reply = peer.get()
            ack = rejection.verify_reply(reply, stack.gateway_public, device.sim.kid)
            assert ack.bundle_hash == pbundle.bundle_hash(first)
            stack.drained(device)
        finally:
            peer.close()
            gateway.stop()
        assert_exact(stack.db_path, stack.produced)
        assert rows(stack.db_path, "SELECT count(*) FROM bundles")[0][0] == 3
        assert gateway.ctx.metrics.registry.get_sample_value("pinseal_gateway_duplicates_total") >= 1
