"""Put the firmware on a board: compile with mpy-cross, copy only what differs, verify, and stay resumable.

- **Compiled, except the entry points**: every module becomes .mpy (smaller on flash, no compile at boot, a
  board with 100 KB of heap cannot always compile the bigger modules itself); main.py and boot.py stay .py
  because MicroPython only runs those names at boot.
- **Only what differs**: the device hashes its files (SHA-256 over what it really stored, one command for many
  files); files with the same hash are left alone, so a rerun after an interruption copies only the rest.
- **Each file atomically**: written under a temporary name and renamed (device.Board.write_file), and the
  hash of the renamed file is checked against the host's. Library modules go first, main.py/boot.py last,
  so a cut mid-deploy never leaves a new main.py importing old modules that lack what it needs.
- **No shadows**: MicroPython imports `x.py` before `x.mpy`, so a stale `x.py` (from a source copy such as
  `mpremote cp -r firmware/`) would hide the new `x.mpy`; it is removed, and so are our temporary files left
  by a cut.
- The board profile goes along as /board.json: the firmware reads its sensors and pins from it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinseal_build import firmware_files, mpy
from pinseal_build.mpy import MPY_VERSION
from pinseal_provision import versions
from pinseal_provision.device import TMP_SUFFIX, Board
from pinseal_provision.errors import BadInput, DeviceError, VersionMismatch
from pinseal_provision.profiles import FIRMWARE_DIR, profile_path, required_micropython

ENTRY_POINTS = firmware_files.ENTRY_POINTS


@dataclass(frozen=True)
class DeployFile:
    """One file as it must be on the board."""

    dest: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class DeployReport:
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.copied)} file(s) copied, {len(self.unchanged)} unchanged" + (
            f", {len(self.removed)} stale removed" if self.removed else ""
        )


def build(
    profile: dict[str, Any], firmware_dir: Path = FIRMWARE_DIR, compile_mpy: bool = True
) -> list[DeployFile]:
    """The files a board of this profile gets: compiled modules, entry points, /board.json."""
    if not firmware_dir.is_dir():
        raise BadInput(f"no firmware folder {firmware_dir}")
    files: list[DeployFile] = []
    arch = mpy.MPY_ARCH.get(str(profile.get("mcu")))
    opt = mpy.opt_level(profile)
    with tempfile.TemporaryDirectory(prefix="pinseal-mpy-") as tmp:
        for src in firmware_files.sources(firmware_dir):
            rel = src.relative_to(firmware_dir).as_posix()
            if not compile_mpy or firmware_files.is_entry_point(rel):
                files.append(DeployFile("/" + rel, src.read_bytes()))
                continue
            out = Path(tmp) / (rel[:-3] + ".mpy")
            try:
                mpy.compile_file(src, out, rel, arch, opt)
            except mpy.MpyCrossError as exc:
                raise BadInput(f"mpy-cross failed on {rel}: {exc}") from exc
            files.append(DeployFile("/" + rel[:-3] + ".mpy", out.read_bytes()))
    files.append(DeployFile("/board.json", profile_path(str(profile["id"])).read_bytes()))
    # library first, entry points last (see the module docstring)
    files.sort(key=lambda f: (f.dest.lstrip("/") in ENTRY_POINTS, f.dest))
    return files


def check_micropython(board: Board, profile: dict[str, Any], ignore_version: bool = False) -> str:
    """The board's MicroPython must be at least the profile's minimum (always: older releases lack what the
    firmware uses), load the .mpy format the firmware is compiled for, and be the profile's release (same
    major.minor: the firmware was tested on it; `ignore_version` accepts a newer one). Returns what it
    checked, for the step report."""
    system = board.system()
    want = required_micropython(profile)
    minimum = versions.minimum_micropython(profile)
    if minimum and versions.parse_release(system.micropython) < versions.parse_release(minimum):
        raise VersionMismatch(
            f"{board.port}: the board runs MicroPython {system.micropython}, older than {minimum}, "
            f"the oldest {profile['id']} supports",
            versions.flash_hint(profile),
        )
    if system.mpy_version != MPY_VERSION:
        raise VersionMismatch(
            f"{board.port}: the board's MicroPython {system.micropython} loads .mpy v{system.mpy_version}, "
            f"the firmware is compiled for v{MPY_VERSION}",
            versions.flash_hint(profile),
        )
    if not ignore_version and want and system.micropython.split(".")[:2] != want.split(".")[:2]:
        raise VersionMismatch(
            f"{board.port}: the board runs MicroPython {system.micropython}, {profile['id']} needs {want}",
            f"{versions.flash_hint(profile)}; or pass --ignore-version if you know this release works",
        )
    return f"MicroPython {system.micropython} on {system.platform} (the profile needs {want or minimum})"


def _shadows(dest: str) -> list[str]:
    """Files that would be imported instead of (or beside) `dest`."""
    if dest.endswith(".mpy"):
        return [dest[:-4] + ".py"]
    if dest.endswith(".py") and dest.lstrip("/") not in ENTRY_POINTS:
        return [dest[:-3] + ".mpy"]
    return []


def deploy(
    board: Board,
    files: list[DeployFile],
    progress: Callable[[str, int, int], None] | None = None,
) -> DeployReport:
    """Copy what differs, verify each file by the device's own hash, remove shadows and temporary files.
    progress(dest, bytes_done_in_this_call, total_bytes_to_copy) is called as bytes go out."""
    report = DeployReport()
    wanted = {f.dest for f in files}
    extra = sorted(
        {s for f in files for s in _shadows(f.dest)} - wanted | {f.dest + TMP_SUFFIX for f in files}
    )
    on_board = board.hashes([f.dest for f in files] + extra)
    todo = [f for f in files if on_board.get(f.dest) != f.sha256]
    report.unchanged = [f.dest for f in files if on_board.get(f.dest) == f.sha256]
    total = sum(len(f.data) for f in todo)
    done = 0
    for f in todo:

        def step(n: int, dest: str = f.dest) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(dest, done, total)

        got = board.write_file(f.dest, f.data, step)
        if got != f.sha256:
            raise DeviceError(
                f"{board.port}: {f.dest} reads back with SHA-256 {got}, expected {f.sha256}",
                "the board's flash may be full or failing: see `pinseal-provision status`; deploy again",
            )
        report.copied.append(f.dest)
    stale = [p for p in extra if on_board.get(p) is not None]
    if stale:
        report.removed = board.remove(stale)
    # Verify the whole set once more in one pass: what the board will boot is exactly what we built.
    final = board.hashes(f.dest for f in files)
    wrong = [f.dest for f in files if final.get(f.dest) != f.sha256]
    if wrong:
        raise DeviceError(f"{board.port}: after deploy these differ from the build: {', '.join(wrong)}")
    return report
