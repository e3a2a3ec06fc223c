"""Where the committed MicroPython images are: micropython/images/<image>/ with manifest.json beside them.

The tests run these committed binaries (CI cannot build them: no network, no source snapshots), so every
launcher asks here rather than hard-coding a path.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "micropython" / "images"
QEMU_IMAGE = IMAGES_DIR / "qemu-mps2-an385" / "firmware.elf"


def image_manifest(image: str) -> dict:
    """The manifest.json of one image folder (`qemu-mps2-an385`, `rp2-pico`, ...)."""
    return json.loads((IMAGES_DIR / image / "manifest.json").read_text())
