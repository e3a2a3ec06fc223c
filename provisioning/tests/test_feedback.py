"""What the tool tells people and scripts, without a board: the three progress renderers, secret masking,
versions and image names, `--version` on every console script, and the Makefile's flash/enroll targets."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from provision_fixtures import BIN
from rich.console import Console

from pinseal_provision import devconfig, masking, profiles, versions
from pinseal_provision.errors import BadInput
from pinseal_provision.progress import JsonReporter, PlainReporter, RichReporter, for_output

ROOT = Path(__file__).resolve().parents[2]


def test_rich_reporter_draws_bars_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system="truecolor")
    reporter = for_output(False, console)
    assert isinstance(reporter, RichReporter)
    reporter.step("deploy", "done", "35 file(s) compiled")
    with reporter.transfer("deploy", "copy to /dev/pts/9") as update:
        for done in (0, 4096, 8192):
            update(done, 8192)
    text = buffer.getvalue()
    assert "deploy: done: 35 file(s) compiled" in text
    assert "\x1b[" in text and "━" in text  # terminal escapes and the bar itself
    assert "deploy: copy to /dev/pts/9" in text and "8.2/8.2 kB" in text


def test_plain_reporter_when_not_a_terminal_prints_lines_and_quarters() -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    reporter = for_output(False, console)
    assert type(reporter) is PlainReporter
    err, out = io.StringIO(), io.StringIO()
    reporter = PlainReporter(err, out)
    with reporter.transfer("flash", "write image") as update:
        for done in range(0, 1001, 10):
            update(done, 1000)
    reporter.step("flash", "done", "written at 0x1000", port="/dev/ttyUSB0")
    reporter.result({"ok": 1})
    lines = err.getvalue().splitlines()
    assert [line.rsplit("(", 1)[1] for line in lines[:-1]] == ["0 %)", "25 %)", "50 %)", "75 %)", "100 %)"]
    assert lines[-1] == "/dev/ttyUSB0: flash: done: written at 0x1000"
    assert "\x1b[" not in err.getvalue()
    assert json.loads(out.getvalue()) == {"ok": 1}


def test_json_reporter_writes_one_object_per_line() -> None:
    out = io.StringIO()
    reporter = JsonReporter(out)
    reporter.step("enroll", "done", "config written")
    with reporter.transfer("deploy", "copy") as update:
        update(100, 200)
        update(100, 200)  # unchanged: not repeated
        update(200, 200)
    reporter.result({"key_id": "ab"})
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events == [
        {"event": "step", "step": "enroll", "status": "done", "detail": "config written"},
        {"event": "progress", "step": "deploy", "bytes": 100, "total": 200},
        {"event": "progress", "step": "deploy", "bytes": 200, "total": 200},
        {"event": "result", "result": {"key_id": "ab"}},
    ]
    with pytest.raises(ValueError):
        reporter.step("enroll", "finished")


def test_secrets_are_masked_and_public_keys_are_not() -> None:
    config = {
        "wifi": {"ssid": "shed", "password": "wifi-secret"},
        "mqtt": {"host": "10.0.0.2", "password": "mqtt-secret", "api_token": "t0k"},
        "gateway": {"public_key": "ab" * 32},
        "extra": [{"psk": "x"}],
    }
    shown = masking.masked(config)
    assert shown["wifi"] == {"ssid": "shed", "password": "***"}
    assert shown["mqtt"]["password"] == "***" and shown["mqtt"]["api_token"] == "***"
    assert shown["gateway"]["public_key"] == "ab" * 32 and shown["extra"] == [{"psk": "***"}]
    assert masking.masked({"wifi": {"password": ""}}) == {"wifi": {"password": ""}}  # "not set" stays visible
    assert config["wifi"]["password"] == "wifi-secret"  # a copy: the original is untouched


def test_config_errors_do_not_print_secret_values() -> None:
    defaults = devconfig.firmware_defaults()
    config = {"wifi": {"ssid": "s", "password": 12345678}, "mqtt": {"host": "h", "password": "p"}}
    config["gateway"] = {"public_key": "ab" * 32}
    with pytest.raises(BadInput) as bad:
        devconfig.check(config, defaults)
    assert "wifi.password" in str(bad.value) and "12345678" not in str(bad.value)
    with pytest.raises(BadInput) as bad:
        devconfig.parse_assignment("wifi.password", defaults)  # no "=": the whole text is not echoed
    assert "expected SECTION.KEY=VALUE" in str(bad.value)


def test_versions_image_names_and_minimum() -> None:
    assert versions.parse_release("1.29.0") == (1, 29, 0)
    assert versions.parse_release("1.24") == (1, 24, 0) < versions.parse_release("1.29.0")
    with pytest.raises(BadInput):
        versions.parse_release("v1")
    names = {b: versions.image_name(p) for b, p in profiles.all_profiles().items()}
    assert names["esp32_devkitc"] == "ESP32_GENERIC-20260824-v1.29.0.bin"  # the profile's official file
    assert names["pico_w"] == "RPI_PICO_W-20260824-v1.29.0.uf2"
    assert versions.image_name(profiles.load_profile("pico_w"), "1.30.0") == "RPI_PICO_W-v1.30.0.uf2"
    profile = profiles.load_profile("esp32_devkitc")
    assert versions.minimum_micropython(profile) == "1.29.0"  # no min_version: the profile's release
    lower = {**profile, "micropython": {**profile["micropython"], "min_version": "1.25.0"}}
    assert versions.minimum_micropython(lower) == "1.25.0"
    assert versions.flash_hint(profile) == (
        "flash ESP32_GENERIC-20260824-v1.29.0.bin: "
        "pinseal-provision flash --board esp32_devkitc (downloads it; or --image FILE)"
    )
    assert versions.firmware_version(profiles.FIRMWARE_DIR) == "0.1.0"


@pytest.mark.parametrize("program", ["pinseal-gateway", "pinseal-ingest", "pinseal-provision"])
def test_every_console_script_has_version(program: str) -> None:
    proc = subprocess.run([str(BIN / program), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{program} 0.1.0")
    if program == "pinseal-provision":
        assert "deploys pinseal firmware 0.1.0 for MicroPython 1.29" in proc.stdout


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """`make -n ARGS`: the commands make would run, continuation lines joined, spaces collapsed."""
    # run from `make test` too: a clean environment, so the outer make's MAKEFLAGS do not add directory lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    proc.stdout = "\n".join(" ".join(line.split()) for line in proc.stdout.replace("\\\n", " ").splitlines())
    return proc


def test_make_flash_wraps_the_cli_and_needs_a_board() -> None:
    proc = make("flash", "BOARD=pico_w", "PORT=/dev/ttyACM0")
    assert proc.returncode == 0, proc.stderr
    assert ".venv/bin/pinseal-provision flash --board pico_w --port /dev/ttyACM0" in proc.stdout
    without_port = make("flash", "BOARD=esp32_devkitc", "IMAGE=fw.bin")
    assert ".venv/bin/pinseal-provision flash --board esp32_devkitc --image fw.bin" in without_port.stdout
    missing = make("flash")
    assert missing.returncode != 0 and not missing.stdout  # stops before anything would run
    assert "make flash needs BOARD=" in missing.stderr and "esp32_devkitc" in missing.stderr


def test_make_enroll_passes_its_options_and_keeps_the_password_off_the_command_line() -> None:
    proc = make("enroll", "BOARD=pico_w", "WIFI_SSID=shed", "WIFI_PASSWORD=hunter2", "MQTT_HOST=10.0.0.2")
    assert proc.returncode == 0, proc.stderr
    assert "pinseal-provision enroll --deploy --board pico_w" in proc.stdout
    assert "--wifi-ssid 'shed' --mqtt-host 10.0.0.2" in proc.stdout and "--gateway-config" in proc.stdout
    assert "hunter2" not in proc.stdout
    missing = make("enroll", "BOARD=pico_w", "WIFI_SSID=shed")
    assert missing.returncode != 0 and "make enroll needs MQTT_HOST=" in missing.stderr


def test_make_help_lists_flash_and_enroll() -> None:
    out = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "make flash " in out and "make enroll " in out
