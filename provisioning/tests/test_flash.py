"""esptool and UF2 paths at their boundary: what esptool.cmds receives, what lands on the UF2 drive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from esptool import cmds
from image_samples import esp_bin, uf2

from pinseal_provision import flash, profiles
from pinseal_provision.errors import BadInput, FlashError

ESP32 = profiles.load_profile("esp32_devkitc")
ESP32S3 = profiles.load_profile("esp32s3_devkitc")
PICO = profiles.load_profile("pico_w")
PICO2 = profiles.load_profile("pico2_w")


class FakeEsp:
    def __init__(self, chip: str) -> None:
        self.CHIP_NAME = chip

    def __enter__(self) -> FakeEsp:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def esptool_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    chip = {"name": "ESP32"}

    def detect_chip(port: str, baud: int = 115200, **kw: Any) -> FakeEsp:
        calls.append(("detect_chip", (port, baud)))
        return FakeEsp(chip["name"])

    def run_stub(esp: FakeEsp) -> FakeEsp:
        calls.append(("run_stub", None))
        return esp

    def write_flash(esp: FakeEsp, addr_data: list[tuple[int, str]], **kw: Any) -> None:
        calls.append(("write_flash", [(a, Path(d).read_bytes()) for a, d in addr_data]))

    monkeypatch.setattr(cmds, "detect_chip", detect_chip)
    monkeypatch.setattr(cmds, "run_stub", run_stub)
    monkeypatch.setattr(cmds, "attach_flash", lambda esp, *a, **k: calls.append(("attach_flash", None)))
    monkeypatch.setattr(cmds, "erase_flash", lambda esp, *a, **k: calls.append(("erase_flash", None)))
    monkeypatch.setattr(cmds, "write_flash", write_flash)
    monkeypatch.setattr(cmds, "reset_chip", lambda esp, mode="hard-reset": calls.append(("reset_chip", mode)))
    calls.append(("chip", chip))  # tests change chip["name"]
    return calls


def esp_image(tmp_path: Path, size: int = 4096, chip: str = "esp32") -> Path:
    """An image esptool's reader accepts for `chip` (flash checks it before any port), `size` bytes."""
    path = tmp_path / "ESP32_GENERIC-v1.29.0.bin"
    path.write_bytes(esp_bin(chip, pad_to=size))
    return path


def test_esp32_image_goes_to_the_profile_offset_after_an_erase(tmp_path: Path, esptool_calls: list) -> None:
    image = esp_image(tmp_path)
    flash.flash_esp32("/dev/ttyUSB0", image, ESP32, baud=921600)
    names = [c[0] for c in esptool_calls[1:]]
    assert names == ["detect_chip", "run_stub", "attach_flash", "erase_flash", "write_flash", "reset_chip"]
    assert esptool_calls[1][1] == ("/dev/ttyUSB0", 921600)
    assert esptool_calls[5][1] == [(0x1000, image.read_bytes())]
    assert esptool_calls[6][1] == "hard-reset"


def test_esp32s3_offset_zero_and_no_erase(tmp_path: Path, esptool_calls: list) -> None:
    esptool_calls[0][1]["name"] = "ESP32-S3"
    flash.flash_esp32("rfc2217://localhost:4000", esp_image(tmp_path, chip="esp32s3"), ESP32S3, erase=False)
    assert "erase_flash" not in [c[0] for c in esptool_calls]
    assert next(c[1] for c in esptool_calls if c[0] == "write_flash")[0][0] == 0


def test_wrong_chip_or_wrong_file_never_writes(tmp_path: Path, esptool_calls: list) -> None:
    esptool_calls[0][1]["name"] = "ESP32-S3"
    with pytest.raises(FlashError, match="ESP32-S3"):
        flash.flash_esp32("/dev/ttyUSB0", esp_image(tmp_path), ESP32)
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"MZ" + bytes(100))
    with pytest.raises(BadInput, match="not an ESP32 image"):
        flash.flash_esp32("/dev/ttyUSB0", bad, ESP32)
    with pytest.raises(BadInput, match="does not fit"):
        flash.flash_esp32("/dev/ttyUSB0", esp_image(tmp_path, 5 * 1024 * 1024), ESP32)
    with pytest.raises(BadInput, match="uf2"):
        flash.flash_esp32("/dev/ttyUSB0", esp_image(tmp_path), PICO)
    assert "write_flash" not in [c[0] for c in esptool_calls]


def test_esptool_failure_says_how_to_get_into_download_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chip(*a: Any, **k: Any) -> None:
        raise cmds.FatalError("Failed to connect to ESP32: No serial data received.")

    monkeypatch.setattr(cmds, "detect_chip", no_chip)
    with pytest.raises(FlashError) as failed:
        flash.flash_esp32("/dev/ttyUSB0", esp_image(tmp_path), ESP32)
    assert "BOOT" in failed.value.hint


def test_uf2_lands_on_the_bootloader_drive_after_a_reboot_request(tmp_path: Path) -> None:
    image = tmp_path / "RPI_PICO_W-v1.29.0.uf2"
    image.write_bytes(uf2(0xE48BFF56))
    drive = tmp_path / "RPI-RP2"
    entered: list[str] = []

    def enter(port: str) -> str:  # the board reboots into BOOTSEL: its drive appears
        entered.append(port)
        drive.mkdir()
        (drive / "INFO_UF2.TXT").write_text(
            "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"
        )
        return "machine.bootloader()"

    def find(mcu: str) -> Path | None:
        return flash.find_uf2_volume(mcu, [tmp_path / "other", drive])

    seen: list[tuple[int, int]] = []
    dest = flash.flash_uf2(
        image, PICO, port="/dev/ttyACM0", enter=enter, find=find, progress=lambda d, t: seen.append((d, t))
    )
    assert entered == ["/dev/ttyACM0"]
    assert dest == drive / image.name and dest.read_bytes() == image.read_bytes()
    assert seen[-1] == (len(image.read_bytes()),) * 2


def test_uf2_checks_family_and_magic_and_waits_for_the_drive(tmp_path: Path) -> None:
    image = tmp_path / "fw.uf2"
    image.write_bytes(uf2(0xE48BFF59))  # RP2350 image
    with pytest.raises(BadInput, match="family"):
        flash.flash_uf2(image, PICO, volume=tmp_path)
    image.write_bytes(b"x" * 512)
    with pytest.raises(BadInput, match="magic"):
        flash.flash_uf2(image, PICO2, volume=tmp_path)
    image.write_bytes(uf2(0xE48BFF59))
    with pytest.raises(FlashError) as none:
        flash.flash_uf2(image, PICO2, wait_s=0.3, find=lambda mcu: None)
    assert "BOOTSEL" in none.value.hint
    volume = tmp_path / "RP2350"
    volume.mkdir()
    (volume / "INFO_UF2.TXT").write_text("Board-ID: RP2350\n")
    assert flash.find_uf2_volume("rp2350", [volume]) == volume
    assert flash.find_uf2_volume("rp2040", [volume]) is None
    assert flash.flash_uf2(image, PICO2, volume=volume).read_bytes() == image.read_bytes()
