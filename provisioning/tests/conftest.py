"""Fixtures: virtual boards (blank MicroPython, over their pty), a real gateway config and registry, a
fleet key.

The gateway is set up through its CLI in tmp_path, as an owner would (`pinseal-gateway init`), and
provisioning registers devices through the same CLI; no daemon or broker is needed to check a registry.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pinseal_provision import fleet
from pinseal_provision.enroll import EnrollOptions
from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard

BIN = Path(sys.executable).parent
# The esp32_devkitc's free heap: the firmware's packages go into the board's ROMFS (deploy does that where
# the profile has a partition), which is what makes enroll's self-test fit.
RAM_BYTES = 100_000


@pytest.fixture(scope="module")
def host() -> Iterator[BoardHost]:
    with BoardHost() as h:
        yield h


def blank_board(
    host: BoardHost, folder: Path, board: str = "esp32_devkitc", romfs_partition: bool = True
) -> VirtualBoard:
    """A board with nothing but MicroPython on it (its flash folder is `folder`); romfs_partition=False:
    the official image, which has no ROMFS partition."""
    folder.mkdir(parents=True, exist_ok=True)
    options = BoardOptions(
        board=board, flash_dir=folder, firmware=None, ram_bytes=RAM_BYTES, romfs_partition=romfs_partition
    )
    b = VirtualBoard(options, host=host).start()
    b.wait_for_output(b">>> ")
    return b


@pytest.fixture
def board(host: BoardHost, tmp_path: Path) -> Iterator[VirtualBoard]:
    b = blank_board(host, tmp_path / "flash")
    yield b
    b.stop()


@dataclass
class GatewaySetup:
    config: Path
    public_key: str

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [str(BIN / "pinseal-gateway"), *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout


@pytest.fixture
def gateway(tmp_path: Path) -> GatewaySetup:
    data = tmp_path / "gateway"
    config = tmp_path / "gateway.toml"
    setup = GatewaySetup(config, "")
    subprocess.run(
        [str(BIN / "pinseal-gateway"), "init", "--config", str(config), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=True,
    )
    setup.public_key = setup.cli("pubkey").strip()
    return setup


@pytest.fixture
def fleet_key(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.key"
    fleet.create(path)
    return path


@pytest.fixture
def enroll_options(tmp_path: Path, fleet_key: Path, gateway: GatewaySetup) -> EnrollOptions:
    return EnrollOptions(
        fleet_key=fleet_key,
        gateway_config=gateway.config,
        label="bench",
        wifi_ssid="shed",
        wifi_password="wifi-secret",
        state_dir=tmp_path / "state",
        export=tmp_path / "devices.json",
    )
