"""pinseal-provision against the QEMU board (qemu_mps2_an385): a real bare-metal MicroPython port on an
emulated Cortex-M3, started with `pinseal-vboard --board qemu_mps2_an385` as a person would, driven over its
pty by the unchanged deploy, enroll and status commands and by mpremote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from provision_fixtures import BIN, GatewaySetup

from pinseal_protocol import certificate as cert
from pinseal_protocol import keys
from pinseal_provision import fleet

START_TIMEOUT_S = 15


@pytest.fixture
def qemu_serial(tmp_path: Path) -> Iterator[str]:
    """One QEMU board on a fresh flash file, through the vboard launcher (which execs pinseal_qemu)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinseal_vboard.cli", "--board", "qemu_mps2_an385", "--flash",
         str(tmp_path / "flash.img")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline and not line.startswith("serial: "):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"the launcher exited: {proc.stderr.read() if proc.stderr else ''}")
        assert line.startswith("serial: /dev/pts/"), line
        yield line.split(": ", 1)[1].strip()
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the power cut: QEMU dies with its launcher
        proc.wait(timeout=10)


def provision(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pinseal-provision"), *args], capture_output=True, text=True, timeout=timeout
    )


def test_deploy_enroll_status_and_mpremote_on_qemu(
    qemu_serial: str, tmp_path: Path, fleet_key: Path, gateway: GatewaySetup
) -> None:
    port = ["--port", qemu_serial, "--board", "qemu_mps2_an385"]
    proc = provision("deploy", *port)
    assert proc.returncode == 0, proc.stderr
    # the profile's floor is the image's MicroPython (1.28.0), not the ESP32 profiles' 1.29
    assert "MicroPython 1.28.0 on qemu (the profile needs 1.28.0)" in proc.stderr
    assert "no ROMFS partition" not in proc.stderr  # the profile asks for none: .mpy files on littlefs

    args = ["enroll", *port, "--fleet-key", str(fleet_key), "--gateway-config", str(gateway.config)]
    proc = provision(*args, "--label", "qemu", "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    kid = report["key_id"]
    assert report["board"] == "qemu_mps2_an385" and report["unique_id"] == ""  # the port has no unique id
    assert report["registered"] == "new" and report["self_test"] == "passed"  # sealed on the Cortex-M3

    proc = provision("status", *port, "--fleet-key", str(fleet_key), "--gateway-config", str(gateway.config))
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["system"] == {"micropython": "1.28.0", "platform": "qemu", "mpy_version": 6}
    assert status["certificate"]["key_id"] == kid and status["gateway"] == "active"
    assert status["device"]["board"] == "qemu_mps2_an385"

    # mpremote, unchanged: the files deploy and enroll left, and the certificate the fleet key signed
    ls = subprocess.run(
        [str(BIN / "mpremote"), "connect", qemu_serial, "fs", "ls", ":", "+", "fs", "ls", ":pinseal"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ls.returncode == 0, ls.stderr
    for name in ("main.py", "board.json", "cert.cbor", "config.json", "key.pub", "enroll.mpy", "outbox.mpy"):
        assert name in ls.stdout, (name, ls.stdout)
    got = tmp_path / "cert.cbor"
    cp = subprocess.run(
        [str(BIN / "mpremote"), "connect", qemu_serial, "fs", "cp", ":cert.cbor", str(got)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    certified = cert.verify(got.read_bytes(), fleet.load(fleet_key).public_key)
    assert certified.board == "qemu_mps2_an385" and certified.micropython == "1.28.0"
    assert keys.key_id(certified.public_key).hex() == kid


def test_flash_refuses_the_emulated_board() -> None:
    """Nothing to write on a QEMU board: `flash` says how to start it instead of downloading an image."""
    proc = provision("flash", "--board", "qemu_mps2_an385", timeout=30)
    assert proc.returncode != 0
    assert "emulated board" in proc.stderr and "pinseal_vboard.cli --board qemu_mps2_an385" in proc.stderr
