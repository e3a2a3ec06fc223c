"""The BLE link end to end: the unmodified firmware on a virtual board is a GATT peripheral on an emulated
BlueZ adapter (its `bluetooth` calls bridged by pinseal_vboard.radio to BlueZoo on a private D-Bus bus), and
the gateway's unmodified bleak intake scans, connects, confirms the key id, takes the bundles and writes the
acks back (docs/protocol.md §11, docs/transports.md). Readings are counted in the gateway's store."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pinseal_devkit.devices import start_device
from pinseal_devkit.stack import Stack, wait_until
from pinseal_vboard import BoardHost, VirtualBoard
from pinseal_vboard.bluez.bus import BluezBus, drop_connections
from pinseal_vboard.radio_bluez import BluezRadio

pytestmark = [pytest.mark.vm, pytest.mark.broker]

BLE_ONLY = {"link": {"transports": ["ble"]}, "wifi": {"ssid": ""}}
GATEWAY_BLE = {
    "enabled": True,
    "adapter": "hci0",
    "max_connections": 2,
    "connect_timeout_s": 10.0,
    "idle_timeout_s": 5.0,
    "scan_watchdog_s": 30.0,
    "backoff_max_s": 2.0,
}


@dataclass
class BleRig:
    stack: Stack
    boards: list[VirtualBoard]
    key_ids: list[str]
    bridges: list[BluezRadio]
    bus: BluezBus

    def stored_seqs(self, i: int = 0) -> list[int]:
        with sqlite3.connect(self.stack.workdir / "gateway" / "gateway.sqlite", timeout=10) as db:
            rows = db.execute(
                "SELECT seq, last_seq FROM bundles WHERE kid = ? ORDER BY seq",
                (bytes.fromhex(self.key_ids[i]),),
            ).fetchall()
        return [s for first, last in rows for s in range(first, last + 1)]

    def metric(self, name: str) -> float:
        return self.stack.gateway_metric(name)

    def wait_readings(self, n: int, i: int = 0, timeout_s: float = 120) -> list[int]:
        if not wait_until(lambda: len(set(self.stored_seqs(i))) >= n, timeout_s, 0.3):
            log = (self.stack.logs / "gateway.log").read_text(errors="replace")[-2500:]
            raise AssertionError(
                f"only {len(set(self.stored_seqs(i)))} of {n} readings stored; board output:\n"
                f"{self.boards[i].text()[-1500:]}\nradio errors: {self.bridges[i].errors}\n"
                f"gateway log:\n{log}"
            )
        return self.stored_seqs(i)


@contextmanager
def ble_rig(
    tmp_path: Path,
    boards: int = 1,
    lose: float = 0.0,
    revoked: int = 0,
    exchange_mtu: bool = True,
    **config: Any,
) -> Iterator[BleRig]:
    """`boards` boards on adapters hci1.., the gateway on hci0; the last `revoked` of them revoked before
    the gateway starts; `lose`: the share of notifications the air loses or reorders (seeded);
    exchange_mtu=False: links stay at MTU 23, as with a central that never exchanges. A machine without
    dbus-daemon or BlueZoo fails here with what to install (BenchMissing), never skips."""
    bus = BluezBus(boards + 1, log_path=tmp_path / "bluezoo.log").start()
    stack = Stack(tmp_path / "stack", batch_interval_s=1)
    stack.extra_config = {"ble": GATEWAY_BLE}
    stack.gateway_env = dict(bus.environ)
    stack.prepare()
    host = BoardHost()
    made: list[VirtualBoard] = []
    bridges: list[BluezRadio] = []
    kids = []
    try:
        for i in range(boards):
            vb, info = start_device(host, stack, tmp_path / f"flash{i}", **{**BLE_ONLY, **config})
            made.append(vb)
            kids.append(info["key_id"])
            bridges.append(
                BluezRadio(vb, bus.address, i + 1, lose=lose, seed=15 + i, exchange_mtu=exchange_mtu)
            )
        for kid in kids[boards - revoked :]:
            stack.gateway_cli("devices", "revoke", kid)
        stack.start()
        for vb in made:
            vb.reset()
            vb.wait_for_output(b"pinseal: device ")
        yield BleRig(stack, made, kids, bridges, bus)
    finally:
        for bridge in bridges:
            bridge.close()
        for vb in made:
            vb.stop()
        host.close()
        stack.stop()
        bus.stop()


def contiguous_once(seqs: list[int]) -> bool:
    return len(seqs) == len(set(seqs)) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_a_thousand_readings_through_links_broken_from_either_side(tmp_path: Path) -> None:
    """1,000 readings (16 a bundle, the board's clock at 14x: about as fast as it seals) while the link is
    broken at seeded random moments, from the board's side (out of range, its radio reset) or the
    gateway's: each stored once."""
    rng = random.Random(15)
    # an outbox that holds the whole run: on a loaded machine the backlog grows while links are down, and
    # the default 32 KB outbox would evict its oldest readings (counted, by design) - not what is tested
    with ble_rig(
        tmp_path, bundling={"readings": 16, "max_wait_s": 30}, outbox={"capacity_bytes": 262144}
    ) as r:
        r.boards[0].clock(speed=14)  # about what it seals: the readings do not pile up unsealed
        deadline = time.monotonic() + 360  # ~60 s here; a loaded CI machine takes longer
        drops = 0
        while len(set(r.stored_seqs())) < 1000 and time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 5.0))
            if rng.random() < 0.5:
                r.bridges[0].drop()
            else:
                asyncio.run(drop_connections(r.bus.address, 0))
            drops += 1
        seqs = r.wait_readings(1000, timeout_s=60)
        assert contiguous_once(seqs), f"missing {sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))[:20]}"
        assert drops >= 10 and r.bridges[0].errors == []


def test_lost_and_reordered_notifications_cost_resend_requests_not_readings(tmp_path: Path) -> None:
    """A seeded 5 % of the board's notifications lost or delayed past the next: the gateway asks for the
    missing chunks, the board resends them, every reading is stored once. At MTU 23 (no exchange), where a
    bundle takes dozens of notifications."""
    with ble_rig(tmp_path, lose=0.05, exchange_mtu=False, bundling={"readings": 4, "max_wait_s": 10}) as r:
        r.boards[0].clock(speed=4)  # 4 readings a second: a bundle a second, not one in four
        seqs = r.wait_readings(24)
        assert contiguous_once(seqs)
        bridge = r.bridges[0]
        assert bridge.notifications_lost > 0 and bridge.notifications_reordered > 0
        assert r.metric("pinseal_gateway_ble_resend_requests_total") > 0
        assert bridge.errors == []


def test_several_boards_at_once_and_a_revoked_one_never_connected(tmp_path: Path) -> None:
    with ble_rig(tmp_path, boards=3, revoked=1, bundling={"readings": 4, "max_wait_s": 10}) as r:
        for board in r.boards:
            board.clock(speed=4)
        for i in (0, 1):
            assert contiguous_once(r.wait_readings(12, i=i))
        revoked = r.bridges[2]
        assert revoked.peripheral is not None and revoked.peripheral.connections == 0
        assert r.stored_seqs(2) == []
        log = (r.stack.logs / "gateway.log").read_text()
        assert re.search(r"BLE: not connecting to .* the device is revoked", log), log[-2000:]
