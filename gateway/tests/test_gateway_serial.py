"""The gateway's serial intake (docs/protocol.md §10, docs/transports.md): host-simulated wired devices on
pseudo-terminals against a real gateway, through line damage, unplugs and hostile frames."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_devkit.simdevice import SimDevice
from pinseal_devkit.wired_device import LineDamage, WiredDevice
from pinseal_gateway.config import ConfigError, SerialSection, from_mapping
from pinseal_gateway.intake.serial import SerialIngest
from pinseal_gateway.link import Message
from pinseal_gateway.metrics import Metrics
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import serial_frames as sf

pytestmark = pytest.mark.broker


def stored(env, kid: bytes) -> list[bytes]:
    with sqlite3.connect(env.config.db_path) as db:
        return [h for (h,) in db.execute("SELECT hash FROM bundles WHERE kid = ? ORDER BY seq", (kid,))]


def rejections(env) -> list[tuple[bytes, str]]:
    with sqlite3.connect(env.config.db_path) as db:
        return db.execute("SELECT kid, reason FROM rejections").fetchall()


def metric(gateway, name: str, **labels: str) -> float:
    value = gateway.ctx.metrics.registry.get_sample_value(f"pinseal_gateway_{name}", labels or None)
    return 0 if value is None else value


def serial_env(make_gateway_env, tmp_path: Path, n: int):
    paths = [tmp_path / f"ttyPINSEAL{i}" for i in range(n)]
    env = make_gateway_env(tmp_path, n_devices=n, serial={"ports": [str(p) for p in paths], "reopen_s": 0.2})
    return env, paths


@pytest.fixture
def broker_for():
    from pinseal_gateway import broker

    procs = []

    def start(env):
        procs.append(broker.start_mosquitto(env.broker_dir, env.port))

    yield start
    for proc in procs:
        broker.stop_mosquitto(proc)


def test_wired_devices_deliver_exactly_once_through_a_damaged_line(
    make_gateway_env, start_gateway, broker_for, tmp_path
):
    env, paths = serial_env(make_gateway_env, tmp_path, 2)
    broker_for(env)
    wires = [
        WiredDevice(d, env.gateway_public, p, LineDamage(0.001, seed=i), LineDamage(0.001, seed=100 + i))
        for i, (d, p) in enumerate(zip(env.devices, paths, strict=False))
    ]
    gateway = start_gateway(env.config)
    try:
        sealed = [w.seal(25) for w in wires]
        for w in wires:
            assert w.drain(120, resend_after_s=0.5), f"{len(w.outbox)} bundles never acked"
        for w, raws in zip(wires, sealed, strict=True):
            assert stored(env, w.device.kid) == [pbundle.bundle_hash(r) for r in raws]
            assert w.acked == {pbundle.bundle_hash(r) for r in raws}
        damaged_up = metric(gateway, "serial_frames_dropped_total", reason="crc") + metric(
            gateway, "serial_frames_dropped_total", reason="cobs"
        )
        assert damaged_up > 0 and sum(sum(w.dropped.values()) for w in wires) > 0, "no frame was damaged"
        assert rejections(env) == []
    finally:
        gateway.stop()
        for w in wires:
            w.close()


def test_a_device_unplugged_and_plugged_in_again_loses_nothing(
    make_gateway_env, start_gateway, broker_for, tmp_path, caplog
):
    env, paths = serial_env(make_gateway_env, tmp_path, 1)
    broker_for(env)
    wire = WiredDevice(env.devices[0], env.gateway_public, paths[0])
    gateway = start_gateway(env.config)
    caplog.set_level(logging.INFO, logger="pinseal_gateway.intake.serial")
    try:
        first = wire.seal(10)
        assert wire.drain(30)
        wire.unplug()
        second = wire.seal(5)  # taken while unplugged: they wait in the outbox
        time.sleep(1.0)
        assert "is not available" in caplog.text
        assert metric(gateway, "serial_port_open", port=str(paths[0])) == 0
        wire.plug()
        assert wire.drain(30)
        assert stored(env, wire.device.kid) == [pbundle.bundle_hash(r) for r in first + second]
        assert metric(gateway, "serial_port_open", port=str(paths[0])) == 1
    finally:
        gateway.stop()
        wire.close()


def test_a_port_not_there_yet_is_read_once_it_appears(make_gateway_env, start_gateway, broker_for, tmp_path):
    env, paths = serial_env(make_gateway_env, tmp_path, 1)
    broker_for(env)
    gateway = start_gateway(env.config)  # the path does not exist: the gateway runs and waits for it
    try:
        time.sleep(0.5)
        wire = WiredDevice(env.devices[0], env.gateway_public, paths[0])
        try:
            raws = wire.seal(3)
            assert wire.drain(30)
            assert stored(env, wire.device.kid) == [pbundle.bundle_hash(r) for r in raws]
        finally:
            wire.close()
    finally:
        gateway.stop()


def test_forged_and_unregistered_bundles_on_a_line_are_rejected_and_never_acked(
    make_gateway_env, start_gateway, broker_for, new_device, tmp_path
):
    env, paths = serial_env(make_gateway_env, tmp_path, 1)
    broker_for(env)
    victim = env.devices[0]
    wire = WiredDevice(victim, env.gateway_public, paths[0])
    stranger = new_device()  # never registered
    gateway = start_gateway(env.config)
    try:
        deadline = time.monotonic() + 10
        while not wire.linked and time.monotonic() < deadline:
            time.sleep(0.05)
        good = victim.seal(advance=False)
        forged = good[:-1] + bytes([good[-1] ^ 1])  # the victim's key id, a signature that does not verify
        wire.write_frame(sf.KIND_BUNDLE, forged)
        wire.write_frame(sf.KIND_BUNDLE, stranger.seal())
        wire.write_frame(sf.KIND_BUNDLE, b"\xa0" * 40)  # CRC good, not a COSE_Sign1
        deadline = time.monotonic() + 10
        while len(rejections(env)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        reasons = sorted(reason for _, reason in rejections(env))
        assert reasons == ["bad_signature", "unknown_device"]
        assert metric(gateway, "serial_frames_dropped_total", reason="undecodable") == 1
        assert stored(env, victim.kid) == [] and wire.acked == set()
    finally:
        gateway.stop()
        wire.close()


# -- the intake's framing, without a line: whatever bytes come, only whole frames' bundles go on --------


class RecordingInbox:
    """The pipeline's Inbox interface, recording: what the intake hands on is the subject here."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def has_room(self) -> bool:
        return True

    def on_room(self, callback) -> None:  # pragma: no cover - never full
        pass

    def submit_nowait(self, message: Message) -> None:
        self.messages.append(message)


