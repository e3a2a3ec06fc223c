"""pinseal-vboard: one virtual board on a pseudo-terminal, for mpremote, the provisioning tool or a person.

It prints `serial: /dev/pts/N` (the REPL) and `uart: /dev/pts/M` (the wired UART, for a gateway's serial
intake) once the lines are live, unbuffered, then relays the board's
harness log to stderr until it is stopped. SIGTERM/SIGINT stop it cleanly; SIGKILL stops the VM at once, as
pulling the power does (the Node process dies with this one).

A board whose profile names an emulator (`emulator.kind` "qemu": qemu_mps2_an385) is not a MicroPython VM:
this command becomes `python -m pinseal_qemu.cli` for it (same process, so SIGKILL is still the power cut),
with --flash a host file instead of a folder. The `pico` (RP2040, no radio) runs on rp2040js, the engine
Wokwi uses, with the real RP2 port of MicroPython: this command becomes `python -m pinseal_rp2040.cli`. On
both, the firmware is not copied there: `pinseal-provision deploy` puts it on, as on a real board.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

from pinseal_vboard.board import BoardError, BoardOptions, VirtualBoard
from pinseal_vboard.profiles import load_profile
from pinseal_vboard.vm import FIRMWARE_DIR, REPO

# Boards that run on emulated silicon rather than in the MicroPython VM: `--board pico` is the RP2 image on
# rp2040js (hil_tests/pinseal_rp2040), started as its own command (a process, not an import: that package
# builds on this one).
RP2040JS_BOARDS = {"pico"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pinseal-vboard", description=__doc__)
    parser.add_argument(
        "--board", default="esp32_devkitc", help="board id (boards/<id>) or a board.json path"
    )
    parser.add_argument(
        "--flash",
        type=Path,
        help="the board's filesystem: a folder, created if missing and kept between runs "
        "(default build/vboard/<board>/flash)",
    )
    parser.add_argument(
        "--firmware",
        default=str(FIRMWARE_DIR),
        help="folder copied onto the flash at start (default: the repository's firmware/); 'none' leaves the "
        "flash as it is (a blank MicroPython board when the folder is new)",
    )
    parser.add_argument(
        "--sensors", type=Path, help="sensors script (values and faults), see docs/virtual-board.md"
    )
    parser.add_argument(
        "--net", type=Path, help="network settings (Wi-Fi, faults), see docs/virtual-board.md"
    )
    parser.add_argument("--ram", type=int, help="override the profile's free heap (bytes)")
    parser.add_argument(
        "--hang-s", type=float, default=20.0, help="reset a VM stuck this long in synchronous code"
    )
    parser.add_argument("--rtc", choices=("unset", "host"), default="unset", help="the RTC after power-on")
    parser.add_argument("--echo", action="store_true", help="also copy the board's serial output to stdout")
    parser.add_argument(
        "--icount",
        action="store_true",
        help="QEMU boards: count instructions (ticks_us = instructions / 1000)",
    )
    return parser.parse_args(argv)


def emulated_by(board: str) -> str | None:
    """The emulator a board profile names (`emulator.kind`), None for a board the VM runs."""
    try:
        profile = load_profile(board)
    except ValueError:
        return None  # VirtualBoard reports the unknown board in its own words
    return (profile.get("emulator") or {}).get("kind")


def exec_qemu(args: argparse.Namespace) -> NoReturn:
    """Become the QEMU launcher (exec: one process, so SIGKILL of this pid cuts the board's power)."""
    flash = args.flash or REPO / "build" / "qemu" / Path(args.board).stem / "flash.img"
    argv = [sys.executable, "-m", "pinseal_qemu.cli", "--board", args.board, "--flash", str(flash)]
    if args.icount:
        argv.append("--icount")
    sys.stdout.flush()
    os.execv(sys.executable, argv)


def run_on_rp2040js(args: argparse.Namespace) -> int:
    """Hand over to `python -m pinseal_rp2040.cli`: the same `serial:`/`uart:` lines, the flash a file.
    The firmware is not copied on: `pinseal-provision deploy` puts it there, as on a real Pico."""
    cmd = [sys.executable, "-m", "pinseal_rp2040.cli", "--board", args.board]
    if args.flash is not None:
        cmd += ["--flash", str(args.flash)]
    if args.sensors is not None:
        cmd += ["--sensors", str(args.sensors)]
    if args.echo:
        cmd.append("--echo")
    sys.stdout.flush()
    os.execv(sys.executable, cmd)
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if emulated_by(args.board) == "qemu":
        exec_qemu(args)
    if Path(args.board).stem in RP2040JS_BOARDS:
        return run_on_rp2040js(args)
    firmware = None if args.firmware == "none" else Path(args.firmware)
    flash = args.flash or REPO / "build" / "vboard" / Path(args.board).stem / "flash"
    options = BoardOptions(
        board=args.board,
        flash_dir=flash,
        firmware=firmware,
        sensors=args.sensors,
        net=args.net,
        ram_bytes=args.ram,
        hang_s=args.hang_s,
        rtc=args.rtc,
    )
    try:
        board = VirtualBoard(options)
    except ValueError as e:
        print(f"pinseal-vboard: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        board.start()
    except BoardError as e:
        print(f"pinseal-vboard: {e}", file=sys.stderr)
        board.stop()
        return 1
    print(f"serial: {board.serial_path}", flush=True)
    print(f"uart: {board.uart_path}", flush=True)
    print(f"flash: {board.flash_dir}", file=sys.stderr, flush=True)
    printed_logs = 0
    printed_out = 0
    while not stop.wait(0.2):
        for line in board.logs[printed_logs:]:
            print(f"vboard: {line}", file=sys.stderr, flush=True)
        printed_logs = len(board.logs)
        if args.echo:
            data = bytes(board.output[printed_out:])
            printed_out += len(data)
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        if board.state == "off" and board.host.errors:
            print(f"pinseal-vboard: the board host stopped: {board.host.errors[-1]}", file=sys.stderr)
            return 1
    board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
