"""Where the firmware sources and the board profiles are: one answer for a checkout and an installed wheel.

In a checkout they are the repository's `firmware/` and `boards/`, the folders developers edit. A wheel cannot
carry folders beside its packages, so the build copies them into this package (`pinseal_build/firmware`,
`pinseal_build/boards`, see setup.py); an installed `pinseal-provision` then deploys the firmware and finds
the board profiles without a checkout. `PINSEAL_FIRMWARE_DIR` and `PINSEAL_BOARDS_DIR` override both, for a
firmware tree or a board profile of one's own. Every tool asks here, so the three cases are decided once.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository this package runs from (tools/pinseal_build); in an installed wheel it names a folder
# without firmware/ or boards/, and only the checkout-only tools (build output, pyright) use it.
CHECKOUT = PACKAGE_DIR.parents[1]
BUILD_DIR = CHECKOUT / "build"


def _locate(env_var: str, name: str) -> Path:
    """The override if set, else the copy shipped in this package, else the checkout's folder."""
    override = os.environ.get(env_var)
    if override:
        return Path(override)
    shipped = PACKAGE_DIR / name
    if shipped.is_dir():
        return shipped
    return CHECKOUT / name


def firmware_dir() -> Path:
    """The firmware's flash root: main.py, boot.py and the `pinseal` package, exactly what a board runs."""
    return _locate("PINSEAL_FIRMWARE_DIR", "firmware")


def boards_dir() -> Path:
    """The board profiles: one `<board id>/board.json` per supported board."""
    return _locate("PINSEAL_BOARDS_DIR", "boards")


FIRMWARE_DIR = firmware_dir()
BOARDS_DIR = boards_dir()
