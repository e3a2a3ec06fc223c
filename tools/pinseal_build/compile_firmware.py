"""Compile every MicroPython source with mpy-cross, as a board would load it (`make compile-firmware`).

    python -m pinseal_build.compile_firmware firmware [MORE_ROOTS ...] [--out build/mpy]

Each root is a folder of MicroPython sources laid out as on a board (the firmware's flash root, or the
provisioning agent's folder); its .mpy files land under --out with the same layout. mpy-cross must be the
boards' release (pinseal_build.mpy); every file that fails is listed with mpy-cross's message and the exit
status is 1, so one run shows everything that a board would refuse.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pinseal_build import mpy
from pinseal_build.locations import BUILD_DIR

DEFAULT_OUT = BUILD_DIR / "mpy"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "roots", nargs="+", type=Path, help="folders of MicroPython sources (each a board's flash root)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    roots: list[Path] = [root.resolve() for root in args.roots]
    for root in roots:
        if not root.is_dir():
            print(f"compile_firmware: no folder {root}", file=sys.stderr)
            return 2
    version = mpy.version()
    if mpy.MPY_CROSS_SERIES not in version:
        expected = f"{mpy.MPY_CROSS_SERIES}x"
        print(f"compile_firmware: mpy-cross is {version!r}, expected {expected}", file=sys.stderr)
        return 2
    compiled = failed = 0
    for root in roots:
        report = mpy.compile_tree(root, args.out)
        for rel, message in report.errors.items():
            print(f"FAIL {rel}\n{message}\n", file=sys.stderr)
        compiled += len(report.compiled)
        failed += len(report.errors)
    print(
        f"compile_firmware: {compiled} of {compiled + failed} files compiled with {version} into {args.out}"
        + (f"; {failed} failed" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
