"""When the gateway cannot reach or log in to its broker, its log says what to run, not only what failed."""

from __future__ import annotations

from pathlib import Path

import gateway_process

from pinseal_gateway import broker


def test_no_broker_listening_names_what_to_start(env, tmp_path: Path) -> None:
    env.extra["raw"]["mqtt"]["port"] = broker.free_port()
    with gateway_process.running(env.write_toml(tmp_path / "gateway.toml"), tmp_path / "gateway.log"):
        line = gateway_process.line_with(tmp_path / "gateway.log", "no broker listens there")
    assert "pinseal-gateway broker-config" in line and "retrying in" in line


def test_a_login_the_broker_refuses_names_the_keys_and_the_fix(env, tmp_path: Path) -> None:
    env.config.mqtt_password_path.write_bytes(b"not-the-gateway-password")
    with gateway_process.running(env.write_toml(tmp_path / "gateway.toml"), tmp_path / "gateway.log"):
        line = gateway_process.line_with(tmp_path / "gateway.log", "MQTT broker refused the connection")
    assert "mqtt.password_file" in line and "broker-config" in line


def test_a_missing_password_file_says_which_command_writes_it(env, tmp_path: Path) -> None:
    env.config.mqtt_password_path.unlink()
    with gateway_process.running(env.write_toml(tmp_path / "gateway.toml"), tmp_path / "gateway.log"):
        line = gateway_process.line_with(tmp_path / "gateway.log", "no MQTT password file at")
    assert "pinseal-gateway broker-config" in line
