"""BoardOptions.firmware_as_mpy: the package as mpy-cross output on the flash (deploy --no-romfs)."""

from __future__ import annotations

from pathlib import Path

from pinseal_build import mpy
from pinseal_vboard.board import install_firmware
from pinseal_vboard.vm import FIRMWARE_DIR


def test_package_modules_become_mpy_and_entry_points_stay_py(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    (flash / "pinseal").mkdir(parents=True)
    (flash / "pinseal" / "app.py").write_text("stale source that would shadow app.mpy\n")
    install_firmware(FIRMWARE_DIR, flash, mpy_arch=mpy.MPY_ARCH["esp32"], as_mpy=True)
    assert (flash / "main.py").read_bytes() == (FIRMWARE_DIR / "main.py").read_bytes()
    assert not (flash / "pinseal" / "app.py").exists()  # MicroPython imports x.py before x.mpy
    app = (flash / "pinseal" / "app.mpy").read_bytes()
    assert app[:2] == b"M" + bytes([mpy.MPY_VERSION])
    assert not list((flash / "pinseal").rglob("*.py"))
    # sources again: the compiled copies are removed, so the flash never holds two versions of a module
    install_firmware(FIRMWARE_DIR, flash)
    assert (flash / "pinseal" / "app.py").exists() and not (flash / "pinseal" / "app.mpy").exists()
