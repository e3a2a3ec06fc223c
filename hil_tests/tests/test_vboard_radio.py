"""The virtual board's `bluetooth` module holds a real stack's limits (hil_tests/vboard/mpy/bluetooth.py),
so firmware that passes on it does not fail on a board for them: checked from MicroPython on a running
board, with the air played by the test through the board host (no BlueZ needed for the limits)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pinseal_vboard import BoardOptions, VirtualBoard
from pinseal_vboard.board import mpremote

pytestmark = pytest.mark.vm

SCRIPT = """
import asyncio, bluetooth
ble = bluetooth.BLE()
def errno_of(fn):
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno
print("inactive", errno_of(lambda: ble.gap_advertise(100000, adv_data=b"\\x02\\x01\\x06")))
ble.active(True)
print("adv32", errno_of(lambda: ble.gap_advertise(100000, adv_data=bytes(32))))
print("resp32", errno_of(lambda: ble.gap_advertise(100000, adv_data=b"\\x02\\x01\\x06", resp_data=bytes(32))))
print("adv31", errno_of(lambda: ble.gap_advertise(100000, adv_data=b"\\x1e\\xff" + bytes(29))))
S = (bluetooth.UUID(0x180F), ((bluetooth.UUID(0x2A19), bluetooth.FLAG_READ | bluetooth.FLAG_NOTIFY),))
((h,),) = ble.gatts_register_services((S,))
print("notconn", errno_of(lambda: ble.gatts_notify(1, h, b"x")))
print("central", errno_of(lambda: ble.gap_scan(1000)), errno_of(lambda: ble.gattc_read(1, h)))
print("indicate", errno_of(lambda: ble.gatts_indicate(1, h)))
events = []
ble.irq(lambda event, data: events.append((event, data[0], data[1] if event == 21 else None)))
async def event(n):  # the n-th IRQ (from 1), once the air has sent it
    for _ in range(100):
        if len(events) >= n:
            break
        await asyncio.sleep_ms(50)
    return events[n - 1]
async def main():
    print("waiting for a central")
    print("connected", (await event(1))[:2])
    print("notify21", errno_of(lambda: ble.gatts_notify(1, h, bytes(21))))
    print("notify20", errno_of(lambda: ble.gatts_notify(1, h, bytes(20))))
    print("mtu", await event(2))
    print("notify100", errno_of(lambda: ble.gatts_notify(1, h, bytes(100))))
    print("mtu517", await event(3))
    print("notify513", errno_of(lambda: ble.gatts_notify(1, h, bytes(513))))
    print("notify512", errno_of(lambda: ble.gatts_notify(1, h, bytes(512))))
asyncio.run(main())
"""


def test_the_shim_refuses_what_a_stack_refuses(tmp_path: Path) -> None:
    options = BoardOptions(flash_dir=tmp_path / "flash", firmware=None)
    with VirtualBoard(options) as board:
        board.wait_for_output(b">>> ")

        def air() -> None:  # the central: connects once the script waits, later exchanges the MTU
            board.wait_for_output(b"waiting for a central", timeout_s=30)
            board.radio_event(ev="connect", conn=1, addr="0000000000aa")
            board.wait_for_output(b"notify20", timeout_s=30)
            time.sleep(0.2)
            board.radio_event(ev="mtu", conn=1, mtu=185)
            board.wait_for_output(b"notify100", timeout_s=30)
            time.sleep(0.2)
            board.radio_event(ev="mtu", conn=1, mtu=517)  # what BlueZ offers

        central = threading.Thread(target=air, daemon=True)
        central.start()
        out = mpremote(board.serial_path, "exec", SCRIPT, timeout=60).stdout
        central.join(10)
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines["inactive"] == "1"  # EPERM: the radio is off
    assert lines["adv32"] == "22" and lines["resp32"] == "22"  # over a legacy advertisement's 31 bytes
    assert lines["adv31"] == "0"
    assert lines["notconn"] == "107"  # ENOTCONN
    assert lines["central"] == "95 95" and lines["indicate"] == "95"  # EOPNOTSUPP: not modelled
    assert lines["connected"] == "(1, 1)"  # _IRQ_CENTRAL_CONNECT for connection 1
    assert lines["notify21"] == "22" and lines["notify20"] == "0"  # ATT MTU 23 - 3
    assert lines["mtu"] == "(21, 1, 185)"  # _IRQ_MTU_EXCHANGED
    assert lines["notify100"] == "0"
    # at MTU 517 a notification could be 514 bytes, but no attribute value is over 512 (ATT's bound)
    assert lines["mtu517"] == "(21, 1, 517)" and lines["notify513"] == "22" and lines["notify512"] == "0"
