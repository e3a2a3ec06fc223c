"""The device's MQTT transport (firmware/pinseal/transport/mqtt.py) in the MicroPython VM, real broker.

hil_tests/firmware_tests/test_mqtt_client.py runs one function a VM, in board mode with the net plugin,
against a Mosquitto configured as the gateway configures it (pinseal_gateway.broker: no anonymous clients,
`$7$` password file, the device ACL patterns, persistence) plus a TLS listener with a throwaway CA
(pinseal_hil.tls_broker.make_pki). The host side:

- writes /mqttparams/params.json (broker ports, the device's key id and password, another device's key id,
  CA PEMs, the ack to expect);
- watches the broker as the gateway does (its user reads every up topic, QoS 1, persistent session) and
  checks what the device's messages did or did not reach;
- performs actions a test asks for by printing `HOST <action>`: publish an ack, publish an oversized
  message, stop the broker and start it again on the same port.
"""

from __future__ import annotations

import getpass
import json
import queue
import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_gateway import broker
from pinseal_gateway.store.devices import mosquitto_password_hash
from pinseal_hil.tls_broker import Pki, make_pki
from pinseal_vboard.vm import (
    DEFAULT_MOUNTS,
    FIRMWARE_TESTS_DIR,
    REPO,
    VMOptions,
    VMResult,
    node_executable,
    run_code,
    vm_command,
)

pytestmark = [pytest.mark.vm, pytest.mark.broker]

MODULE = "test_mqtt_client"
NET_PLUGIN = REPO / "hil_tests" / "vboard" / "net.mjs"
SSID = "pinseal-lab"
WIFI_PASSWORD = "lab-password-1"
CONNECT_MS = 150
GATEWAY_USER = "pinseal-gateway"


@dataclass
class Broker:
    """Mosquitto with the gateway's auth: `port` plain, `tls_port` TLS; restartable on the same ports."""

    conf_dir: Path
    port: int
    tls_port: int
    pki: Pki
    passwords: dict[str, str]
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.proc = broker.start_mosquitto(self.conf_dir, self.port)
        if not broker.wait_for_port("127.0.0.1", self.tls_port, 10.0):
            raise RuntimeError("Mosquitto's TLS listener did not open")

    def stop(self) -> None:
        if self.proc is not None:
            broker.stop_mosquitto(self.proc)
            self.proc = None


def _start_broker(conf_dir: Path, users: dict[str, str]) -> Broker:
    port = broker.free_port()
    tls_port = broker.free_port()
    while tls_port == port:
        tls_port = broker.free_port()
    pki = make_pki(conf_dir / "pki")
    broker_users = [
        broker.gateway_user(name, mosquitto_password_hash(pw))
        if name == GATEWAY_USER
        else broker.BrokerUser(name, mosquitto_password_hash(pw))
        for name, pw in users.items()
    ]
    paths = broker.write_broker_config(conf_dir, host="127.0.0.1", port=port, users=broker_users)
    conf = paths["conf"].read_text()
    assert f"user {getpass.getuser()}" in conf
    tls_lines = [
        f"listener {tls_port} 127.0.0.1",
        f"cafile {pki.ca_pem}",
        f"certfile {pki.cert_pem}",
        f"keyfile {pki.key_pem}",
    ]
    paths["conf"].write_text(conf + "\n".join(tls_lines) + "\n")
    running = Broker(conf_dir, port, tls_port, pki, users)
    running.start()
    return running


