"""When the gateway cannot reach or log in to its broker, its log says what to run, not only what failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pinseal_gateway import broker


@contextmanager
def gateway_log(config_path: Path, log_path: Path) -> Iterator[Path]:
    """A real `pinseal-gateway run` writing to log_path, stopped (SIGTERM) afterwards."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pinseal_gateway.cli", "run", "--config", str(config_path)],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def wait_for_line(log_path: Path, text: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if text in line:
                return line
        time.sleep(0.1)
    raise AssertionError(f"no log line with {text!r}:\n{log_path.read_text(errors='replace')[-3000:]}")


def test_no_broker_listening_names_what_to_start(env, tmp_path: Path) -> None:
    env.extra["raw"]["mqtt"]["port"] = broker.free_port()
    with gateway_log(env.write_toml(tmp_path / "gateway.toml"), tmp_path / "gateway.log") as log:
        line = wait_for_line(log, "no broker listens there")
    assert "pinseal-gateway broker-config" in line and "retrying in" in line


def test_a_login_the_broker_refuses_names_the_keys_and_the_fix(env, tmp_path: Path) -> None:
    env.config.mqtt_password_path.write_bytes(b"not-the-gateway-password")
    with gateway_log(env.write_toml(tmp_path / "gateway.toml"), tmp_path / "gateway.log") as log:
        line = wait_for_line(log, "MQTT broker refused the connection")
    assert "mqtt.password_file" in line and "broker-config" in line


def test_a_missing_password_file_says_which_command_writes_it(env, tmp_path: Path) -> None:
    env.config.mqtt_password_path.unlink()
    with gateway_log(env.write_toml(tmp_path / "gateway.toml"), tmp_path / "gateway.log") as log:
        line = wait_for_line(log, "no MQTT password file at")
    assert "pinseal-gateway broker-config" in line
