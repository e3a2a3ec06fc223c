"""The firmware installs with the official tool: `mpremote mip install --target / firmware/package.json`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pinseal_build.firmware_package import PACKAGE_JSON, firmware_files, render
from pinseal_vboard import BoardOptions, VirtualBoard


def test_package_json_lists_every_firmware_file() -> None:
    assert PACKAGE_JSON.read_text() == render(), (
        "firmware/package.json is stale: python -m pinseal_build.firmware_package"
    )


@pytest.mark.vm
def test_mip_install_onto_a_blank_board(tmp_path: Path) -> None:
    with VirtualBoard(BoardOptions(flash_dir=tmp_path / "flash", firmware=None)) as board:
        board.wait_for_output(b">>> ")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpremote",
                "connect",
                board.serial_path,
                "mip",
                "install",
                "--target",
                "/",
                str(PACKAGE_JSON),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpremote",
                "connect",
                board.serial_path,
                "exec",
                "import pinseal.app, pinseal.version; print('installed', pinseal.version.FIRMWARE)",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert "installed" in check.stdout, check
    on_flash = sorted(
        p.relative_to(tmp_path / "flash").as_posix() for p in (tmp_path / "flash").rglob("*.py")
    )
    assert on_flash == firmware_files()
