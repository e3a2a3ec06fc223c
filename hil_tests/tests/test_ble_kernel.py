"""`make test-ble-kernel` (in `make test-long`): 200 readings from the unmodified firmware reach a gateway
running on the real Linux Bluetooth stack, exactly once, with bleak's StartNotify and with AcquireNotify.

The gateway, Mosquitto, bluetoothd and the kernel (hci_vhci) run in a QEMU guest (pinseal_hil.ble_kernel);
the board runs on the host, its radio a bumble host stack whose emulated controller is linked to the one
the guest's kernel drives. TCG is slow (~80 notifications/s): this is no test for `make test`.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from pinseal_devkit.devices import start_device
from pinseal_devkit.stack import Stack
from pinseal_hil.ble_kernel.guest import Guest
from pinseal_vboard import BoardHost
from pinseal_vboard.radio_bumble import BumbleRadio
from pinseal_vboard.vm import REPO

pytestmark = [pytest.mark.long, pytest.mark.vm]

READINGS = 200
RUNS = REPO / "build" / "ble-kernel" / "runs"  # not under /tmp: the guest mounts a tmpfs there


def stored_seqs(db_path: Path, kid: bytes) -> list[int]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT seq, last_seq FROM bundles WHERE kid = ? ORDER BY seq", (kid,)).fetchall()
    return [s for first, last in rows for s in range(first, last + 1)]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("use_start_notify", [True, False], ids=["StartNotify", "AcquireNotify"])
def test_readings_reach_a_gateway_on_the_kernel_bluetooth_stack_exactly_once(use_start_notify: bool) -> None:
    run = RUNS / ("start-notify" if use_start_notify else "acquire-notify")
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    stack = Stack(run / "stack", batch_interval_s=5)
    stack.extra_config = {
        "ble": {
            "enabled": True,
            "use_start_notify": use_start_notify,
            "connect_timeout_s": 30.0,
            "idle_timeout_s": 10.0,
        }
    }
    stack.prepare()
    stack.write_gateway_config()
    host = BoardHost()
    board, info = start_device(
        host,
        stack,
        run / "flash",
        link={"transports": ["ble"]},
        wifi={"ssid": ""},
        bundling={"readings": 4, "max_wait_s": 10},
        # the run's whole backlog: the guest's first connection comes a minute after the board's first
        # reading, and the default 32 KB outbox would evict the oldest (counted, by design; not tested here)
        outbox={"capacity_bytes": 262144},
    )
    broker_dir = stack.workdir / "broker"
    stack.gateway_cli("broker-config", "--out", str(broker_dir))
    venv = Path(__import__("sys").executable).parent
    in_guest = REPO / "hil_tests" / "pinseal_hil" / "ble_kernel" / "in_guest.py"
    (run / "guest.sh").write_text(
        f"exec {venv / 'python'} {in_guest} {run} {stack.gateway_config} {broker_dir}\n"
    )
    (run / "guest.sh").chmod(0o755)
    radio = None
    guest = Guest(run, "guest.sh").start()
    try:
        radio = BumbleRadio(board, f"unix:{guest.hci_socket}")
        radio.run(radio.start(), 60)
        (run / "radio-ready").touch()
        assert guest.wait_output("in-guest: started gateway", 120), guest.console_text()[-3000:]
        board.reset()
        board.clock(speed=5)
        last = READINGS - 1
        board.wait_for_output(rf"stored through seq (\d*[2-9]\d\d|{last})\b".encode(), timeout_s=600)
        board.clock(speed=0.001)  # no more readings while the guest stops: the count is the one above
    finally:
        guest.stop()
        if radio is not None:
            radio.close()
        board.stop()
        host.close()
    assert (run / "guest-done").read_text() == "0", guest.console_text()[-3000:]
    seqs = stored_seqs(run / "gateway.sqlite", bytes.fromhex(info["key_id"]))  # copied out by the guest
    assert len(seqs) >= READINGS and len(seqs) == len(set(seqs)), "a reading stored twice"
    assert seqs == list(range(len(seqs))), "a reading missing"
    log = (run / "guest-logs" / "gateway.log").read_text()
    assert re.search(r"BLE .* connected: device " + info["key_id"], log)
