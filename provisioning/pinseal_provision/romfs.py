"""Put the firmware's packages into the board's ROMFS partition, where their .mpy code executes in place.

On a board whose MicroPython build has a ROMFS partition (the profile's micropython.romfs_bytes, and
`vfs.rom_ioctl` on the board), modules in /rom take no heap for their bytecode and constants: on the
esp32_devkitc the firmware then needs ~40 KB of heap for its code instead of ~80 KB (docs/benchmarks.md).
The image is built as `mpremote romfs build` builds it (mpremote's make_romfs, mpy-cross) and written
through `vfs.rom_ioctl` as `mpremote romfs deploy` writes it; a partition that already holds the same image
(SHA-256 over its bytes on the board) is left alone, so a rerun after a cut just finishes the job.
The entry points (main.py, boot.py) and /board.json stay on the filesystem, and copies of the packages there
are removed: MicroPython searches the filesystem before /rom, so they would shadow the image.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from pinseal_provision.device import Board
from pinseal_provision.errors import DeviceError

CHUNK_BYTES = 2048
_ROM_PROBE = (
    "import vfs, json\n"
    "f = getattr(vfs, 'rom_ioctl', None)\n"
    "n = f(1) if f else 0\n"
    "d = f(2, 0) if n and n > 0 else None\n"
    "print('PINSEAL', json.dumps({'size': len(d) if d is not None and not isinstance(d, int) else 0}))\n"
)


def partition_size(board: Board) -> int:
    """Bytes of the board's ROMFS partition 0 (0 when its MicroPython has none)."""
    return int(board.call(_ROM_PROBE)["size"])


def wanted(profile: dict[str, Any]) -> bool:
    return int(profile.get("micropython", {}).get("romfs_bytes", 0) or 0) > 0


def _on_board_sha(board: Board, length: int) -> str:
    code = (
        "import vfs, hashlib, binascii, json\n"
        f"d = vfs.rom_ioctl(2, 0)\nh = hashlib.sha256(); n = {length}; i = 0\n"
        "while i < n:\n    h.update(bytes(d[i:min(n, i + 1024)])); i += 1024\n"
        "print('PINSEAL', json.dumps({'sha': binascii.hexlify(h.digest()).decode()}))\n"
    )
    return str(board.call(code)["sha"])


def deploy_image(board: Board, image: bytes) -> bool:
    """Write the image unless the partition already holds it; returns whether it wrote."""
    size = partition_size(board)
    if size == 0:
        raise DeviceError(
            f"{board.port}: the board's MicroPython has no ROMFS partition",
            "flash pinseal's MicroPython build for this board, or deploy without ROMFS (--no-romfs)",
        )
    if len(image) > size:
        raise DeviceError(f"{board.port}: the firmware image ({len(image)} bytes) exceeds the ROMFS ({size})")
    sha = hashlib.sha256(image).hexdigest()
    if _on_board_sha(board, len(image)) == sha:
        return False
    board.exec("import vfs\ntry:\n    vfs.umount('/rom')\nexcept OSError:\n    pass")
    board.exec(f"import vfs\n_w = vfs.rom_ioctl(3, 0, {len(image)})")
    board.exec("from binascii import a2b_base64")
    for offset in range(0, len(image), CHUNK_BYTES):
        # bytes, not str: not every a2b_base64 takes str (this VM's is Python and does not)
        chunk = base64.b64encode(image[offset : offset + CHUNK_BYTES])
        board.exec(f"vfs.rom_ioctl(4, 0, {offset}, a2b_base64({chunk!r}))")
    board.exec("vfs.rom_ioctl(5, 0)")
    if _on_board_sha(board, len(image)) != sha:
        raise DeviceError(f"{board.port}: the ROMFS reads back different from the image", "deploy again")
    board.fresh()  # MicroPython mounts /rom when it starts: a soft reset puts the new image on the path
    return True
