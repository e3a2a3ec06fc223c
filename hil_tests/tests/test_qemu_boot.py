"""The committed QEMU image boots and has what the firmware needs: a host-seeded os.urandom, flash that
survives a power cut, and the esp32_devkitc heap (issue 16). Each test drives the real REPL with mpremote over
QEMU's pty, as pinseal-provision would; every subprocess is bounded."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinseal_qemu import QEMU_IMAGE, QemuBoard
from pinseal_qemu.image import REPO

MPREMOTE = REPO / ".venv" / "bin" / "mpremote"
MPREMOTE_TIMEOUT_S = 30


def mpremote_exec(serial: str, code: str) -> str:
    """Run `code` on the board through mpremote's raw REPL and return what it printed."""
    result = subprocess.run(
        [str(MPREMOTE), "connect", serial, "exec", code],
        capture_output=True,
        text=True,
        timeout=MPREMOTE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout.strip()


@pytest.fixture
def flash(tmp_path: Path) -> Path:
    return tmp_path / "flash.img"


@pytest.fixture
def board(flash: Path) -> Iterator[QemuBoard]:
    b = QemuBoard(flash)
    b.start()
    yield b
    b.stop()


def lcg_bytes(n: int) -> bytes:
    """What the stock qemu port's mp_hal_get_random() returns first after every boot (state 0)."""
    state, out = 0, bytearray()
    for _ in range(n):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(state >> 24)
    return bytes(out)


def test_image_is_committed() -> None:
    assert QEMU_IMAGE.is_file(), "the QEMU image is committed under micropython/images (make firmware-images)"


def test_urandom_differs_across_boots(flash: Path) -> None:
    seen = []
    for _ in range(2):
        with QemuBoard(flash) as b:
            assert b.serial_path is not None
            seen.append(mpremote_exec(b.serial_path, "import os; print(os.urandom(16).hex())"))
    assert all(len(bytes.fromhex(s)) == 16 for s in seen)
    assert seen[0] != seen[1], "two boots drew the same bytes: os.urandom is not the host's /dev/urandom"
    assert lcg_bytes(16).hex() not in seen, "os.urandom is still the port's fixed LCG"


def test_flash_survives_sigkill_and_restart(flash: Path) -> None:
    payload = "written before the power cut"
    with QemuBoard(flash) as b:
        assert b.serial_path is not None
        mpremote_exec(
            b.serial_path,
            f"with open('/note.txt', 'w') as f: f.write({payload!r})\nimport os; print(os.listdir('/'))",
        )
        b.kill()  # SIGKILL: nothing but what littlefs already wrote to the host file survives
    assert flash.stat().st_size > 0
    with QemuBoard(flash) as b:
        assert b.serial_path is not None
        out = mpremote_exec(
            b.serial_path, "print(open('/note.txt').read())\nimport os; print(os.statvfs('/')[2])"
        )
    text, blocks = out.splitlines()
    assert text == payload
    assert int(blocks) == 2097152 // 4096  # the esp32_devkitc profile's 2 MiB filesystem


def test_semihost_writes_only_the_flash(board: QemuBoard) -> None:
    """_semihost's positioned I/O accepts the flash's descriptor only (a guard against mistakes: code on
    the board could still issue semihosting calls itself)."""
    assert board.serial_path is not None
    out = mpremote_exec(
        board.serial_path,
        "import _semihost\ntry:\n    _semihost.pwrite(1, b'x', 0)\nexcept OSError as e:\n    print(e.errno)",
    )
    assert out == "9"  # EBADF


def test_heap_is_the_esp32_profile(board: QemuBoard) -> None:
    profile = json.loads((REPO / "boards" / "esp32_devkitc" / "board.json").read_text())
    expected = profile["ram"]["free_heap_bytes"]
    assert board.serial_path is not None
    free = int(mpremote_exec(board.serial_path, "import gc; gc.collect(); print(gc.mem_free())"))
    # mpremote's raw REPL and the compiled snippet hold a little; the GC's own tables are outside mem_free.
    assert 0.95 * expected <= free <= 1.02 * expected, free


def test_asyncio_runs(board: QemuBoard) -> None:
    assert board.serial_path is not None
    out = mpremote_exec(
        board.serial_path,
        "import asyncio\nasync def f():\n    await asyncio.sleep_ms(1)\n    return 42\n"
        "print(asyncio.run(f()))",
    )
    assert out == "42"
