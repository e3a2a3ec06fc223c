"""`make hil-wokwi`: each board's Wokwi project (boards/<id>/diagram.json, wokwi.toml, sealed.test.yaml) run
by wokwi-cli, where wokwi-cli and a WOKWI_CLI_TOKEN are present; else it says what is missing and exits 0.

    python -m pinseal_hil.wokwi [--board ID ...] [--timeout-ms N]

Wokwi runs in Wokwi's cloud (the CLI needs a token and the internet), so this is not part of `make test`;
what `make test` does check is that the projects are consistent with the board profiles (check_project, used
by hil_tests/tests/test_wokwi_projects.py): the custom chips on the profile's I2C pins at its addresses, the
chip binaries that `make wokwi-chips` builds, and a scenario waiting for the firmware's sealed-bundle line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pinseal_build.locations import CHECKOUT

BOARDS_DIR = CHECKOUT / "boards"
CHIPS_SRC = CHECKOUT / "hil_tests" / "chips"
SCENARIO = "sealed.test.yaml"
# What the firmware prints for each sealed bundle (firmware/pinseal/app.py); the scenarios wait for it.
SEALED_LINE = "pinseal: sealed readings"
WHERE_CLI = (
    "wokwi-cli is on no package registry: take a release binary from github.com/wokwi/wokwi-cli/releases "
    "or run the install script from https://wokwi.com/ci/install.sh, and put it on PATH (or set WOKWI_CLI)"
)
WHERE_TOKEN = "WOKWI_CLI_TOKEN: create a CI token in Wokwi's dashboard (https://wokwi.com/dashboard/ci)"


@dataclass(frozen=True)
class WokwiProject:
    """One board's Wokwi project, as read from its folder."""

    board_dir: Path
    profile: dict[str, Any]
    diagram: dict[str, Any]
    toml: dict[str, Any]
    scenario: dict[str, Any] | None

    @property
    def board_id(self) -> str:
        return str(self.profile["id"])


def load_project(board_dir: Path) -> WokwiProject:
    """Read a board folder's profile, diagram, wokwi.toml and scenario (None when the scenario is absent)."""
    profile = json.loads((board_dir / "board.json").read_text())
    scenario_file = board_dir / SCENARIO
    return WokwiProject(
        board_dir=board_dir,
        profile=profile,
        diagram=json.loads((board_dir / profile["wokwi"]["diagram"]).read_text()),
        toml=tomllib.loads((board_dir / profile["wokwi"]["toml"]).read_text()),
        scenario=yaml.safe_load(scenario_file.read_text()) if scenario_file.is_file() else None,
    )


def board_projects(boards_dir: Path = BOARDS_DIR) -> list[WokwiProject]:
    """Every board with a Wokwi project; a profile whose `wokwi` is null (qemu_mps2_an385: a board that
    exists only as QEMU's machine, which Wokwi does not simulate) has none."""
    return [
        load_project(p.parent)
        for p in sorted(boards_dir.glob("*/board.json"))
        if json.loads(p.read_text()).get("wokwi") is not None
    ]


def board_pin(board_part: str, gpio: int) -> str:
    """A GPIO's pin name on Wokwi's board part: GPn on the Pico boards, the bare number on the ESP32s."""
    return f"GP{gpio}" if board_part.startswith("board-pi-pico") else str(gpio)


def _connected(diagram: dict[str, Any], a: str, b: str) -> bool:
    return any({c[0], c[1]} == {a, b} for c in diagram["connections"])


