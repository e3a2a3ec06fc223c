"""The firmware's packages as one ROMFS image, built as `mpremote romfs build` builds it.

Provisioning writes it to a board's ROMFS partition; the virtual board mounts it at /rom.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path


def build_image(firmware_dir: Path) -> bytes:
    """The ROMFS image of every package folder of the firmware (not main.py/boot.py)."""
    from mpremote.romfs import make_romfs

    with (
        tempfile.TemporaryDirectory(prefix="pinseal-romfs-") as tmp,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        for package in sorted(firmware_dir.iterdir()):
            if package.is_dir() and not package.name.startswith((".", "__")):
                shutil.copytree(
                    package, Path(tmp) / package.name, ignore=shutil.ignore_patterns("__pycache__")
                )
        return make_romfs(tmp, mpy_cross=True)