_DEVICE = SimDevice()
_BUNDLES = [_DEVICE.seal() for _ in range(3)]


@settings(max_examples=200, deadline=None)
@given(
    junk=st.lists(st.binary(max_size=300), min_size=3, max_size=3),
    cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=8),
)
def test_line_garbage_never_becomes_a_submitted_bundle(junk, cuts) -> None:
    stream = bytearray()
    for noise, raw in zip(junk, _BUNDLES, strict=True):
        stream += noise + sf.encode(sf.KIND_BUNDLE, raw)
    inbox = RecordingInbox()
    ingest = SerialIngest(SerialSection(ports=("x",)), inbox, Metrics())
    ingest._readers["x"] = sf.FrameReader()
    pos = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        ingest._bytes_in("x", bytes(stream[pos:cut]))  # the line's bytes in chunks of any size
        pos = max(pos, cut)
    got = [m.payload for m in inbox.messages]
    assert all(m.topic == f"pinseal/v1/{_DEVICE.kid_hex}/up" for m in inbox.messages)
    # only bundles that were sent, each once, in order: garbage never turns into (or duplicates) a bundle
    assert got == [raw for raw in _BUNDLES if raw in got]
    # and a frame after clean noise (none, or noise ending in the delimiter) always comes through
    for noise, raw in zip(junk, _BUNDLES, strict=True):
        if not noise or noise.endswith(b"\x00"):
            assert raw in got


def test_serial_config_is_checked() -> None:
    config = from_mapping(
        {"serial": {"ports": ["/dev/ttyUSB0", "rfc2217://mast:4000"], "usb_ids": ["10c4:ea60"]}}
    )
    assert config.serial.ports == ("/dev/ttyUSB0", "rfc2217://mast:4000")
    for bad, needle in (
        ({"ports": "/dev/ttyUSB0"}, "list of strings"),
        ({"usb_ids": ["10c4ea60"]}, "vid:pid"),
        ({"usb_ids": ["zzzz:0001"]}, "vid:pid"),
        ({"baudrate": 0}, "baudrate"),
        ({"ports": [" "]}, "empty"),
    ):
        with pytest.raises(ConfigError, match=needle):
            from_mapping({"serial": bad})


def test_a_port_hands_on_what_arrived_without_waiting_for_its_read_timeout(monkeypatch, tmp_path) -> None:
    """Found by `make bench-transports`: the reader asked pyserial for 4,096 bytes, which waits out the read
    timeout unless that many come, so every ack's round trip took the timeout (serial ran at 40 bundles/s,
    776 after the fix). With a timeout of a minute, a few bytes must still come through at once."""
    import os
    import queue
    import tty

    from pinseal_gateway.intake import serial_port

    monkeypatch.setattr(serial_port, "READ_TIMEOUT_S", 60.0)
    master, slave = os.openpty()
    tty.setraw(slave)
    got: queue.Queue[bytes] = queue.Queue()
    port = serial_port.SerialPort(os.ttyname(slave), 115200, 0.2, got.put, lambda is_open, why: None)
    port.start()
    try:
        deadline = time.monotonic() + 10
        while not port.is_open and time.monotonic() < deadline:
            time.sleep(0.01)
        os.write(master, b"\x01\x02\x03")
        received = b""
        while len(received) < 3:
            received += got.get(timeout=20)
        assert received == b"\x01\x02\x03"
    finally:
        port.stop()
        os.close(master)
        os.close(slave)
