"""Versions: which firmware this install deploys, which MicroPython a profile needs, which image gives it.

A board running an older MicroPython than its profile's minimum would fail later and obscurely (no ROMFS,
another .mpy format, missing modules), so deploy refuses it up front and names the exact image to flash.
The profile's `micropython.min_version` is that minimum; without one, the profile's release
(`micropython.version`) is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pinseal_build.firmware_package import firmware_version as package_version
from pinseal_provision.errors import BadInput

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def firmware_version(firmware_dir: Path) -> str:
    """The firmware's version as the board will report it (pinseal/version.py's `FIRMWARE`)."""
    return package_version(firmware_dir) or "unknown"


def parse_release(text: str) -> tuple[int, int, int]:
    """'1.29.0' (or '1.29', '1.29.0-preview') -> (1, 29, 0); BadInput for anything else."""
    found = _RELEASE.match(text.strip())
    if found is None:
        raise BadInput(f"not a MicroPython release: {text!r}", "write it as MAJOR.MINOR.PATCH, e.g. 1.29.0")
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def minimum_micropython(profile: dict[str, Any]) -> str:
    """The oldest MicroPython the profile accepts."""
    mp = profile["micropython"]
    return str(mp.get("min_version") or mp.get("version", ""))


def image_name(profile: dict[str, Any], release: str | None = None) -> str:
    """The official MicroPython image for a release (default: the profile's): the profile's `image_file`
    when it is that release's (what `flash` downloads), else its `file_pattern` with `v<release>`
    (ESP32_GENERIC-*.bin -> ESP32_GENERIC-v1.30.0.bin), as micropython.org names its downloads."""
    mp = profile["micropython"]
    want = release or str(mp.get("version", ""))
    official = str(mp.get("image_file") or "")
    if official and f"-v{want}." in official:
        return official
    pattern = str(mp.get("file_pattern") or f"{mp.get('board', profile['id'])}-*.{mp.get('format', 'bin')}")
    return pattern.replace("*", f"v{want}", 1)


def flash_hint(profile: dict[str, Any]) -> str:
    """What to type to get the profile's MicroPython onto the board (`flash` downloads the official image
    the profile names; --image FILE flashes one the user has)."""
    emulator = profile.get("emulator")
    if emulator:  # nothing to flash: the emulator runs pinseal's committed image (micropython/images/)
        return f"{profile['id']} runs the image {emulator['image']}: start it with {emulator['launcher']}"
    image = image_name(profile)
    return f"flash {image}: pinseal-provision flash --board {profile['id']} (downloads it; or --image FILE)"
