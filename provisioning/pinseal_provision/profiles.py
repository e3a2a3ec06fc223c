"""Board profiles (boards/<id>/board.json) and the firmware folder, as provisioning needs them.

The profile is the single description of a board: which MicroPython image it takes and where (flash format
and offset), which USB ids it shows, and what the firmware reads at run time (it is copied to the board as
/board.json). Provisioning reads the same files the firmware and the virtual board read, so a board is
described once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pinseal_build.locations import BOARDS_DIR, FIRMWARE_DIR
from pinseal_provision.errors import BadInput

# Where the profiles and the firmware are (a checkout, an installed wheel, or PINSEAL_BOARDS_DIR /
# PINSEAL_FIRMWARE_DIR) is pinseal_build.locations' answer; re-exported for provisioning's modules.
__all__ = [
    "BOARDS_DIR",
    "FIRMWARE_DIR",
    "all_profiles",
    "known_boards",
    "load_profile",
    "profile_path",
    "required_micropython",
]


def profile_path(board: str) -> Path:
    """A board id (esp32_devkitc) or a path to a board.json."""
    candidate = Path(board)
    if candidate.suffix == ".json":
        if candidate.is_file():
            return candidate.resolve()
        raise BadInput(f"no board profile {candidate}")
    path = BOARDS_DIR / board / "board.json"
    if not path.is_file():
        raise BadInput(
            f"unknown board {board!r}",
            f"use one of: {', '.join(known_boards()) or '(none found in ' + str(BOARDS_DIR) + ')'}",
        )
    return path


def known_boards() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))


def load_profile(board: str) -> dict[str, Any]:
    path = profile_path(board)
    try:
        profile = json.loads(path.read_text())
    except ValueError as exc:
        raise BadInput(f"board profile {path} is not valid JSON: {exc}") from exc
    for key in ("id", "port", "mcu", "micropython"):
        if key not in profile:
            raise BadInput(f"board profile {path} has no {key!r}")
    return profile


def all_profiles() -> dict[str, dict[str, Any]]:
    return {board: load_profile(board) for board in known_boards()}


def required_micropython(profile: dict[str, Any]) -> str:
    return str(profile["micropython"].get("version", ""))