class Gateway:
    """A host client as the gateway's user: reads every up topic (QoS 1, persistent), writes acks."""

    def __init__(self, b: Broker) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"gw-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.username_pw_set(GATEWAY_USER, b.passwords[GATEWAY_USER])
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("pinseal/v1/+/up", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put(True)
        self.client.connect("127.0.0.1", b.port, keepalive=5)
        self.client.loop_start()
        subscribed.get(timeout=10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def drain(self, seconds: float) -> list[tuple[str, bytes]]:
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def device() -> dict[str, str]:
    return {
        "kid": secrets.token_hex(16),
        "password": secrets.token_urlsafe(18),
        "other_kid": secrets.token_hex(16),
    }


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory, device: dict[str, str]) -> Iterator[Broker]:
    users = {
        device["kid"]: device["password"],
        device["other_kid"]: secrets.token_urlsafe(18),
        GATEWAY_USER: secrets.token_urlsafe(18),
    }
    running = _start_broker(tmp_path_factory.mktemp("broker"), users)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def gateway(mosquitto: Broker) -> Iterator[Gateway]:
    gw = Gateway(mosquitto)
    try:
        yield gw
    finally:
        gw.close()


@pytest.fixture(scope="module")
def wrong_ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_pki(tmp_path_factory.mktemp("other-pki"), ca_name="someone else's CA").ca_pem.read_text()


def _options(tmp_path: Path, params: dict[str, object], timeout_s: float = 120) -> VMOptions:
    d = tmp_path / "mqttparams"
    d.mkdir(exist_ok=True)
    (d / "params.json").write_text(json.dumps(params))
    settings = tmp_path / "net.json"
    settings.write_text(
        json.dumps({"networks": [{"ssid": SSID, "password": WIFI_PASSWORD}], "connect_ms": CONNECT_MS})
    )
    return VMOptions.board(
        timeout_s=timeout_s,
        mounts=(*DEFAULT_MOUNTS, (d, "/mqttparams")),
        extra_args=["--plugin", f"{NET_PLUGIN}={settings}"],
    )


def _run_streaming(name: str, options: VMOptions, actions: dict[str, Callable[[], None]]) -> VMResult:
    """Runs one test function in the VM, performing `HOST <action>` requests as its lines arrive."""
    code = (
        "import mptest\n"
        f"failed = await mptest.run_module({MODULE!r}, {name!r})\n"
        "if failed:\n"
        "    raise SystemExit(1)\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
        script = Path(f.name)
    errors: list[str] = []
    try:
        proc = subprocess.Popen(
            [node_executable(), *vm_command(script, options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        stderr_lines: list[str] = []
        reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr or []), daemon=True)
        reader.start()
        out: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            m = re.match(r"HOST (\w+)", line)
            if m:
                action = actions.get(m.group(1))
                if action is None:
                    errors.append(f"unknown host action {m.group(1)}")
                else:
                    action()
        proc.wait(timeout=options.timeout_s + 30)
        reader.join(timeout=10)
    finally:
        script.unlink(missing_ok=True)
    return VMResult(proc.returncode, "".join(out), "".join(stderr_lines) + "".join(e + "\n" for e in errors))


def _firmware_test_names() -> list[str]:
    import ast

    tree = ast.parse((FIRMWARE_TESTS_DIR / f"{MODULE}.py").read_text())
    return sorted(
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    )


ACK = bytes.fromhex("d28443a10127a0") + secrets.token_bytes(40)  # opaque to the transport: it only carries it
LONG_ACK = bytes.fromhex("d28443a10127a0") + secrets.token_bytes(1500)  # e.g. a rejection with a long reason


def _params(b: Broker, device: dict[str, str], wrong_ca_pem: str, payload: str) -> dict[str, object]:
    return {
        "port": b.port,
        "tls_port": b.tls_port,
        "kid": device["kid"],
        "password": device["password"],
        "other_kid": device["other_kid"],
        "ca_pem": b.pki.ca_pem.read_text(),
        "wrong_ca_pem": wrong_ca_pem,
        "ack_hex": ACK.hex(),
        "long_ack_hex": LONG_ACK.hex(),
        "payload": payload,
        "ssid": SSID,
        "wifi_password": WIFI_PASSWORD,
    }


@pytest.mark.parametrize("name", _firmware_test_names())
def test_mqtt_client_in_board_mode(
    name: str,
    tmp_path: Path,
    mosquitto: Broker,
    gateway: Gateway,
    device: dict[str, str],
    wrong_ca_pem: str,
) -> None:
    payload = f"bundle-{secrets.token_hex(8)}"
    up = f"pinseal/v1/{device['kid']}/up"
    ack_topic = f"pinseal/v1/{device['kid']}/ack"

    def publish_ack() -> None:
        gateway.publish(ack_topic, ACK)
        gateway.publish(ack_topic, ACK)  # a duplicate, as QoS 1 allows

    def publish_big() -> None:
        gateway.publish(ack_topic, b"\x00" * 5000)
        gateway.publish(ack_topic, ACK)

    def publish_long() -> None:  # longer than the client keeps for reading, within what it reads
        gateway.publish(ack_topic, LONG_ACK)
        gateway.publish(ack_topic, ACK)

    def publish_other_ack() -> None:
        gateway.publish(f"pinseal/v1/{device['other_kid']}/ack", ACK)

    def restart_broker() -> None:
        mosquitto.stop()
        time.sleep(1.5)
        mosquitto.start()

    options = _options(tmp_path, _params(mosquitto, device, wrong_ca_pem, payload))
    actions = {
        "publish_ack": publish_ack,
        "publish_big": publish_big,
        "publish_long": publish_long,
        "publish_other_ack": publish_other_ack,
        "restart_broker": restart_broker,
    }
    result = _run_streaming(name, options, actions)
    assert f"PASS {name}" in result.stdout, result.output
    assert result.returncode == 0, result.output
    seen = gateway.drain(3.0 if "restart" in name or "another" in name else 1.0)

    if name == "test_connects_with_user_name_and_password_and_publishes_to_its_up_topic":
        assert seen == [(up, payload.encode()), (up, b"")], seen
    elif name == "test_publishing_to_another_devices_topic_never_arrives":
        # The forged message was acknowledged by the broker and dropped by its ACL; the next one arrives.
        assert seen == [(up, b"after-forged")], seen
    elif name == "test_broker_restart_retransmits_the_unacknowledged_publish":
        topics_payloads = [(t, p) for t, p in seen if p == payload.encode()]
        assert topics_payloads and all(t == up for t, _ in topics_payloads), seen  # at least once
    elif name == "test_net_faults_drop_refuse_and_wifi_down_end_in_a_reconnect":
        assert (up, b"after-refuse") in seen and (up, payload.encode()) in seen, seen
    elif name == "test_tls_with_ca_verification":
        assert seen == [(up, payload.encode())], seen
    elif name == "test_peak_heap_of_a_session":
        assert len(seen) == 20, len(seen)
        m = re.search(r"HEAP peak_session_bytes (\d+)", result.stdout)
        assert m, result.output
        print(m.group(0))


def test_module_import_cost_in_board_mode(tmp_path: Path) -> None:
    code = (
        "import asyncio, gc, vboard_ram\n"
        "await asyncio.sleep_ms(0)\n"
        "a = vboard_ram.live()\n"
        "from pinseal.transport import mqtt\n"
        "await asyncio.sleep_ms(0)\n"
        "b = vboard_ram.live()\n"
        "print('HEAP import_bytes', b - a)\n"
    )
    result = run_code(code, VMOptions.board(timeout_s=60))
    m = re.search(r"HEAP import_bytes (\d+)", result.stdout)
    assert result.returncode == 0 and m, result.output
    print(m.group(0))
    assert int(m.group(1)) < 20000, result.output
