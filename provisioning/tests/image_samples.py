"""Real image files for the flash tests, built with the formats' own tools rather than hand-made bytes.

ESP32 images come from esptool's own image writer (`esptool.bin_image.ESP32FirmwareImage` and the S3's),
so they pass or fail esptool's reader exactly as a real MicroPython .bin would; UF2 files are blocks in the
UF2 layout (magic numbers, family id flag) as picotool and MicroPython's build write them.
"""

from __future__ import annotations

import struct

from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP32S3FirmwareImage

from pinseal_provision import image_checks

ESP_IMAGE_CLASSES = {"esp32": ESP32FirmwareImage, "esp32s3": ESP32S3FirmwareImage}
FLASH_4MB = 0x20  # esptool's FLASH_SIZES value in the header's upper nibble


def esp_bin(chip: str = "esp32", pad_to: int = 0, flash_size_bits: int = FLASH_4MB) -> bytes:
    """A valid esptool image for `chip` (one DRAM segment, checksum, appended SHA-256), padded with 0xff
    (erased flash, as a merged image is) to `pad_to` bytes."""
    image = ESP_IMAGE_CLASSES[chip]()
    image.flash_size_freq = flash_size_bits
    image.entrypoint = 0x40080000
    image.segments.append(ELFSection(b".dram0.data", 0x3FFB0000, bytes(range(256)) * 8, 0))
    data = image.save(None)
    assert data is not None
    return data + b"\xff" * max(0, pad_to - len(data))


def uf2(family: int, blocks: int = 3) -> bytes:
    out = b""
    for i in range(blocks):
        head = struct.pack(
            "<8I",
            image_checks.UF2_MAGIC_START0,
            image_checks.UF2_MAGIC_START1,
            image_checks.UF2_FLAG_FAMILY_ID,
            0x10000000 + 256 * i,
            256,
            i,
            blocks,
            family,
        )
        out += head + bytes(range(256)) + bytes(220) + struct.pack("<I", image_checks.UF2_MAGIC_END)
    return out
