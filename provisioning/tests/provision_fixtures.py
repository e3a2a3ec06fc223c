"""What the provisioning tests share besides fixtures: the venv's bin folder, a blank virtual board,
a gateway set up through its CLI. Plainly named (not conftest): tests import it by name, and `conftest`
is whichever folder's conftest pytest imported last when several packages' tests run together."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard

BIN = Path(sys.executable).parent
# The esp32_devkitc's free heap: the firmware's packages go into the board's ROMFS (deploy does that where
# the profile has a partition), which is what makes enroll's self-test fit.
RAM_BYTES = 100_000


def blank_board(
    host: BoardHost, folder: Path, board: str = "esp32_devkitc", romfs_partition: bool = True
) -> VirtualBoard:
    """A board with nothing but MicroPython on it (its flash folder is `folder`); romfs_partition=False:
    the official image, which has no ROMFS partition."""
    folder.mkdir(parents=True, exist_ok=True)
    options = BoardOptions(
        board=board, flash_dir=folder, firmware=None, ram_bytes=RAM_BYTES, romfs_partition=romfs_partition
    )
    b = VirtualBoard(options, host=host).start()
    b.wait_for_output(b">>> ")
    return b


@dataclass
class GatewaySetup:
    config: Path
    public_key: str

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [str(BIN / "pinseal-gateway"), *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout
