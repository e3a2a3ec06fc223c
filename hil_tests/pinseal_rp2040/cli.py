"""pinseal-rp2040: an emulated Raspberry Pi Pico (rp2040js) on two pseudo-terminals, like pinseal-vboard.

    python -m pinseal_rp2040.cli [--board pico] [--flash build/rp2040/pico/flash.img] [--sensors FILE]

It prints `serial: /dev/pts/N` (the REPL on USB CDC, for mpremote and pinseal-provision) and
`uart: /dev/pts/M` (UART0 on GP0/GP1, for a gateway's [serial] ports) once both lines are live, then waits.
SIGTERM/SIGINT stop it; a SIGKILL of its Node process is a power cut (the flash file holds every completed
erase and program).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from pinseal_rp2040.board import REPO, UF2, Rp2040Board, Rp2040Error, Rp2040Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pinseal-rp2040", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="pico", help="board id (boards/<id>) or a board.json path")
    parser.add_argument(
        "--flash",
        type=Path,
        help="the board's 2 MB flash, a host file created blank if missing and kept between runs "
        "(default build/rp2040/<board>/flash.img)",
    )
    parser.add_argument(
        "--uf2", type=Path, default=UF2, help="the MicroPython image (written over the flash)"
    )
    parser.add_argument("--sensors", type=Path, help="sensors script, see docs/virtual-board.md")
    parser.add_argument("--echo", action="store_true", help="also copy the REPL's output to stdout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flash = args.flash or REPO / "build" / "rp2040" / Path(args.board).stem / "flash.img"
    board = Rp2040Board(Rp2040Options(flash=flash, board=args.board, uf2=args.uf2, sensors=args.sensors))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        board.start()
    except (Rp2040Error, ValueError) as e:
        print(f"pinseal-rp2040: {e}", file=sys.stderr)
        board.stop()
        return 1
    print(f"serial: {board.serial_path}", flush=True)
    print(f"uart: {board.uart_path}", flush=True)
    print(f"flash: {flash}", file=sys.stderr, flush=True)
    printed = 0
    while not stop.wait(0.2):
        if args.echo:
            data = bytes(board.output[printed:])
            printed += len(data)
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        if board.proc is None or board.proc.poll() is not None:
            print("pinseal-rp2040: the rp2040js runner exited", file=sys.stderr)
            board.stop()
            return 1
    board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
