"""pinseal-qemu: one QEMU board (MPS2-AN385, Cortex-M3) on a pseudo-terminal, like pinseal-vboard.

    python -m pinseal_qemu.cli [--board qemu_mps2_an385] --flash build/qemu/flash.img [--icount]
    python -m pinseal_vboard.cli --board qemu_mps2_an385 --flash FILE     (the same, dispatched)

It prints `serial: /dev/pts/N` (the REPL, for mpremote and pinseal-provision) once QEMU has opened it, then
waits. SIGTERM/SIGINT stop it; SIGKILL of QEMU is a power cut (the flash file keeps what was written).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from pinseal_build.locations import BOARDS_DIR
from pinseal_qemu.board import QemuBoard, QemuError
from pinseal_qemu.image import IMAGES_DIR, REPO

DEFAULT_BOARD = "qemu_mps2_an385"


def image_for(board: str) -> Path:
    """The ELF a QEMU board profile names (its `emulator.image`); ValueError for a board QEMU does not run,
    so an ESP32 or Pico profile is never started on the Cortex-M3 machine by mistake."""
    path = Path(board) if board.endswith(".json") else BOARDS_DIR / board / "board.json"
    if not path.is_file():
        raise ValueError(f"unknown board {board!r} (no {path})")
    emulator = json.loads(path.read_text()).get("emulator") or {}
    if emulator.get("kind") != "qemu":
        raise ValueError(f"{board} is not a QEMU board (its profile has no emulator.kind 'qemu')")
    return IMAGES_DIR / str(emulator["image"]) / "firmware.elf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pinseal-qemu", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default=DEFAULT_BOARD, help="a QEMU board profile (boards/<id>)")
    parser.add_argument(
        "--flash",
        type=Path,
        default=REPO / "build" / "qemu" / "flash.img",
        help="the board's flash, a host file created if missing and kept between runs",
    )
    parser.add_argument(
        "--image", type=Path, help="the MicroPython ELF to run (default: the profile's image)"
    )
    parser.add_argument("--icount", action="store_true", help="count instructions (ticks_us = instr/1000)")
    args = parser.parse_args(argv)
    try:
        image = args.image or image_for(args.board)
    except ValueError as e:
        print(f"pinseal-qemu: {e}", file=sys.stderr)
        return 2
    args.flash.parent.mkdir(parents=True, exist_ok=True)
    board = QemuBoard(args.flash, image=image, icount=args.icount)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        serial = board.start()
    except QemuError as e:
        print(f"pinseal-qemu: {e}", file=sys.stderr)
        return 1
    print(f"serial: {serial}", flush=True)
    print(f"flash: {args.flash}", file=sys.stderr, flush=True)
    while not stop.wait(0.2):
        if board.proc is None or board.proc.poll() is not None:
            print("pinseal-qemu: qemu-system-arm exited", file=sys.stderr)
            return 1
    board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
