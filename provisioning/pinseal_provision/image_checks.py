"""Is this file a MicroPython image for this board? Checked before any port is touched.

A wrong file must never reach a board, and must never be reported as a board problem ("no board detected"):
these checks need only the file and the board profile. They are structural (the official images have no
published SHA-256 a tool could trust; `images.py` handles hashes):

- **.bin (ESP32 family)**: esptool's own image reader (`esptool.bin_image.LoadFirmwareImage`, what
  `esptool image-info` uses): magic, segments, the chip id of the extended header (an ESP32-S3 image does not
  boot on an ESP32), checksum and appended SHA-256 digest, the flash size in the header, and that the file
  fits the board's flash at the profile's offset. MicroPython's .bin is a merged image starting with the
  bootloader, so the first image in the file is the one read.
- **.uf2 (Pico family)**: every 512-byte block has UF2's magic numbers and a family id for the MCU (RP2040
  0xe48bff56; RP2350 0xe48bff59 ARM-S, 0xe48bff5a RISC-V, 0xe48bff57 absolute).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from pinseal_provision.errors import BadInput

UF2_BLOCK = 512
UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
UF2_FLAG_FAMILY_ID = 0x00002000
UF2_FAMILIES = {
    "rp2040": {0xE48BFF56},
    "rp2350": {0xE48BFF59, 0xE48BFF5A, 0xE48BFF57, 0xE48BFF56},
}


def check_image(image: Path, profile: dict[str, Any]) -> str:
    """Check `image` for the profile's format; returns one line on what was found, for the user."""
    fmt = profile["micropython"].get("format")
    if fmt == "bin":
        return check_bin(image, profile)
    if fmt == "uf2":
        blocks = check_uf2(image, profile)
        return f"UF2 image for {profile['mcu']}, {blocks} blocks"
    raise BadInput(f"{profile['id']}: unknown image format {fmt!r}")


def _require_file(image: Path, profile: dict[str, Any], suffix: str) -> None:
    if not image.is_file():
        hint = "check the path, or leave the image out to download the profile's official one"
        raise BadInput(f"file not found: {image}", hint)
    fmt = profile["micropython"].get("format")
    if fmt != suffix:
        raise BadInput(
            f"{image} is not an image for this chip ({profile['id']} takes a .{fmt} image, not a .{suffix})"
        )


def _wrong_chip(image: Path, why: str, profile: dict[str, Any]) -> BadInput:
    pattern = profile["micropython"].get("file_pattern", "")
    return BadInput(
        f"{image} is not an image for this chip ({why})",
        f"use MicroPython's {pattern} for {profile['id']}, or leave the image out to download it",
    )


# -- ESP32 family --------------------------------------------------------------------------------------------
def check_bin(image: Path, profile: dict[str, Any]) -> str:
    """esptool reads the image as the profile's chip; chip id, checksum, digest and size must be right."""
    _require_file(image, profile, "bin")
    from esptool.bin_image import LoadFirmwareImage
    from esptool.targets import CHIP_DEFS
    from esptool.util import FatalError

    mcu = str(profile["mcu"])
    rom = CHIP_DEFS[mcu]
    data = image.read_bytes()
    try:
        loaded = LoadFirmwareImage(mcu, data)
    except (FatalError, RuntimeError, struct.error) as exc:
        if data[:1] != b"\xe9":
            first = f"0x{data[:1].hex()}" if data else "empty file"
            why = f"not an {rom.CHIP_NAME} image: first byte {first}, expected 0xe9"
            raise _wrong_chip(image, why, profile) from exc
        raise _wrong_chip(image, f"not a complete {rom.CHIP_NAME} image: esptool: {exc}", profile) from exc
    if loaded.chip_id != rom.IMAGE_CHIP_ID:
        built_for = next(
            (c.CHIP_NAME for c in CHIP_DEFS.values() if getattr(c, "IMAGE_CHIP_ID", None) == loaded.chip_id),
            f"chip id {loaded.chip_id}",
        )
        raise _wrong_chip(image, f"built for the {built_for}, {profile['id']} is an {rom.CHIP_NAME}", profile)
    if loaded.checksum != loaded.calculate_checksum():
        raise _wrong_chip(image, "esptool: its checksum does not match: the file is damaged", profile)
    if loaded.append_digest and loaded.stored_digest != loaded.calc_digest:
        raise _wrong_chip(image, "esptool: its SHA-256 digest does not match: the file is damaged", profile)
    flash_bytes = int(profile.get("flash", {}).get("size_bytes", 0))
    header_flash = _header_flash_bytes(loaded)
    if flash_bytes and header_flash and header_flash > flash_bytes:
        why = f"built for {header_flash >> 20} MB of flash, the board has {flash_bytes >> 20} MB"
        raise _wrong_chip(image, why, profile)
    offset = int(profile["micropython"]["flash_offset"])
    size = len(data)
    if flash_bytes and offset + size > flash_bytes:
        raise BadInput(
            f"{image} ({size} bytes at 0x{offset:x}) does not fit the board's {flash_bytes}-byte flash"
        )
    found = f"esptool: chip id {loaded.chip_id}, checksum valid"
    return f"{rom.CHIP_NAME} image ({found}), {size} bytes at 0x{offset:x} of {flash_bytes >> 20} MB flash"


def _header_flash_bytes(loaded: Any) -> int:
    """The flash size the image header asks for (0 if esptool does not know the value)."""
    bits = loaded.flash_size_freq & 0xF0
    name = next((k for k, v in loaded.ROM_LOADER.FLASH_SIZES.items() if v == bits), "")
    if name.endswith("MB"):
        return int(name[:-2]) << 20
    if name.endswith("KB"):
        return int(name[:-2]) << 10
    return 0


# -- Pico family ---------------------------------------------------------------------------------------------
def check_uf2(image: Path, profile: dict[str, Any]) -> int:
    """Every block has UF2's magic numbers and a family id for this MCU; returns the number of blocks."""
    _require_file(image, profile, "uf2")
    data = image.read_bytes()
    if not data or len(data) % UF2_BLOCK:
        raise _wrong_chip(image, f"not a UF2 file: size {len(data)} is not a multiple of 512", profile)
    families = UF2_FAMILIES.get(str(profile["mcu"]), set())
    for i in range(0, len(data), UF2_BLOCK):
        start0, start1, flags, _addr, _size, _no, _n, family = struct.unpack_from("<8I", data, i)
        (end,) = struct.unpack_from("<I", data, i + UF2_BLOCK - 4)
        if (start0, start1, end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise _wrong_chip(image, f"block {i // UF2_BLOCK} has no UF2 magic numbers", profile)
        if flags & UF2_FLAG_FAMILY_ID and families and family not in families:
            raise _wrong_chip(image, f"UF2 family 0x{family:08x}, not {profile['mcu']}", profile)
    return len(data) // UF2_BLOCK
