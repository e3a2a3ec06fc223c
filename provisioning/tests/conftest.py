"""Fixtures: virtual boards (blank MicroPython, over their pty), a real gateway config and registry, a
fleet key.

The gateway is set up through its CLI in tmp_path, as an owner would (`pinseal-gateway init`), and
provisioning registers devices through the same CLI; no daemon or broker is needed to check a registry.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from provision_fixtures import BIN, GatewaySetup, blank_board

from pinseal_provision import fleet
from pinseal_provision.enroll import EnrollOptions
from pinseal_vboard import BoardHost, VirtualBoard


@pytest.fixture(scope="module")
def host() -> Iterator[BoardHost]:
    with BoardHost() as h:
        yield h


@pytest.fixture
def board(host: BoardHost, tmp_path: Path) -> Iterator[VirtualBoard]:
    b = blank_board(host, tmp_path / "flash")
    yield b
    b.stop()


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
