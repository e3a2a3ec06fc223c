"""Batch provisioning of virtual boards served by one BoardHost: every board deployed, enrolled, registered
and self-tested, and a bad port in the tray reported without stopping the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from provision_fixtures import GatewaySetup, blank_board

from pinseal_provision.cli import main as cli_main
from pinseal_vboard import BoardHost

pytestmark = pytest.mark.vm


def run_batch(
    host: BoardHost, tmp_path: Path, gateway: GatewaySetup, fleet_key: Path, n: int, parallel: int
) -> tuple[int, list[dict], list]:
    boards = [blank_board(host, tmp_path / f"flash{i}") for i in range(n)]
    try:
        report = tmp_path / "report.json"
        args = [
            "batch",
            "--ports",
            *[b.serial_path for b in boards],
            "/dev/ttyUSB99",
            "--parallel",
            str(parallel),
        ]
        args += ["--fleet-key", str(fleet_key), "--gateway-config", str(gateway.config), "--label", "tray-"]
        args += ["--state-dir", str(tmp_path / "state"), "--export", str(tmp_path / "devices.json")]
        args += ["--report", str(report)]
        code = cli_main(args)
        return code, json.loads(report.read_text()), boards
    finally:
        for b in boards:
            b.stop()


def check(code: int, results: list[dict], boards: list, gateway: GatewaySetup, tmp_path: Path) -> None:
    assert code == 1  # the bad port fails the batch as a whole ...
    assert [r["ok"] for r in results] == [True] * len(boards) + [False]  # ... and only itself
    assert "no serial port /dev/ttyUSB99" in results[-1]["error"] and results[-1]["hint"]
    kids = {r["detail"]["key_id"] for r in results[:-1]}
    assert len(kids) == len(boards) and all(r["detail"]["self_test"] == "passed" for r in results[:-1])
    listing = gateway.cli("devices", "list")
    assert all(f"{kid}  active" in listing for kid in kids)
    assert "tray-01" in listing and f"tray-{len(boards):02d}" in listing
    assert {d["kid"] for d in json.loads((tmp_path / "devices.json").read_text())} == kids
    for b in boards:
        assert (b.flash_dir / "cert.cbor").exists() and (b.flash_dir / "config.json").exists()


def test_batch_of_ten_boards_four_at_a_time(
    host: BoardHost, tmp_path: Path, gateway: GatewaySetup, fleet_key: Path
) -> None:
    code, results, boards = run_batch(host, tmp_path, gateway, fleet_key, 10, parallel=4)
    check(code, results, boards, gateway, tmp_path)
