"""Provisioning against virtual boards over their pty: deploy, enroll, registry, self-test, faults."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from provision_fixtures import BIN, GatewaySetup, blank_board

from pinseal_protocol import certificate as cert
from pinseal_protocol import keys
from pinseal_provision import deploy, enroll, fleet, profiles
from pinseal_provision.cli import main as cli_main
from pinseal_provision.device import Board
from pinseal_provision.enroll import EnrollOptions
from pinseal_provision.errors import (
    AlreadyEnrolled,
    BoardGone,
    BoardTimeout,
    FleetKeyMissing,
    NotDeployed,
    PortNotFound,
    VersionMismatch,
)
from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard, mpremote

pytestmark = pytest.mark.vm

PROFILE = profiles.load_profile("esp32_devkitc")


def provision(port: str, opts: EnrollOptions) -> enroll.EnrollReport:
    with Board(port) as b:
        deploy.check_micropython(b, PROFILE)
        deploy.deploy(b, deploy.build(PROFILE))
        return enroll.enroll(b, opts)


def test_full_enroll_of_a_blank_board_through_the_cli(
    board: VirtualBoard, tmp_path: Path, fleet_key: Path, gateway: GatewaySetup
) -> None:
    export = tmp_path / "devices.json"
    args = ["enroll", "--port", board.serial_path, "--deploy", "--fleet-key", str(fleet_key)]
    args += ["--gateway-config", str(gateway.config), "--label", "shed", "--wifi-ssid", "shed-wifi"]
    args += ["--state-dir", str(tmp_path / "state"), "--export", str(export)]
    proc = subprocess.run(
        [str(BIN / "pinseal-provision"), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    kid = report["key_id"]
    assert report["self_test"] == "passed" and report["registered"] == "new"
    # each step said what it did (plain lines: stderr is not a terminal here)
    steps = [line for line in proc.stderr.splitlines() if line.startswith("enroll: done: ")]
    assert [s.split(": ", 3)[-1] for s in steps][:2] == [
        "creating the device key on the device",
        "registered with the gateway",
    ]
    assert "self-test passed" in steps[-1] and "deploy: done: ROMFS image" in proc.stderr

    # mpremote, the official tool, sees the deployed firmware (its packages in the board's ROMFS, /rom), the
    # profile and the certificate.
    listing = mpremote(board.serial_path, "fs", "ls", ":", "+", "fs", "ls", ":/rom/pinseal")
    assert listing.returncode == 0, listing
    for name in (
        "main.py",
        "board.json",
        "cert.cbor",
        "config.json",
        "key.pub",
        "enroll.mpy",
        "identity.mpy",
    ):
        assert name in listing.stdout, (name, listing.stdout)
    got = tmp_path / "cert.cbor"
    assert mpremote(board.serial_path, "fs", "cp", ":cert.cbor", str(got)).returncode == 0
    certified = cert.verify(got.read_bytes(), fleet.load(fleet_key).public_key)
    assert certified.key_id.hex() == kid and certified.board == "esp32_devkitc"
    assert keys.key_id(certified.public_key).hex() == kid

    # The gateway's registry has it, active, with the certified public key; the export has it too.
    assert f"{kid}  active" in gateway.cli("devices", "list")
    registered = {d["kid"]: d for d in json.loads(gateway.cli("devices", "export"))}
    assert registered[kid]["public_key"] == certified.public_key.hex()
    assert [d["kid"] for d in json.loads(export.read_text())] == [kid]

    # The config on the board is what the firmware expects, with the gateway's key and the MQTT password.
    config = json.loads((board.flash_dir / "config.json").read_text())
    assert config["gateway"]["public_key"] == gateway.public_key
    assert config["wifi"]["ssid"] == "shed-wifi" and len(config["mqtt"]["password"]) > 20

    # The status command verifies the certificate and reads the registry.
    proc = subprocess.run(
        [str(BIN / "pinseal-provision"), "status", "--port", board.serial_path, "--fleet-key", str(fleet_key),
         "--gateway-config", str(gateway.config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["certificate"]["key_id"] == kid and status["gateway"] == "active"
    assert status["config"]["mqtt"]["password"] == "***"


def test_the_official_image_without_romfs_gets_mpy_files_and_runs(
    host: BoardHost, tmp_path: Path, fleet_key: Path, gateway: GatewaySetup
) -> None:
    """What a hobbyist has after flashing micropython.org's image: no ROMFS partition. Plain `enroll
    --deploy` (no --no-romfs) installs the packages as .mpy files, says so, and the firmware then runs."""
    board = blank_board(host, tmp_path / "flash", romfs_partition=False)
    try:
        args = ["enroll", "--port", board.serial_path, "--deploy", "--fleet-key", str(fleet_key)]
        args += ["--gateway-config", str(gateway.config), "--state-dir", str(tmp_path / "state")]
        proc = subprocess.run(
            [str(BIN / "pinseal-provision"), *args], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        assert "no ROMFS partition (the official images have none)" in proc.stderr
        assert json.loads(proc.stdout)["self_test"] == "passed"
        installed = sorted(p.name for p in (board.flash_dir / "pinseal").rglob("*") if p.is_file())
        assert "app.mpy" in installed and "enroll.mpy" in installed
        assert not [name for name in installed if name.endswith(".py")]  # compiled, as on a stock board
        assert not board.romfs_image.exists() or board.romfs_image.stat().st_size == 0

        at = board.mark()
        status = subprocess.run(
            [str(BIN / "pinseal-provision"), "status", "--port", board.serial_path],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        board.wait_for_output(rb"pinseal: firmware 0\.1\.0 on MicroPython .*pinseal: starting in", after=at)
    finally:
        board.stop()


def test_enroll_transcript_holds_no_private_key_material(
    board: VirtualBoard, enroll_options: EnrollOptions
) -> None:
    at = board.mark()
    report = provision(board.serial_path, enroll_options)
    seed = (board.flash_dir / "key.seed").read_bytes()
    assert len(seed) == 32 and report.self_test == "passed"
    transcript = bytes(board.output[at:])
    assert report.public_key.encode() in transcript  # the public key did cross: the check can see hex
    b64 = base64.b64encode(seed)
    forms = [seed, seed.hex().encode(), seed.hex().upper().encode(), b64, b64.rstrip(b"=")]
    forms += [base64.urlsafe_b64encode(seed).rstrip(b"="), repr(seed).encode()]
    for form in forms:
        assert form not in transcript
    # nor any 8-byte window of the seed in hex (a partial leak)
    for i in range(0, 32 - 8):
        assert seed[i : i + 8].hex().encode() not in transcript


def test_reenroll_refused_without_force_and_resumed_with_it(
    board: VirtualBoard, enroll_options: EnrollOptions, gateway: GatewaySetup
) -> None:
    first = provision(board.serial_path, enroll_options)
    with Board(board.serial_path) as b, pytest.raises(AlreadyEnrolled):
        enroll.enroll(b, enroll_options)
    enroll_options.force = True
    with Board(board.serial_path) as b:
        again = enroll.enroll(b, enroll_options)
    # the key is kept, the registration reused (its MQTT password came from the board's config)
    assert again.key_id == first.key_id and again.registered == "existing"
    assert gateway.cli("devices", "list").count(first.key_id) == 1


def test_a_new_key_discards_the_old_keys_outbox(
    board: VirtualBoard, enroll_options: EnrollOptions, tmp_path: Path
) -> None:
    """Bundles sealed by the old key can never be accepted under the new one (the gateway refuses them as
    wrong_topic): left in the outbox, they were resent forever and blocked every new reading."""
    first = provision(board.serial_path, enroll_options)
    outbox = tmp_path / "flash" / "outbox"  # the virtual board's flash is this folder
    outbox.mkdir(exist_ok=True)
    (outbox / "1.seg").write_bytes(b"bundles sealed by the old key")
    enroll_options.force = enroll_options.new_key = True
    with Board(board.serial_path) as b:
        again = enroll.enroll(b, enroll_options)
    assert again.key_id != first.key_id and again.registered == "new"
    assert not (outbox / "1.seg").exists()
    assert again.discarded_outbox_files == 1


def test_enroll_resumes_after_a_cut_between_registration_and_config(
    board: VirtualBoard, enroll_options: EnrollOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = enroll._write_checked

    def cut(b: Board, path: str, data: bytes) -> None:
        if path == enroll.CONFIG_PATH:
            raise BoardGone("cut")
        real(b, path, data)

    monkeypatch.setattr(enroll, "_write_checked", cut)
    with pytest.raises(BoardGone):
        provision(board.serial_path, enroll_options)
    monkeypatch.setattr(enroll, "_write_checked", real)
    with Board(board.serial_path) as b:
        report = enroll.enroll(b, enroll_options)  # not "enrolled" yet: no --force needed
    assert report.registered == "existing" and report.self_test == "passed"
    assert not list(enroll_options.state_dir.glob("*.pending.json"))  # the journal is cleared


def test_unplug_mid_deploy_then_rerun_completes(host: BoardHost, tmp_path: Path) -> None:
    flash_dir = tmp_path / "flash"
    b = blank_board(host, flash_dir)
    files = deploy.build(PROFILE)
    copied: list[str] = []
    with Board(b.serial_path, timeout_s=3) as link:

        def pull_the_plug(dest: str, done: int, total: int) -> None:
            copied.append(dest)
            if done > total // 2 and b.state == "running":
                b.power_cut()

        with pytest.raises((BoardTimeout, BoardGone)) as fault:
            deploy.deploy(link, files, pull_the_plug)
    assert "run the same command again" in fault.value.hint or "plug the board back" in fault.value.hint
    b.power_on()
    b.wait_for_output(b">>> ", after=0)
    with Board(b.serial_path) as link:
        report = deploy.deploy(link, files)
        assert report.unchanged, "the files finished before the cut are kept"
        assert report.copied
        # nothing left half-written: every file matches the build, no temporary files remain
        assert not [p for p in link.list_files("/") if p.endswith(".ps-tmp")]
        again = deploy.deploy(link, files)
    assert not again.copied
    b.stop()


def test_board_busy_running_main_is_interrupted(host: BoardHost, tmp_path: Path) -> None:
    flash_dir = tmp_path / "flash"
    flash_dir.mkdir()
    (flash_dir / "main.py").write_text(
        "import asyncio\nasync def main():\n    while True:\n        print('busy')\n"
        "        await asyncio.sleep_ms(20)\nasyncio.run(main())\n"
    )
    b = VirtualBoard(BoardOptions(flash_dir=flash_dir, firmware=None), host=host).start()
    b.wait_for_output(b"busy\r\n")
    with Board(b.serial_path) as link:
        assert link.system().micropython == "1.29.0"
    # A reset pressed while the tool waits: Ctrl-C lands in the new boot (the safe-mode window).
    threading.Timer(0.3, b.reset).start()
    with Board(b.serial_path, interrupt_s=15, timeout_s=4) as link:
        assert link.exec("print(6 * 7)").strip() == "42"
    b.stop()


def test_clear_errors_for_wrong_port_silent_board_missing_firmware_and_fleet_key(
    board: VirtualBoard, tmp_path: Path, enroll_options: EnrollOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(PortNotFound):
        Board("/dev/ttyUSB99")
    assert cli_main(["deploy", "--port", "/dev/ttyUSB99"]) == 1
    assert "what to do" in capsys.readouterr().err

    enroll_options.fleet_key = tmp_path / "nope.key"
    with Board(board.serial_path) as b:
        with pytest.raises(FleetKeyMissing) as missing:
            enroll.enroll(b, enroll_options)
        assert "fleet init" in missing.value.hint
        enroll_options.fleet_key = None
        with pytest.raises(FleetKeyMissing):
            enroll.enroll(b, enroll_options)
        with pytest.raises(NotDeployed):
            enroll.device_info(b)
        # a profile asking for another MicroPython release
        with pytest.raises(VersionMismatch) as mismatch:
            deploy.check_micropython(
                b, {**PROFILE, "micropython": {**PROFILE["micropython"], "version": "1.22.0"}}
            )
        assert "pinseal-provision flash" in mismatch.value.hint
    # a board that is off (or in a bootloader that prints nothing): silent port
    board.power_cut()
    started = time.monotonic()
    with pytest.raises(BoardTimeout) as silent:
        Board(board.serial_path, interrupt_s=1.5).open()
    assert time.monotonic() - started < 10 and "bootloader" in silent.value.hint


def test_config_set_and_revoke(
    board: VirtualBoard,
    enroll_options: EnrollOptions,
    gateway: GatewaySetup,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = provision(board.serial_path, enroll_options)
    port = board.serial_path
    assert cli_main(["config", "set", "--port", port, "sampling.interval_s=30", "wifi.ssid=barn"]) == 0
    config = json.loads((board.flash_dir / "config.json").read_text())
    assert config["sampling"]["interval_s"] == 30 and config["wifi"]["ssid"] == "barn"
    assert cli_main(["config", "set", "--port", port, "sampling.interval_s=0"]) == 2
    assert cli_main(["config", "set", "--port", port, "sampling.bogus=1"]) == 2
    capsys.readouterr()
    assert cli_main(["revoke", "--port", port, "--gateway-config", str(gateway.config), "--wipe"]) == 0
    assert f"{report.key_id}  revoked" in gateway.cli("devices", "list")
    assert not (board.flash_dir / "cert.cbor").exists() and (board.flash_dir / "key.seed").exists()
