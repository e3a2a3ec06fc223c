"""Sensors at register level: the firmware's drivers against the emulated chips, inside the MicroPython VM.

Each hil_tests/firmware_tests/test_sensors_*.py module runs in board mode (the board's RAM) with the sensors
plugin (hil_tests/vboard/sensors.mjs) on an ESP32 and an RP2 board profile, since NACKs raise a different
errno on each port. Also: the chip emulators' node tests, and the sensors-script checker on generated bad
scripts.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinseal_vboard.vm import FIRMWARE_TESTS_DIR, REPO, VMOptions, node_executable, run_firmware_test_module

BOARDS_DIR = REPO / "boards"
SENSORS_PLUGIN = REPO / "hil_tests" / "vboard" / "sensors.mjs"
CHIPS_DIR = REPO / "hil_tests" / "vboard" / "chips"
MODULES = sorted(
    p.stem for p in FIRMWARE_TESTS_DIR.glob("test_sensors_*.py") if p.stem != "test_sensors_support"
)
BOARDS = ["esp32_devkitc", "pico_w"]
SCRIPT = {
    "bme280": {"t": 21.5, "p": 101325, "h": 45},
    "sht3x": {"t": 21.5, "h": 45},
    "battery": {"mv": 3900},
}


def board_json(board: str) -> Path:
    return BOARDS_DIR / board / "board.json"


def board_options(board: str, script: Path) -> VMOptions:
    profile = json.loads(board_json(board).read_text())
    return VMOptions.board(
        ram_bytes=profile["ram"]["free_heap_bytes"],
        timeout_s=120,
        extra_args=["--board", str(board_json(board)), "--plugin", f"{SENSORS_PLUGIN}={script}"],
    )


@pytest.mark.vm
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("module", MODULES)
def test_sensor_module_in_micropython(module: str, board: str, tmp_path: Path) -> None:
    script = tmp_path / "sensors.json"
    script.write_text(json.dumps(SCRIPT))
    result = run_firmware_test_module(module, options=board_options(board, script))
    summary = [line for line in result.stdout.splitlines() if line.startswith("mptest:")]
    assert summary, f"no summary from the VM:\n{result.output}"
    assert result.returncode == 0 and " 0 failed" in summary[-1], result.output
    for line in result.stdout.splitlines():
        if line.startswith("FIGURE"):
            print(board, line)


def test_chip_emulators_node_tests() -> None:
    tests = sorted(str(p) for p in [*CHIPS_DIR.glob("*.test.mjs"), *CHIPS_DIR.parent.glob("*.test.mjs")])
    proc = subprocess.run(
        [node_executable(), "--test", *tests], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# fail 0$", proc.stdout, re.M), proc.stdout


# --- the sensors script checker: every bad script gives one clear error naming the problem -----------------


@pytest.fixture(scope="module")
def checker():
    proc = subprocess.Popen(
        [node_executable(), str(SENSORS_PLUGIN), "--check-lines", str(board_json("esp32_devkitc"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )

    def check(text: str) -> dict:
        assert proc.stdin and proc.stdout
        proc.stdin.write(json.dumps(text) + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    yield check
    assert proc.stdin
    proc.stdin.close()
    proc.wait(timeout=10)


def run_check(board: str, script: dict | str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "s.json"
    path.write_text(script if isinstance(script, str) else json.dumps(script))
    return subprocess.run(
        [node_executable(), str(SENSORS_PLUGIN), "--check", str(board_json(board)), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ("{not json", "not JSON"),
        ({"bme280": {"t": "warm"}}, "sensors script .*bme280.t: expected a number"),
        ({"bme280": {"p": 5}}, "bme280.p: 5 is outside the chip's range 30000..110000"),
        ({"bme280": {"t": [[0, 20], [0, 21]]}}, r"bme280.t\[1\]\[0\]: times must increase"),
        ({"bme280": {"t": {"base": 20, "period_s": 0}}}, "bme280.t.period_s: must be a number > 0"),
        (
            {"bme280": {"faults": ["crc"]}},
            r'bme280.faults\[0\].kind: "crc" is not one of nack, stuck, missing',
        ),
        (
            {"sht3x": {"faults": [{"kind": "nack", "from_s": 5, "until_s": 2}]}},
            "until_s: must be a number > from_s",
        ),
        ({"bmp180": {}}, "bmp180: unknown sensor"),
        ({"sht3x": {"p": 100000}}, "sht3x.p: unknown key for sht3x"),
    ],
)
def test_bad_scripts_are_named(script: dict | str, problem: str, tmp_path: Path) -> None:
    proc = run_check("esp32_devkitc", script, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(problem, proc.stderr), proc.stderr


def test_good_script_passes(tmp_path: Path) -> None:
    script = {
        "bme280": {
            "t": {"base": 21, "amplitude": 2, "period_s": 60, "noise": 0.4, "noise_step_s": 30, "seed": 3},
            "p": [[0, 100000], [60, 99000]],
            "h": 40,
        },
        "sht3x": {"t": 20, "h": 50, "faults": ["crc", {"kind": "stuck", "from_s": 10, "until_s": 20}]},
        "battery": {"mv": [[0, 4200], [3600, 3300]]},
    }
    proc = run_check("pico_w", script, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
sensor_like = st.fixed_dictionaries(
    {},
    optional={
        "bme280": st.dictionaries(st.sampled_from(["t", "p", "h", "faults", "x"]), json_values, max_size=4),
        "sht3x": st.dictionaries(st.sampled_from(["t", "h", "faults"]), json_values, max_size=3),
        "battery": st.dictionaries(st.sampled_from(["mv"]), json_values, max_size=1),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.one_of(json_values, sensor_like).map(json.dumps) | st.text(max_size=40))
def test_any_script_is_accepted_or_named_never_a_crash(checker, script: str) -> None:
    reply = checker(script)
    assert "crash" not in reply, reply
    if "error" in reply:
        assert reply["error"].startswith("sensors script"), reply
        assert ": " in reply["error"]
