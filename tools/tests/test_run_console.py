"""`make run`'s console: one run per state folder, children that die are reported, readings in units, and
sensor curves the virtual boards accept. The whole run is tested in hil_tests/tests/test_stack.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_devkit import run, weather
from pinseal_devkit.reading_feed import ReadingFeed, shown
from pinseal_devkit.runlock import lock_state_folder
from pinseal_devkit.stack import Stack
from pinseal_gateway.store import devices
from pinseal_gateway.store.bundles import INSERT_READING
from pinseal_gateway.store.db import Database
from pinseal_protocol import keys
from pinseal_vboard import load_profile
from pinseal_vboard.vm import REPO, node_executable


def test_a_second_run_on_the_same_folder_says_who_holds_it_and_starts_nothing(tmp_path: Path) -> None:
    held = lock_state_folder(tmp_path)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pinseal_devkit.run", "--workdir", str(tmp_path), "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        held.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{tmp_path} is in use by another make run (pid " in proc.stderr
    assert "--workdir" in proc.stderr
    assert not (tmp_path / "gateway").exists() and not (tmp_path / "boards").exists()
    lock_state_folder(tmp_path).close()  # free again once the holder is gone


def test_a_child_process_that_dies_is_reported_with_its_log(tmp_path: Path, capsys) -> None:
    stack = Stack(tmp_path)
    log = stack.log_of("gateway")
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", "print('ERROR no broker at 127.0.0.1:1'); raise SystemExit(3)"], stdout=out
        )
    child.wait(10)
    stack.procs["gateway"] = child
    assert run.report_exits(stack) == ["gateway"]
    out = capsys.readouterr().out
    assert "pinseal: gateway exited with code 3" in out and "ERROR no broker at 127.0.0.1:1" in out
    assert run.report_exits(stack) == []  # once


def test_readings_are_shown_in_units_people_read(tmp_path: Path) -> None:
    assert shown("2131", "Cel", None) == "2131.0 °C"
    assert shown("21.31", "Cel", None) == "21.3 °C"
    assert shown("101325", "Pa", None) == "1013.2 hPa"
    assert shown("3.912", "V", None) == "3.91 V"
    assert shown(None, "Cel", "ENODEV") == "ENODEV"
    db = Database(tmp_path / "gateway.sqlite")
    public = keys.public_key_bytes(Ed25519PrivateKey.from_private_bytes(bytes(32)))
    device = db.run_sync(
        lambda c: devices.add_device(c, public, label="board1", expected_interval_s=60, password_hash="x")
    )
    feed = ReadingFeed(tmp_path / "gateway.sqlite")
    feed.start_at_end()
    rows = [
        (b"h" * 32, device.kid, 7, 1, "t", "Cel", "21.31", None),
        (b"h" * 32, device.kid, 7, 1, "h", "%RH", "48.2", None),
        (b"h" * 32, device.kid, 7, 1, "p", "Pa", "101325", None),
        (b"h" * 32, device.kid, 7, 1, "t:sht3x", "Cel", None, "EIO"),
        (b"h" * 32, device.kid, 7, 1, "bat", "V", "3.912", None),
        (b"h" * 32, device.kid, 8, 2, "t", "Cel", "21.4", None),
    ]

    def insert(conn):
        with conn:
            conn.executemany(INSERT_READING, rows)

    db.run_sync(insert)
    db.close()
    assert list(feed.lines()) == [
        "board1 21.3 °C 48 %RH 1013.2 hPa t:sht3x EIO 3.91 V",
        "board1 21.4 °C",
    ]
    assert list(feed.lines()) == []  # each once


@pytest.mark.parametrize("board", ["esp32_devkitc", "pico_w", "pico2_w", "esp32s3_devkitc"])
def test_the_daily_curves_are_scripts_the_virtual_board_accepts(board: str, tmp_path: Path) -> None:
    path = weather.write_script(tmp_path / "s.json", "board1", load_profile(board), now=1_767_225_600)
    proc = subprocess.run(
        [node_executable(), str(REPO / "hil_tests/vboard/sensors.mjs"), "--check",
         str(REPO / "boards" / board / "board.json"), str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    script = json.loads(path.read_text())
    kinds = sorted({s["type"] for s in load_profile(board)["sensors"]})
    assert set(script) == {*kinds, "battery"}
    other = weather.script_for("board2", kinds, True, now=1_767_225_600)
    assert script[kinds[0]]["t"]["seed"] != other[kinds[0]]["t"]["seed"]  # a curve of its own per board
