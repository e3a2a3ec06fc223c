"""The emulated Pico's wiring (hil_tests/rp2040/board.mjs) on the committed stock image, no pinseal code.

What the firmware tests rely on, each checked where it could break: the flash file keeps a file closed before
a SIGKILL (a power cut) and the next power-on mounts it; the sensors answer at register level on the
profile's pins only; UART0 carries bytes to its own pty and nothing of the REPL; `pinseal-vboard --board
pico` hands over to the rp2040js launcher and prints the same `serial:`/`uart:` lines.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

from pinseal_provision.device import Board
from pinseal_rp2040 import Rp2040Board, Rp2040Options

TIMEOUT_S = 120


def run(board: Rp2040Board, code: str) -> str:
    with Board(board.serial_path, timeout_s=TIMEOUT_S) as repl:
        return repl.exec(code)


def test_a_file_closed_before_a_power_cut_is_there_at_the_next_power_on(tmp_path: Path) -> None:
    flash = tmp_path / "flash.img"
    board = Rp2040Board(Rp2040Options(flash=flash)).start()
    try:
        run(board, "f = open('/kept.txt', 'w'); f.write('written before the cut'); f.close()")
    finally:
        board.kill()  # SIGKILL: nothing flushed at exit
    board = Rp2040Board(Rp2040Options(flash=flash)).start()
    try:
        assert run(board, "print(open('/kept.txt').read())").strip() == "written before the cut"
    finally:
        board.stop()


def test_sensors_answer_on_the_profiles_i2c_pins_only(tmp_path: Path) -> None:
    sensors = tmp_path / "sensors.json"
    sensors.write_text(json.dumps({"bme280": {"t": 22}, "sht3x": {"t": 30, "h": 40}}))
    with Rp2040Board(Rp2040Options(flash=tmp_path / "flash.img", sensors=sensors)) as board:
        out = run(
            board,
            "from machine import I2C, Pin\n"
            "import time\n"
            # first I2C0 on pins where nothing is wired (pins once switched to I2C stay so until reset)
            "other = I2C(0, scl=Pin(21), sda=Pin(20))\n"
            "try:\n"
            "    other.readfrom_mem(0x76, 0xD0, 1)\n"
            "    print('elsewhere', 'answered')\n"
            "except OSError as e:\n"
            "    print('elsewhere', e.errno)\n"
            "i2c = I2C(0, scl=Pin(5), sda=Pin(4))\n"  # the pico profile's pins
            "print('id', i2c.readfrom_mem(0x76, 0xD0, 1).hex())\n"
            "i2c.writeto(0x44, b'\\x24\\x00')\n"  # SHT3x single shot, no clock stretching
            "try:\n"
            "    i2c.readfrom(0x44, 6)\n"
            "    print('early', 'read')\n"
            "except OSError as e:\n"
            "    print('early', e.errno)\n"
            "time.sleep_ms(20)\n"
            "print('sht', i2c.readfrom(0x44, 6).hex())\n",
        )
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["id"] == "60"  # the BME280's chip id
    assert lines["early"] == "5"  # EIO: an SHT3x still measuring does not acknowledge its read header
    raw = bytes.fromhex(lines["sht"])
    assert abs(-45 + 175 * int.from_bytes(raw[0:2], "big") / 65535 - 30) < 0.01
    assert lines["elsewhere"] == "5"


def test_uart0_has_its_own_line_and_the_repl_stays_off_it(tmp_path: Path) -> None:
    with Rp2040Board(Rp2040Options(flash=tmp_path / "flash.img")) as board:
        fd = os.open(board.uart_path, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            os.write(fd, b"\x03from host\n")  # a Ctrl-C on the UART must not reach the REPL
            out = run(
                board,
                "from machine import UART, Pin\nimport time\n"
                "u = UART(0, baudrate=115200, tx=Pin(0), rx=Pin(1))\n"
                "u.write(b'\\x00\\x03frame bytes')\n"
                "time.sleep_ms(50)\n"
                "print('got', u.read())\n",
            )
            seen = b""
            deadline = time.monotonic() + 10
            while not seen.endswith(b"frame bytes") and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.5)[0]:
                    seen += os.read(fd, 100)
        finally:
            os.close(fd)
    assert seen == b"\x00\x03frame bytes"
    # Bytes typed on the UART before the firmware opened it wait in the adapter, as in a USB-UART bridge.
    assert "got b'\\x03from host\\n'" in out
    assert b"frame bytes" not in board.output  # the raw REPL does not echo the code: only what it printed


def test_pinseal_vboard_board_pico_prints_the_serial_and_uart_lines(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinseal_vboard.cli", "--board", "pico", "--flash", str(tmp_path / "f.img")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        serial_line = proc.stdout.readline()
        uart_line = proc.stdout.readline()
        assert serial_line.startswith("serial: /dev/pts/"), serial_line + (
            proc.stderr.read() if proc.stderr else ""
        )
        assert uart_line.startswith("uart: /dev/pts/"), uart_line
        with Board(serial_line.split(": ", 1)[1].strip(), timeout_s=TIMEOUT_S) as repl:
            assert repl.system().platform == "rp2"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_a_watchdog_reset_stops_the_runner_and_says_why(tmp_path: Path) -> None:
    """Not modelled (rp2040js's chip reset erases the flash): the runner must stop, once, with the reason,
    rather than leave a test waiting on a board that can never answer."""
    busy = "import machine\nmachine.WDT(timeout=300)\nwhile True:\n    pass\n"
    board = Rp2040Board(Rp2040Options(flash=tmp_path / "flash.img")).start()
    try:
        subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", board.serial_path, "exec", "--no-follow", busy],
            capture_output=True,
            timeout=TIMEOUT_S,
            check=True,
        )
        deadline = time.monotonic() + 60
        while not any(e.get("ev") == "gone" for e in board.events) and time.monotonic() < deadline:
            time.sleep(0.2)
        exits = [e for e in board.events if e.get("ev") == "exit"]
        assert [e["reason"] for e in exits] == ["watchdog reset"]
        assert sum("watchdog reset" in e.get("text", "") for e in board.events) == 1
    finally:
        board.stop()


def test_the_launcher_refuses_a_board_that_is_not_an_rp2040(tmp_path: Path) -> None:
    """rp2040js runs the RPI_PICO image: an ESP32 or RP2350 profile is refused before anything starts,
    with the reason, not run as a Pico under another board's name."""
    for board in ("esp32_devkitc", "pico2_w"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pinseal_rp2040.cli",
                "--board",
                board,
                "--flash",
                str(tmp_path / "f.img"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, result
        assert "is not an RP2040 board" in result.stderr and "serial:" not in result.stdout, result
        assert not (tmp_path / "f.img").exists()
