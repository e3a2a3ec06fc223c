"""The committed RP2 image (MicroPython v1.28.0, RPI_PICO) boots in rp2040js and answers on USB CDC (#16).

rp2040js (npm, pinned in package.json) is the RP2040 simulator Wokwi runs: the real RP2 port, cycle-counted
at 125 MHz, about 12x slower than a Pico on this machine. The bootrom it needs is committed beside the
image. Bounded: one Node process with its own timeout, inside the subprocess timeout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "hil_tests" / "rp2040" / "boot_uf2.mjs"
UF2 = REPO / "micropython" / "images" / "rp2-pico" / "firmware.uf2"
BOOTROM = REPO / "micropython" / "images" / "rp2040-bootrom" / "bootrom_b1.bin"
BOOT_TIMEOUT_S = 150


def test_banner_and_repl_over_usb_cdc() -> None:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "rp2040js").is_dir():
        pytest.fail("node or node_modules/rp2040js is missing: run `make setup`")
    result = subprocess.run(
        [
            node,
            str(RUNNER),
            "--uf2",
            str(UF2),
            "--bootrom",
            str(BOOTROM),
            "--send",
            "import gc; print('heap', gc.mem_free(), 'sum', sum(range(10)))",
            "--expect",
            "sum 45",
            "--timeout-s",
            str(BOOT_TIMEOUT_S),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BOOT_TIMEOUT_S + 30,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "MicroPython v1.28.0" in result.stdout
    assert "Raspberry Pi Pico with RP2040" in result.stdout
    heap = int(result.stdout.split("heap ")[1].split()[0])
    assert heap > 200_000  # the RP2040's 264 KB SRAM, less MicroPython's static data and stacks
