"""The virtual board's network (hil_tests/vboard/net.mjs, the mpy shims network/ntptime/tls/ssl/_vb_streams).

The MicroPython side lives in hil_tests/firmware_tests/test_net_board.py and runs here one pytest test a
function, in board mode (VMOptions.board()) with the net plugin, against a real Mosquitto with a plain and a
TLS listener on free loopback ports (pinseal_hil.tls_broker). The cases here need the host: a paho subscriber
that sees what the board published, the settings file's validation, the round-trip figure.
"""

from __future__ import annotations

import ast
import json
import queue
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_hil.tls_broker import TestBroker, make_pki, start_test_broker
from pinseal_vboard.vm import (
    DEFAULT_MOUNTS,
    FIRMWARE_TESTS_DIR,
    REPO,
    VMOptions,
    VMResult,
    run_code,
    run_firmware_test_module,
)

pytestmark = [pytest.mark.vm, pytest.mark.broker]

NET_PLUGIN = REPO / "hil_tests" / "vboard" / "net.mjs"
NET_MODULE = "test_net_board"
SSID = "pinseal-lab"
PASSWORD = "lab-password-1"
CONNECT_MS = 150


def _firmware_test_names() -> list[str]:
    tree = ast.parse((FIRMWARE_TESTS_DIR / f"{NET_MODULE}.py").read_text())
    return sorted(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    )


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    running = start_test_broker(tmp_path_factory.mktemp("broker"), tls=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def wrong_ca_der(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_pki(tmp_path_factory.mktemp("other-pki"), ca_name="someone else's CA").ca_der


def _write_settings(path: Path, **extra: object) -> Path:
    settings = {"networks": [{"ssid": SSID, "password": PASSWORD}], "connect_ms": CONNECT_MS, **extra}
    path.write_text(json.dumps(settings))
    return path


def _board_options(tmp_path: Path, settings: Path, params_dir: Path | None = None) -> VMOptions:
    mounts = DEFAULT_MOUNTS + (((params_dir, "/netparams"),) if params_dir else ())
    return VMOptions.board(timeout_s=120, mounts=mounts, extra_args=["--plugin", f"{NET_PLUGIN}={settings}"])


def _params_dir(tmp_path: Path, broker: TestBroker, wrong_ca: bytes, topic: str, payload: str) -> Path:
    assert broker.pki is not None
    d = tmp_path / "netparams"
    d.mkdir()
    (d / "ca.der").write_bytes(broker.pki.ca_der)
    (d / "wrong_ca.der").write_bytes(wrong_ca)
    params = {
        "port": broker.port,
        "tls_port": broker.tls_port,
        "ssid": SSID,
        "password": PASSWORD,
        "connect_ms": CONNECT_MS,
        "topic": topic,
        "payload": payload,
    }
    (d / "params.json").write_text(json.dumps(params))
    return d


class Subscriber:
    """A paho client on the host, subscribed before the board publishes."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{secrets.token_hex(4)}")
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=0)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put(True)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        subscribed.get(timeout=10)

    def get(self, timeout: float = 10.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _run_net_test(
    name: str,
    tmp_path: Path,
    broker: TestBroker,
    wrong_ca: bytes,
    topic: str,
    payload: str,
    **settings: object,
) -> VMResult:
    params = _params_dir(tmp_path, broker, wrong_ca, topic, payload)
    options = _board_options(tmp_path, _write_settings(tmp_path / "net.json", **settings), params)
    return run_firmware_test_module(NET_MODULE, name, options)


WIFI_PORT_TESTS = {
    "test_wlan_goes_idle_connecting_got_ip_and_back",
    "test_wrong_password_and_missing_ap_as_the_port_reports_them",
}


@pytest.mark.parametrize("name", _firmware_test_names())
def test_net_in_board_mode(name: str, tmp_path: Path, mqtt_broker: TestBroker, wrong_ca_der: bytes) -> None:
    topic = f"vboard/test/{secrets.token_hex(4)}"
    payload = f"reading-{secrets.token_hex(8)}"
    sub = Subscriber(mqtt_broker.port, topic + "/#")
    try:
        result = _run_net_test(name, tmp_path, mqtt_broker, wrong_ca_der, topic, payload)
        assert f"PASS {name}" in result.stdout, result.output
        assert result.returncode == 0, result.output
        if name == "test_mqtt_publish_qos0_reaches_a_host_subscriber":
            assert sub.get() == (topic, payload.encode())
        if name == "test_tls_round_trip_with_verification":
            assert sub.get() == (topic + "/tls", payload.encode())
    finally:
        sub.close()


@pytest.mark.parametrize("name", sorted(WIFI_PORT_TESTS))
def test_wifi_as_the_pico_w_reports_it(
    name: str, tmp_path: Path, mqtt_broker: TestBroker, wrong_ca_der: bytes
) -> None:
    result = _run_net_test(name, tmp_path, mqtt_broker, wrong_ca_der, "vboard/x", "x", port="rp2")
    assert f"PASS {name}" in result.stdout, result.output
    assert "port rp2" in result.stdout or name != "test_wlan_goes_idle_connecting_got_ip_and_back", (
        result.output
    )


def test_round_trip_figure(tmp_path: Path, mqtt_broker: TestBroker, wrong_ca_der: bytes) -> None:
    name = "test_round_trip_time_through_the_bridge"
    result = _run_net_test(name, tmp_path, mqtt_broker, wrong_ca_der, "vboard/x", "x")
    m = re.search(r"RTT_MS ([0-9.]+)", result.stdout)
    assert m, result.output
    # A PINGREQ/PINGRESP round trip board -> Node -> Mosquitto -> back, in board RAM mode. Loose bound only:
    # timing belongs in benchmarks.
    assert float(m.group(1)) < 100, result.output


def test_module_skips_without_the_plugin() -> None:
    result = run_firmware_test_module(NET_MODULE, options=VMOptions(timeout_s=120))
    assert result.returncode == 0, result.output
    assert " 0 passed, 0 failed" in result.stdout, result.output


# --- settings file and controls: bad input gives a clear error ---


def _run_with_settings(tmp_path: Path, text: str, code: str = "import network\nprint('ok')\n") -> VMResult:
    settings = tmp_path / "net.json"
    settings.write_text(text)
    return run_code(code, _board_options(tmp_path, settings))


def test_a_settings_file_that_is_not_json_is_a_clear_error(tmp_path: Path) -> None:
    result = _run_with_settings(tmp_path, "{not json")
    assert result.returncode != 0
    assert "vboard net: settings file" in result.stderr and "not valid JSON" in result.stderr, result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"wifi": "sideways"}', '"wifi" must be "up" or "down"'),
        ('{"delay_ms": -5}', '"delay_ms" must be a number of milliseconds'),
        ('{"networks": [{"ssid": ""}]}', '"networks" must be a list'),
        ('{"ntp": {"offset": 3}}', 'unknown key "ntp.offset"'),
        ('{"delay": 10}', 'unknown key "delay"'),
        ('{"port": "esp8266"}', '"port" must be one of esp32, rp2'),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    result = _run_with_settings(tmp_path, text)
    assert result.returncode != 0
    assert message in result.stderr, result.output


def test_a_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    options = VMOptions.board(timeout_s=60, extra_args=["--plugin", f"{NET_PLUGIN}={tmp_path / 'nope.json'}"])
    result = run_code("print('ok')\n", options)
    assert result.returncode != 0
    assert "cannot read settings file" in result.stderr, result.output


def test_a_bad_control_is_named(tmp_path: Path) -> None:
    # A bad control throws in JS; called from the VM (vboard_control.send) that ends the run with the message.
    code = "import vboard_control, json\nvboard_control.send('net', json.dumps({'refuse': 'yes'}))\n"
    result = _run_with_settings(tmp_path, "{}", code)
    assert result.returncode != 0
    assert '"refuse" must be true or false, got "yes"' in result.stderr, result.output


def test_controls_report_the_state(tmp_path: Path) -> None:
    code = (
        "import vboard_control, json\n"
        "s = json.loads(vboard_control.send('net', json.dumps({'delay_ms': 25, 'refuse': True})))\n"
        "c = s['settings']\n"
        "print('state', c['delay_ms'], c['refuse'], c['port'], s['isconnected'])\n"
    )
    result = _run_with_settings(tmp_path, "{}", code)
    assert result.returncode == 0, result.output
    assert "state 25 True esp32 False" in result.stdout, result.output


def test_asyncio_open_connection_is_installed_for_unmodified_firmware(tmp_path: Path) -> None:
    code = (
        "import asyncio\n"
        "from asyncio import open_connection, StreamReader, StreamWriter\n"
        "import network, ntptime, ssl, tls\n"
        "print('ok', StreamReader is StreamWriter, network.STAT_GOT_IP)\n"
    )
    result = _run_with_settings(tmp_path, "{}", code)
    assert result.returncode == 0, result.output
    assert "ok True 1010" in result.stdout, result.output
