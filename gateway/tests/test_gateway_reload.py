"""SIGHUP reloads the configuration keys a running gateway can change, and says which need a restart."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import gateway_process

from pinseal_gateway import reload
from pinseal_gateway.config import GatewayConfig, load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_reloadable_keys_apply_and_the_others_are_logged_as_needing_a_restart(tmp_path, caplog):
    path = write(tmp_path / "g.toml", '[gateway]\ndata_dir = "d"\n[batch]\ninterval_s = 60\n')
    running = load_config(path)
    write(
        path,
        '[gateway]\ndata_dir = "d"\nlog_level = "DEBUG"\n[batch]\ninterval_s = 2\n'
        "[devices]\nsilent_after_intervals = 5\n[mqtt]\nport = 1999\n[pipeline]\nverify_process = false\n",
    )
    with caplog.at_level(logging.INFO, logger="pinseal_gateway.reload"):
        new = reload.reload_config(path, running)
    assert new.batch.interval_s == 2.0 and new.devices.silent_after_intervals == 5
    assert new.gateway.log_level == "DEBUG" and logging.getLogger().level == logging.DEBUG
    assert new.mqtt.port == 1883 and new.pipeline.verify_process is True  # unchanged until a restart
    text = caplog.text
    assert "batch.interval_s 60.0 -> 2.0" in text
    assert "mqtt.port changed (1883 -> 1999) but needs a restart; still running with 1883" in text
    assert "pipeline.verify_process changed (True -> False) but needs a restart" in text


def test_a_broken_file_changes_nothing(tmp_path, caplog):
    path = write(tmp_path / "g.toml", "[batch]\ninterval_s = 60\n")
    running = load_config(path)
    for text in ("[batch]\ninterval_s = \n", "[batch]\ninterval_s = -1\n", "[nonsense]\n"):
        write(path, text)
        caplog.clear()
        assert reload.reload_config(path, running) is running
        assert "keeping the running configuration" in caplog.text


def test_a_reload_that_only_fits_with_a_restart_key_changes_nothing(tmp_path, caplog):
    """batch.max_bytes is checked against verify.max_bundle_bytes as the gateway runs it, not as the file
    says it will be after a restart."""
    path = write(tmp_path / "g.toml", "[verify]\nmax_bundle_bytes = 2048\n")
    running = load_config(path)
    write(path, "[verify]\nmax_bundle_bytes = 512\n[batch]\nmax_bytes = 1700\n")
    assert reload.reload_config(path, running) is running
    assert "batch.max_bytes must be at least 3136" in caplog.text


def test_the_command_line_log_level_wins(tmp_path, caplog):
    path = write(tmp_path / "g.toml", "")
    write(path, '[gateway]\nlog_level = "ERROR"\n')
    new = reload.reload_config(path, GatewayConfig(), log_level_fixed=True)
    assert new.gateway.log_level == "INFO"
    assert "--log-level on the command line wins" in caplog.text


def test_sighup_to_a_running_gateway(env, tmp_path):
    """A real `pinseal-gateway run`: SIGHUP after an edit seals the next batch at the new interval at once,
    and a key that needs a restart says so."""
    raw = env.extra["raw"]
    raw["batch"] = {"interval_s": 3600.0}
    config_path = env.write_toml(tmp_path / "gateway.toml")
    log_path = tmp_path / "gateway.log"
    proc = gateway_process.start(config_path, log_path)
    peer = env.device_peer(env.devices[0])
    try:
        gateway_process.wait_for(log_path, "receiving bundles")
        peer.send(env.devices[0].seal())
        peer.ack()  # stored; with a one-hour interval nothing is sealed
        raw["batch"] = {"interval_s": 0.2}
        raw["http"] = {"listen": "127.0.0.1:1"}
        env.write_toml(config_path)
        proc.send_signal(signal.SIGHUP)
        text = gateway_process.wait_for(log_path, "sealed batch 0:", timeout=10)
        assert "config reload: batch.interval_s 3600.0 -> 0.2" in text
        assert "http.listen changed ('127.0.0.1:0' -> '127.0.0.1:1') but needs a restart" in text
        assert proc.poll() is None
    finally:
        peer.close()
        proc.terminate()
        assert proc.wait(20) == 0
    assert "Traceback" not in log_path.read_text()
