"""Board profiles (boards/<id>/board.json) against boards/schema.json, and facts other code relies on."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from pinseal_vboard.vm import BOARD_RAM_BYTES, REPO

BOARDS_DIR = REPO / "boards"
SCHEMA = json.loads((BOARDS_DIR / "schema.json").read_text())
EXPECTED_IDS = {"esp32_devkitc", "esp32s3_devkitc", "pico_w", "pico2_w", "pico", "qemu_mps2_an385"}
BOARD_DIRS = sorted(p for p in BOARDS_DIR.iterdir() if p.is_dir())


def _emulated(board_dir: Path) -> bool:
    return "emulator" in json.loads((board_dir / "board.json").read_text())


# Silicon: boards a user buys and flashes with micropython.org's image; emulated ones run pinseal's builds.
PHYSICAL_DIRS = [p for p in BOARD_DIRS if not _emulated(p)]

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value: Any, type_name: str) -> bool:
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _TYPES[type_name])


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The subset of JSON Schema that boards/schema.json uses; returns the problems found."""
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            return [f"{where}: expected {schema['type']}, got {type(value).__name__}"]
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > maximum {schema['maximum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing {key!r}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                errors += validate(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unknown key {key!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            errors += validate(item, schema.get("items", {}), f"{where}[{i}]")
    return errors


def test_exactly_the_four_boards_and_the_qemu_board() -> None:
    assert {p.name for p in BOARD_DIRS} == EXPECTED_IDS
    assert {p.name for p in BOARD_DIRS} - {p.name for p in PHYSICAL_DIRS} == {"qemu_mps2_an385"}


@pytest.mark.parametrize("board_dir", BOARD_DIRS, ids=lambda p: p.name)
def test_profile_matches_schema_and_folder(board_dir: Path) -> None:
    profile = json.loads((board_dir / "board.json").read_text())
    assert validate(profile, SCHEMA) == []
    assert profile["id"] == board_dir.name
    if "emulator" in profile:
        return  # test_qemu_profile_says_what_it_is
    assert profile["usb"] and profile["transports"] and profile["wokwi"] is not None
    assert all(profile[k] is not None for k in ("i2c", "uart", "battery"))
    assert (board_dir / profile["wokwi"]["diagram"]).is_file()
    toml = tomllib.loads((board_dir / profile["wokwi"]["toml"]).read_text())
    assert toml["wokwi"]["version"] == 1
    diagram = json.loads((board_dir / profile["wokwi"]["diagram"]).read_text())
    assert diagram["parts"][0]["id"] == "board"
    # ports: what their firmware images look like (micropython.org downloads)
    if profile["port"] == "esp32":
        assert profile["micropython"]["format"] == "bin"
        assert profile["micropython"]["flash_offset"] == (0x1000 if profile["mcu"] == "esp32" else 0)
        assert "atten" in profile["battery"]
    else:
        assert profile["micropython"]["format"] == "uf2" and profile["micropython"]["flash_offset"] is None
        assert {"vid": "2e8a", "pid": "0005"} in [{k: u[k] for k in ("vid", "pid")} for u in profile["usb"]]
    assert len({s["address"] for s in profile["sensors"]}) == len(profile["sensors"])
    assert profile["flash"]["filesystem_bytes"] < profile["flash"]["size_bytes"]


@pytest.mark.parametrize("board_dir", PHYSICAL_DIRS, ids=lambda p: p.name)
def test_official_image_is_the_profiles_board_version_and_format(board_dir: Path) -> None:
    """pinseal-provision flash downloads image_base_url + image_file: micropython.org's naming for the
    profile's own board and release; a SHA-256 only as a person verified it (schema: null or 64 hex)."""
    mp = json.loads((board_dir / "board.json").read_text())["micropython"]
    assert mp["image_base_url"] == "https://micropython.org/resources/firmware/"
    name = rf"{mp['board']}-\d{{8}}-v{re.escape(mp['version'])}\.{mp['format']}"
    assert re.fullmatch(name, mp["image_file"])
    assert Path(mp["image_file"]).match(mp["file_pattern"])
    assert mp["image_sha256"] is None or re.fullmatch("[0-9a-f]{64}", mp["image_sha256"])


def test_esp32_devkitc_ram_is_the_vm_board_default() -> None:
    profile = json.loads((BOARDS_DIR / "esp32_devkitc" / "board.json").read_text())
    assert profile["ram"]["free_heap_bytes"] == BOARD_RAM_BYTES


def test_pico_boards_read_vsys_through_the_3_to_1_divider() -> None:
    for board in ("pico_w", "pico2_w"):
        battery = json.loads((BOARDS_DIR / board / "board.json").read_text())["battery"]
        assert battery["adc_pin"] == 29 and battery["divider"] == {"num": 3, "den": 1}


def test_validator_reports_problems() -> None:
    profile = json.loads((BOARDS_DIR / "pico_w" / "board.json").read_text())
    profile["port"] = "stm32"
    profile["i2c"]["scl"] = "5"
    del profile["ram"]
    problems = validate(profile, SCHEMA)
    assert any("missing 'ram'" in p for p in problems)
    assert any("$.port" in p for p in problems)
    assert any("$.i2c.scl" in p for p in problems)


def test_qemu_profile_says_what_it_is() -> None:
    """An emulated Cortex-M3 under QEMU, not an ESP32: its MicroPython is the committed image (v1.28.0, below
    the ESP32 profiles' 1.29 floor), its heap the image's, and it claims no peripheral the image lacks (no
    machine.I2C/UART/ADC, no network: no sensors, battery or gateway link)."""
    from pinseal_qemu.image import IMAGES_DIR, image_manifest

    profile = json.loads((BOARDS_DIR / "qemu_mps2_an385" / "board.json").read_text())
    assert (profile["mcu"], profile["port"]) == ("cortex_m3", "qemu")
    emulator = profile["emulator"]
    assert (emulator["kind"], emulator["machine"], emulator["cpu"]) == ("qemu", "mps2-an385", "cortex-m3")
    manifest = image_manifest(emulator["image"])
    assert (IMAGES_DIR / emulator["image"] / profile["micropython"]["file_pattern"]).is_file()
    assert manifest["sources"]["micropython"]["ref"] == "v" + profile["micropython"]["version"]
    assert profile["micropython"]["min_version"] == profile["micropython"]["version"] == "1.28.0"
    assert (
        profile["micropython"]["romfs_bytes"] == 0
    )  # the image's ROMFS is read-only: deploy writes .mpy files
    # the image's heap is built from this figure (MICROPY_HEAP_SIZE = it plus the GC's tables, in whole KB)
    assert manifest["heap_profile"] == "boards/esp32_devkitc/board.json"
    assert profile["ram"]["free_heap_bytes"] == BOARD_RAM_BYTES
    assert profile["ram"]["free_heap_bytes"] < manifest["micropython_heap_size"] <= 1.03 * BOARD_RAM_BYTES
    assert profile["sensors"] == [] and profile["transports"] == [] and profile["usb"] == []
    assert profile["i2c"] is None and profile["uart"] is None and profile["battery"] is None
    assert profile["wifi"] is False and profile["wokwi"] is None
    assert "esp32" not in profile["name"].lower() and "Cortex-M3" in profile["name"]
