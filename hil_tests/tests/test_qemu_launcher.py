"""The QEMU board's launcher: `pinseal-vboard --board qemu_mps2_an385` becomes pinseal_qemu's CLI, prints
`serial: ...`, and SIGKILL of it is a power cut of the board (QEMU dies with it, never left running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pinseal_qemu.cli import image_for
from pinseal_qemu.image import QEMU_IMAGE

START_TIMEOUT_S = 15


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc: no pgrep by name, which would see other QEMUs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_vboard_launcher_runs_qemu_and_sigkill_cuts_its_power(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinseal_vboard.cli", "--board", "qemu_mps2_an385", "--flash",
         str(tmp_path / "flash.img")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serial: /dev/pts/"), line
        (qemu,) = children(proc.pid)  # exec'd: the launcher's own pid runs QEMU
        assert "qemu-system-arm" in Path(f"/proc/{qemu}/cmdline").read_text()
        assert str(QEMU_IMAGE) in Path(f"/proc/{qemu}/cmdline").read_text()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while alive(qemu) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(qemu), "QEMU outlived its launcher: SIGKILL must be a power cut"


def test_qemu_cli_refuses_a_board_it_does_not_emulate(tmp_path: Path) -> None:
    assert image_for("qemu_mps2_an385") == QEMU_IMAGE
    proc = subprocess.run(
        [sys.executable, "-m", "pinseal_qemu.cli", "--board", "esp32_devkitc", "--flash",
         str(tmp_path / "f")],
        capture_output=True, text=True, timeout=START_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 2 and "not a QEMU board" in proc.stderr
    assert not (tmp_path / "f").exists()
