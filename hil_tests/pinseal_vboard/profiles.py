"""Board profiles (boards/<id>/board.json): where they are and how a name becomes a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pinseal_build.locations import BOARDS_DIR


def board_profile_path(board: str) -> Path:
    """A board id (esp32_devkitc) or a path to a board.json."""
    candidate = Path(board)
    if candidate.suffix == ".json" and candidate.is_file():
        return candidate.resolve()
    path = BOARDS_DIR / board / "board.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))
        raise ValueError(f"unknown board {board!r}: known boards are {', '.join(known) or 'none'}")
    return path


def load_profile(board: str) -> dict[str, Any]:
    return json.loads(board_profile_path(board).read_text())
