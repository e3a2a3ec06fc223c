"""What provisioning shows and leaves behind, on virtual boards through the real CLI: step lines and --json
events, the firmware running again after `status`/`config` (or the REPL with --stay), secrets masked,
REPL traffic only with -v, and deploy refusing an old MicroPython with the image to flash."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from provision_fixtures import BIN, GatewaySetup

from pinseal_provision import deploy, devconfig, enroll, profiles
from pinseal_provision.device import Board
from pinseal_provision.enroll import EnrollOptions
from pinseal_vboard import VirtualBoard

pytestmark = pytest.mark.vm

PROFILE = profiles.load_profile("esp32_devkitc")
BANNER = rb"pinseal: firmware 0\.1\.0 on MicroPython 1\.29\.0"
SECRETS = ("wifi-secret", "mqtt-secret-password")


def provision_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pinseal-provision"), *args], capture_output=True, text=True, timeout=300
    )


def deployed_and_configured(board: VirtualBoard, gateway: GatewaySetup, tmp_path: Path) -> None:
    """The firmware deployed, and a /config.json as enroll writes it (the secrets are test values)."""
    with Board(board.serial_path) as b:
        deploy.deploy(b, deploy.build(PROFILE))
    opts = EnrollOptions(
        fleet_key=None, gateway_config=None, wifi_ssid="shed", wifi_password="wifi-secret", state_dir=tmp_path
    )
    config = enroll.build_config(opts, "mqtt-secret-password", gateway.public_key)
    (board.flash_dir / "config.json").write_bytes(devconfig.encode(config))


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text and secret.encode().hex() not in text


def test_deploy_reports_plain_lines_and_json_events(board: VirtualBoard) -> None:
    plain = provision_cli("deploy", "--port", board.serial_path)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    assert lines[0] == "deploy: done: MicroPython 1.29.0 on webassembly (the profile needs 1.29.0)"
    assert any("file(s) compiled with mpy-cross" in line for line in lines)
    assert any(line.startswith("deploy: done: ROMFS image (") and "written" in line for line in lines)
    assert any(line.endswith("(100 %)") for line in lines)  # the copy's progress, in quarters
    assert lines[-1].startswith("deploy: done: 3 file(s) copied, 0 unchanged, all verified")
    assert "\x1b[" not in plain.stderr  # not a terminal: no escapes, no bars
    assert plain.stdout.strip().startswith(f"{board.serial_path}: 3 file(s) copied")

    # --no-romfs: the packages as .mpy files, so bytes move and progress events come
    scripted = provision_cli("deploy", "--port", board.serial_path, "--no-romfs", "--json")
    assert scripted.returncode == 0, scripted.stderr
    events = [json.loads(line) for line in scripted.stdout.splitlines()]
    assert {e["event"] for e in events} == {"step", "progress", "result"}
    assert all(e["step"] == "deploy" and e["status"] == "done" for e in events if e["event"] == "step")
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["bytes"] for e in progress] == sorted(e["bytes"] for e in progress)
    assert progress[-1]["bytes"] == progress[-1]["total"] > 10_000
    assert events[-1]["event"] == "result" and "copied" in events[-1]["result"]
    assert scripted.stderr == ""


def test_status_restarts_the_firmware_unless_stay(
    board: VirtualBoard, gateway: GatewaySetup, tmp_path: Path
) -> None:
    deployed_and_configured(board, gateway, tmp_path)
    at = board.mark()
    proc = provision_cli("status", "--port", board.serial_path)
    assert proc.returncode == 0, proc.stderr
    assert "soft reset: the firmware runs again" in proc.stderr
    # the board boots its firmware again: main.py's version line, then the application's start
    board.wait_for_output(rb"soft reboot.*" + BANNER + rb".*pinseal: starting in", timeout_s=30, after=at)
    status = json.loads(proc.stdout)
    assert status["versions"] == {"firmware": "0.1.0", "micropython": "1.29.0"}
    assert status["config"]["wifi"]["password"] == "***" and status["config"]["mqtt"]["password"] == "***"
    assert_no_secrets(proc.stdout, proc.stderr)

    at = board.mark()
    proc = provision_cli("status", "--port", board.serial_path, "--stay")  # interrupts the running firmware
    assert proc.returncode == 0, proc.stderr
    assert "left at the REPL (--stay)" in proc.stderr
    time.sleep(4)  # longer than the safe-mode window: a restarted firmware would have printed by now
    after = bytes(board.output[at:])
    assert b"soft reboot\r\npinseal:" not in after and after.endswith(b">>> ")


def test_config_show_and_set_mask_secrets_and_echo_traffic_only_with_v(
    board: VirtualBoard, gateway: GatewaySetup, tmp_path: Path
) -> None:
    deployed_and_configured(board, gateway, tmp_path)
    quiet = provision_cli("config", "show", "--port", board.serial_path, "--stay")
    assert quiet.returncode == 0, quiet.stderr
    shown = json.loads(quiet.stdout)
    assert shown["wifi"] == {"ssid": "shed", "password": "***"} and shown["mqtt"]["password"] == "***"
    assert "_ps_" not in quiet.stderr  # no REPL traffic without -v

    verbose = provision_cli("-v", "config", "show", "--port", board.serial_path, "--stay")
    assert verbose.returncode == 0, verbose.stderr
    assert (
        "pinseal_provision.device.traffic" in verbose.stderr
        and "> _ps_hashes(['/config.json'])" in verbose.stderr
    )
    assert "_ps_read(...)" in verbose.stderr  # the file's bytes as a size only
    assert_no_secrets(quiet.stdout, quiet.stderr, verbose.stdout, verbose.stderr)

    at = board.mark()
    changed = provision_cli("config", "set", "--port", board.serial_path, "wifi.password=wifi-secret")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["wifi"]["password"] == "***"
    assert "/config.json written and verified" in changed.stderr and "soft reset" in changed.stderr
    assert_no_secrets(changed.stdout, changed.stderr)
    board.wait_for_output(BANNER + rb".*pinseal: starting in", timeout_s=30, after=at)
    assert json.loads((board.flash_dir / "config.json").read_text())["wifi"]["password"] == "wifi-secret"


def test_a_refused_config_value_leaves_the_firmware_running(
    board: VirtualBoard, gateway: GatewaySetup, tmp_path: Path
) -> None:
    deployed_and_configured(board, gateway, tmp_path)
    before = (board.flash_dir / "config.json").read_bytes()
    board.reset()
    board.wait_for_output(BANNER + rb".*pinseal: starting in", timeout_s=30)

    # a typo is caught on the host: the running firmware is not even interrupted
    at = board.mark()
    typo = provision_cli("config", "set", "--port", board.serial_path, "sampling.bogus=1")
    assert typo.returncode == 2 and "unknown key sampling.bogus" in typo.stderr
    assert b"KeyboardInterrupt" not in bytes(board.output[at:])

    # a value only the board's config can refuse: stopped to check it, then restarted all the same
    at = board.mark()
    refused = provision_cli("config", "set", "--port", board.serial_path, "sampling.interval_s=0")
    assert refused.returncode == 2 and "sampling.interval_s must be >= 1" in refused.stderr
    assert "soft reset: the firmware runs again" in refused.stderr
    board.wait_for_output(rb"KeyboardInterrupt.*soft reboot.*" + BANNER, timeout_s=30, after=at)
    assert (board.flash_dir / "config.json").read_bytes() == before


def test_deploy_refuses_an_older_micropython_and_names_the_image(board: VirtualBoard, tmp_path: Path) -> None:
    newer = {
        **PROFILE,
        "micropython": {**PROFILE["micropython"], "version": "1.30.0", "min_version": "1.30.0"},
    }
    path = tmp_path / "board.json"
    path.write_text(json.dumps(newer))
    # --ignore-version accepts another release, never one older than the minimum
    proc = provision_cli("deploy", "--port", board.serial_path, "--board", str(path), "--ignore-version")
    assert proc.returncode == 1
    assert "the board runs MicroPython 1.29.0, older than 1.30.0" in proc.stderr
    assert (
        "what to do: flash ESP32_GENERIC-v1.30.0.bin: pinseal-provision flash --board esp32_devkitc "
        "(downloads it; or --image FILE)" in proc.stderr
    )
    assert not (board.flash_dir / "main.py").exists()  # nothing was copied
