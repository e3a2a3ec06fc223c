"""The gateway as an owner installs it: `pip install '<checkout>[gateway]'` into a fresh venv (as pipx does),
then `pinseal-gateway init` and `run` against a real Mosquitto, outside the checkout, with the configuration
found through $PINSEAL_GATEWAY_CONFIG; a device's bundle is acknowledged, `status` answers, SIGTERM stops it.

Everything the gateway writes is under tmp_path (its commands run with HOME there): the venv, the
configuration, the data and the broker's files; pip may fill its own wheel cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pinseal_build.locations import CHECKOUT
from pinseal_devkit.simdevice import SimDevice
from pinseal_gateway import broker
from pinseal_gateway.config_lookup import CONFIG_ENV
from pinseal_protocol import keys

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

CONSTRAINTS = CHECKOUT / "constraints.txt"
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH or venv of the checkout's: the installed package alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.pop(CONFIG_ENV, None)
    return {**env, **extra}


def ok(cmd: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 240) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"the gateway exited ({proc.returncode}):\n{path.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{path.read_text()[-3000:]}")


def test_install_init_and_run_against_mosquitto(tmp_path: Path) -> None:
    started = time.monotonic()
    # the checkout as the owner's clone (a copy: building leaves build/ and *.egg-info behind)
    source = tmp_path / "pinseal"
    shutil.copytree(CHECKOUT, source, ignore=NOT_SOURCES)
    venv, home = tmp_path / "venv", tmp_path / "home"
    home.mkdir()
    env = clean_env(HOME=str(home))
    ok([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet"]
    # pip alone keeps the real HOME: its wheel cache (as tools/tests/test_wheel.py), or PyPI
    ok([*pip, "-c", CONSTRAINTS, f"{source}[gateway]"], tmp_path, clean_env())
    gateway_cli = venv / "bin" / "pinseal-gateway"
    installed = time.monotonic()

    config = tmp_path / "etc" / "gateway.toml"
    data = tmp_path / "var" / "pinseal-gateway"
    mqtt_port, http_port = broker.free_port(), broker.free_port()
    init = [gateway_cli, "init", "--config", config, "--data-dir", data, "--mqtt-port", mqtt_port]
    out = ok([*init, "--http-listen", f"127.0.0.1:{http_port}"], home, env)
    assert "next steps" in out
    env[CONFIG_ENV] = str(config)  # from here on found through the environment, as a shell profile sets it
    public = bytes.fromhex(ok([gateway_cli, "pubkey"], home, env).strip())
    # this test's gateway forwards nowhere: the owner switches the commented key on
    config.write_text(config.read_text().replace('# kind = "http"', 'kind = "none"', 1))

    device = SimDevice(gateway_public_key=keys.load_public_key(public))
    registered = ok([gateway_cli, "devices", "add", device.public_key_hex, "--label", "shed"], home, env)
    device.password = registered.split("mqtt password: ")[1].split()[0]
    broker_dir = config.parent / "mosquitto"
    ok([gateway_cli, "broker-config", "--out", broker_dir], home, env)
    mosquitto = broker.start_mosquitto(broker_dir, mqtt_port)
    log_path = tmp_path / "gateway.log"
    try:
        with log_path.open("ab") as log:
            gateway = subprocess.Popen(
                [gateway_cli, "run"], cwd=home, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=log
            )
        try:
            wait_for(log_path, "receiving bundles", gateway)
            device.connect("127.0.0.1", mqtt_port)
            device.seal_next()
            deadline = time.monotonic() + 30
            while device.acks.empty() and time.monotonic() < deadline:
                device.pump(resend_after_s=2.0)
                time.sleep(0.05)
            ack = device.acks.get(timeout=1)
            assert ack.seq == 0
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status", timeout=10) as response:
                status = json.load(response)
            assert status["counts"]["bundles"] == 1, status
            listed = ok([gateway_cli, "devices", "list"], home, env)
            assert device.kid_hex in listed and "shed" in listed
        finally:
            device.close()
            gateway.terminate()
            assert gateway.wait(30) == 0, log_path.read_text()[-3000:]
    finally:
        broker.stop_mosquitto(mosquitto)
    assert "Traceback" not in log_path.read_text()
    print(f"install {installed - started:.1f} s, init to stop {time.monotonic() - installed:.1f} s")
