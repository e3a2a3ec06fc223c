"""pinseal's firmware target on QEMU: MicroPython's MPS2-AN385 (Cortex-M3) image, its flash a host file.

`image` says where the committed image and its manifest are, `board` launches QEMU with the REPL on a pty
(SIGKILL = power cut), `cli` is `python -m pinseal_qemu.cli`, which prints `serial: /dev/pts/N` like
pinseal-vboard so mpremote and pinseal-provision work against it unchanged.
"""

from pinseal_qemu.board import QemuBoard, QemuError
from pinseal_qemu.image import QEMU_IMAGE, image_manifest

__all__ = ["QEMU_IMAGE", "QemuBoard", "QemuError", "image_manifest"]