def check_project(project: WokwiProject, chips_dir: Path) -> list[str]:
    """The ways the project disagrees with its board profile, or with the chips built in chips_dir."""
    problems: list[str] = []
    where = project.board_id
    parts = {p["id"]: p for p in project.diagram["parts"]}
    board = parts.get("board")
    if board is None:
        return [f"{where}: diagram.json has no part with id 'board'"]
    toml_chips = {c.get("name"): c.get("binary") for c in project.toml.get("chip", [])}
    i2c = project.profile["i2c"]
    for sensor in project.profile["sensors"]:
        kind = sensor["type"]
        binary = toml_chips.get(kind)
        if binary is None:
            problems.append(f"{where}: wokwi.toml has no [[chip]] named {kind!r}")
        else:
            wasm = (project.board_dir / binary).resolve()
            if wasm != (chips_dir / f"{kind}.chip.wasm").resolve():
                problems.append(
                    f"{where}: [[chip]] {kind} binary {binary} is not {chips_dir}/{kind}.chip.wasm"
                )
            for built in (wasm, wasm.with_suffix(".json")):
                if not built.is_file():
                    problems.append(f"{where}: {built} does not exist (make wokwi-chips)")
        chip_parts = [p for p in project.diagram["parts"] if p["type"] == f"chip-{kind}"]
        if len(chip_parts) != 1:
            problems.append(f"{where}: diagram.json has {len(chip_parts)} parts of type chip-{kind}, not 1")
            continue
        part = chip_parts[0]
        if str(part.get("attrs", {}).get("address")) != str(sensor["address"]):
            problems.append(f"{where}: chip-{kind} address attr is not the profile's {sensor['address']}")
        controls = json.loads((CHIPS_SRC / kind / f"{kind}.chip.json").read_text()).get("controls", [])
        unknown = set(part.get("attrs", {})) - {c["id"] for c in controls} - {"address"}
        if unknown:
            problems.append(f"{where}: chip-{kind} attrs {sorted(unknown)} are not the chip's controls")
        for signal in ("scl", "sda"):
            pin = f"board:{board_pin(board['type'], i2c[signal])}"
            if not _connected(project.diagram, f"{part['id']}:{signal.upper()}", pin):
                problems.append(f"{where}: {part['id']}:{signal.upper()} is not wired to {pin}")
        for power, prefix in (("VCC", "board:3V3"), ("GND", "board:GND")):
            if not any(
                f"{part['id']}:{power}" in c[:2] and any(str(e).startswith(prefix) for e in c[:2])
                for c in project.diagram["connections"]
            ):
                problems.append(f"{where}: {part['id']}:{power} is not wired to a {prefix}* pin")
    scenario = project.scenario
    if scenario is None:
        problems.append(f"{where}: no {SCENARIO}")
    else:
        waits = [s.get("wait-serial") for s in scenario.get("steps", []) if isinstance(s, dict)]
        if scenario.get("version") != 1 or not waits or not str(waits[-1]).startswith(SEALED_LINE):
            problems.append(f"{where}: {SCENARIO} must be version 1 and end waiting for {SEALED_LINE!r}")
    return problems


def missing_prerequisites(
    environ: Mapping[str, str], which: Callable[[str], str | None] = shutil.which
) -> tuple[str | None, list[str]]:
    """(the wokwi-cli executable or None, what is missing to run Wokwi here, each with where to get it)."""
    cli = environ.get("WOKWI_CLI") or which("wokwi-cli")
    missing = []
    if not cli:
        missing.append(WHERE_CLI)
    if not environ.get("WOKWI_CLI_TOKEN"):
        missing.append(WHERE_TOKEN)
    return cli, missing


def firmware_file(project: WokwiProject) -> Path:
    return (project.board_dir / project.toml["wokwi"]["firmware"]).resolve()


def run_board(cli: str, project: WokwiProject, timeout_ms: int) -> int:
    """wokwi-cli on one board's project with its scenario; its exit code (0: the sealed line was seen)."""
    cmd = [cli, "--timeout", str(timeout_ms), "--scenario", SCENARIO, str(project.board_dir)]
    print("hil-wokwi:", " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, timeout=timeout_ms / 1000 * 4 + 120).returncode
    except subprocess.TimeoutExpired:
        print(f"hil-wokwi: {project.board_id}: wokwi-cli did not finish", file=sys.stderr)
        return 124


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pinseal_hil.wokwi", description=__doc__.split("\n")[0])
    parser.add_argument("--board", action="append", help="only these board ids (default: every board)")
    parser.add_argument("--timeout-ms", type=int, default=120_000, help="simulated time per board")
    args = parser.parse_args(argv)
    cli, missing = missing_prerequisites(os.environ)
    if missing:
        print("hil-wokwi: not run here; missing:")
        for item in missing:
            print(f"  - {item}")
        return 0
    assert cli is not None
    projects = [p for p in board_projects() if not args.board or p.board_id in args.board]
    chips_dir = CHECKOUT / "build" / "chips"
    failed: list[str] = []
    for project in projects:
        problems = check_project(project, chips_dir)
        if problems:
            failed.append(project.board_id)
            print("\n".join(f"hil-wokwi: {p}" for p in problems), file=sys.stderr)
            continue
        image = firmware_file(project)
        if not image.is_file():
            print(
                f"hil-wokwi: {project.board_id}: skipped, no image {image} (the MicroPython image with the "
                "firmware deployed and enrolled: docs/hil.md, 'Wokwi')"
            )
            continue
        if run_board(cli, project, args.timeout_ms) != 0:
            failed.append(project.board_id)
    print(f"hil-wokwi: {len(projects) - len(failed)} passed or skipped, {len(failed)} failed {failed or ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
