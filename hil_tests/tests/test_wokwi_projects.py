"""The boards' Wokwi projects agree with their profiles, and `make hil-wokwi` degrades to a clear message.

The diagrams wire the BME280 and SHT3x custom chips on each profile's I2C pins at its addresses, wokwi.toml
points at the chip binaries `make wokwi-chips` builds (with each .chip.json beside its .wasm, as Wokwi
pairs them), and each board's scenario waits for the line the firmware prints for a sealed bundle.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from pinseal_hil import wokwi
from pinseal_vboard.vm import REPO

CHIPS_BUILT = REPO / "build" / "chips"
PROJECTS = wokwi.board_projects()


def test_every_board_has_a_wokwi_project() -> None:
    assert {p.board_id for p in PROJECTS} == {"esp32_devkitc", "esp32s3_devkitc", "pico_w", "pico2_w", "pico"}


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.board_id)
def test_project_matches_profile_and_built_chips(project: wokwi.WokwiProject) -> None:
    assert wokwi.check_project(project, CHIPS_BUILT) == []


def test_the_scenarios_wait_for_what_the_firmware_prints() -> None:
    assert wokwi.SEALED_LINE in (REPO / "firmware" / "pinseal" / "app.py").read_text()


def _project_with(project: wokwi.WokwiProject, **changes: object) -> wokwi.WokwiProject:
    fields = {
        f: copy.deepcopy(getattr(project, f)) for f in ("board_dir", "profile", "diagram", "toml", "scenario")
    }
    fields.update(changes)
    return wokwi.WokwiProject(**fields)  # type: ignore[arg-type]


def test_the_check_catches_a_miswired_or_missing_chip(tmp_path: Path) -> None:
    pico = next(p for p in PROJECTS if p.board_id == "pico_w")
    moved = copy.deepcopy(pico.profile)
    moved["i2c"]["scl"] = 7
    assert any(
        "SCL is not wired to board:GP7" in p
        for p in wokwi.check_project(_project_with(pico, profile=moved), CHIPS_BUILT)
    )
    readdressed = copy.deepcopy(pico.profile)
    readdressed["sensors"][0]["address"] = 119
    assert any(
        "address attr" in p
        for p in wokwi.check_project(_project_with(pico, profile=readdressed), CHIPS_BUILT)
    )
    no_chips = copy.deepcopy(pico.toml)
    no_chips["chip"] = []
    assert any(
        "no [[chip]] named 'bme280'" in p
        for p in wokwi.check_project(_project_with(pico, toml=no_chips), CHIPS_BUILT)
    )
    elsewhere = copy.deepcopy(pico.toml)
    elsewhere["chip"] = [
        {"name": c["name"], "binary": str(tmp_path / Path(c["binary"]).name)} for c in pico.toml["chip"]
    ]
    unbuilt = wokwi.check_project(_project_with(pico, toml=elsewhere), tmp_path)
    assert any(f"{tmp_path}/bme280.chip.wasm does not exist (make wokwi-chips)" in p for p in unbuilt)
    assert any(f"{tmp_path}/sht3x.chip.json does not exist" in p for p in unbuilt)
    assert any(
        "sealed.test.yaml" in p for p in wokwi.check_project(_project_with(pico, scenario=None), CHIPS_BUILT)
    )


def test_pin_names_per_board_part() -> None:
    assert wokwi.board_pin("board-pi-pico-w", 5) == "GP5"
    assert wokwi.board_pin("board-esp32-devkit-c-v4", 22) == "22"


def test_prerequisites_named_with_where_to_get_them() -> None:
    cli, missing = wokwi.missing_prerequisites({}, which=lambda _: None)
    assert cli is None and len(missing) == 2
    assert "github.com/wokwi/wokwi-cli/releases" in missing[0] and "WOKWI_CLI_TOKEN" in missing[1]
    cli, missing = wokwi.missing_prerequisites({"WOKWI_CLI_TOKEN": "t"}, which=lambda _: "/usr/bin/wokwi-cli")
    assert (cli, missing) == ("/usr/bin/wokwi-cli", [])


def test_hil_wokwi_without_cli_or_token_says_so_and_exits_0() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pinseal_hil.wokwi"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "missing" in proc.stdout and "wokwi-cli" in proc.stdout and "WOKWI_CLI_TOKEN" in proc.stdout
