"""Where a board is: serial device paths, pseudo-terminals, rfc2217:// URLs, or auto-detected by USB id.

pyserial opens all of them (`serial.serial_for_url`), so the rest of the tool never cares which it is. Only
paths are checked up front (a missing /dev/ttyUSB0 is the commonest mistake at a bench); URLs are checked
by opening them. Auto-detection matches `serial.tools.list_ports` against the USB VID/PID pairs in the board
profiles, and recognises the boot ROMs (a board in its bootloader has no REPL to provision).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

import serial.tools.list_ports

from pinseal_provision.errors import BadInput, InBootloader, PortNotFound
from pinseal_provision.profiles import all_profiles

URL_SCHEMES = ("rfc2217://", "socket://", "loop://", "spy://", "hwgrep://")
# USB ids that mean "ROM bootloader, no MicroPython": the RP2 boot ROMs are a mass-storage drive
# (and a PICOBOOT interface), never a REPL.
BOOTLOADER_IDS = {
    ("2e8a", "0003"): "RP2040 boot ROM (BOOTSEL)",
    ("2e8a", "000f"): "RP2350 boot ROM (BOOTSEL)",
}


@dataclass(frozen=True)
class DetectedPort:
    """A connected serial port and the board profiles its USB id fits."""

    device: str
    vid: str | None
    pid: str | None
    description: str
    boards: tuple[str, ...]
    bootloader: bool = False


def is_url(spec: str) -> bool:
    return spec.startswith(URL_SCHEMES)


def is_pty(path: str) -> bool:
    """A pseudo-terminal slave (virtual boards, QEMU, socat): Unix 98 ptys have major number 136-143."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143


def _usb_ids(profiles: dict[str, dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    ids: dict[tuple[str, str], list[str]] = {}
    for board, profile in profiles.items():
        for entry in profile.get("usb", []):
            key = (str(entry["vid"]).lower(), str(entry["pid"]).lower())
            if key not in BOOTLOADER_IDS:
                ids.setdefault(key, []).append(board)
    return ids


def detect(profiles: dict[str, dict[str, Any]] | None = None) -> list[DetectedPort]:
    """Serial ports whose USB id a board profile (or a boot ROM) names, in port order."""
    ids = _usb_ids(all_profiles() if profiles is None else profiles)
    found = []
    for info in sorted(serial.tools.list_ports.comports(), key=lambda p: p.device):
        if info.vid is None or info.pid is None:
            continue
        key = (f"{info.vid:04x}", f"{info.pid:04x}")
        if key in BOOTLOADER_IDS:
            found.append(DetectedPort(info.device, *key, BOOTLOADER_IDS[key], (), bootloader=True))
        elif key in ids:
            found.append(DetectedPort(info.device, *key, info.description or "", tuple(ids[key])))
    return found


def resolve(spec: str | None, board: str | None = None) -> str:
    """The port to open for `spec` (a path, URL, or None/"auto" = the one detected board)."""
    if spec and spec != "auto":
        if is_url(spec):
            return spec
        if not os.path.exists(spec):
            listed = ", ".join(p.device for p in serial.tools.list_ports.comports()) or "none"
            raise PortNotFound(f"no serial port {spec} (ports present: {listed})")
        if not (stat.S_ISCHR(os.stat(spec).st_mode)):
            raise BadInput(f"{spec} is not a serial device")
        return spec
    candidates = [p for p in detect() if board is None or board in p.boards or p.bootloader]
    ready = [p for p in candidates if not p.bootloader]
    if not ready:
        if candidates:
            raise InBootloader(
                f"{candidates[0].device} is a board in its ROM bootloader ({candidates[0].description})"
            )
        raise PortNotFound(
            "no board detected by USB id" + (f" for {board}" if board else ""),
            "plug the board in, or name its port with --port (a path, a pty or an rfc2217:// URL)",
        )
    if len(ready) > 1:
        raise BadInput(
            "several boards are connected: " + ", ".join(p.device for p in ready),
            "name one with --port, or use `pinseal-provision batch --auto` to do them all",
        )
    return ready[0].device
