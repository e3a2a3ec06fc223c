"""Shared fixtures for the gateway tests: host-signed devices, a real Mosquitto, a running gateway.

Devices sign on the host exactly as docs/protocol.md says a device does (`pinseal_devkit.simdevice.SimDevice`)
and talk to a private Mosquitto on a free loopback port with their own username and password, under
the ACL the gateway generates.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_devkit.simdevice import SimDevice
from pinseal_gateway import broker
from pinseal_gateway.config import GatewayConfig, from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.daemon import run_gateway
from pinseal_gateway.keys import create_gateway_key, write_secret
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store.db import Database
from pinseal_protocol import ack as pack
from pinseal_protocol import keys, rejection
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.senml import Reading, Record

SUPERUSER = "pinseal-test-superuser"
SUPERUSER_PASSWORD = "superuser-password"


def t_p_reading(seq: int, time_s: int, value: int) -> Reading:
    """The gateway tests' sensor: temperature and pressure, two records a reading (their row counts
    assume two)."""
    return Reading(
        time_s, (Record("t", "Cel", DecimalFraction(-2, 2150 + value + seq % 100)), Record("p", "Pa", 101325))
    )


def new_sim_device(seed: bytes | None = None, *, boot: int = 1) -> SimDevice:
    """The host-signing device (pinseal_devkit's one SimDevice) with a fresh MQTT password: a fixed key
    from `seed`, or a new one."""
    key = keys.load_private_key(seed) if seed else Ed25519PrivateKey.generate()
    return SimDevice(key, device_store.new_mqtt_password(), boot=boot, sensor=t_p_reading)


class MqttPeer:
    """A paho client as a device (or the test superuser): publishes at QoS 1, collects acks."""

    def __init__(self, port: int, username: str, password: str, *, subscribe: str | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{username}-{time.monotonic_ns()}")
        self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.subscribe_topic = subscribe
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if subscribe is not None and not self._subscribed.wait(10):
            raise TimeoutError("subscription not confirmed")

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if self.subscribe_topic is not None:
            client.subscribe(self.subscribe_topic, qos=1)

    def publish(self, topic: str, payload: bytes, *, wait: bool = True) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)
        return info

    def get(self, timeout: float = 10.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class DevicePeer(MqttPeer):
    """A registered device connected as itself and subscribed to its own ack topic."""

    def __init__(self, port: int, device: SimDevice, gateway_public: bytes) -> None:
        self.device = device
        self.gateway_key = keys.load_public_key(gateway_public)
        self.rejections: list[rejection.RejectionNotice] = []  # set aside by ack(), in arrival order
        super().__init__(port, device.kid_hex, device.password, subscribe=f"pinseal/v1/{device.kid_hex}/ack")

    def send(self, raw: bytes, *, wait: bool = True) -> None:
        self.publish(self.device.up_topic, raw, wait=wait)

    def reply(self, timeout: float = 10.0) -> pack.Ack | rejection.RejectionNotice:
        """The next message on this device's ack topic, verified as a device verifies it."""
        _, payload = self.get(timeout)
        return rejection.verify_reply(payload, self.gateway_key, self.device.kid)

    def ack(self, timeout: float = 10.0) -> pack.Ack:
        """The next ack on this device's topic; signed rejections on the way go to `rejections`."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.reply(max(0.01, deadline - time.monotonic()))
            if isinstance(reply, pack.Ack):
                return reply
            self.rejections.append(reply)

    def acks_for(self, hashes: set[bytes], timeout: float = 20.0) -> dict[bytes, pack.Ack]:
        """Collect verified acks until every hash in `hashes` has one."""
        got: dict[bytes, pack.Ack] = {}
        deadline = time.monotonic() + timeout
        while not hashes <= got.keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(hashes - got.keys())} of {len(hashes)} acks missing")
            ack = self.ack(remaining)
            got[ack.bundle_hash] = ack
        return got


@dataclass
class GatewayEnv:
    """A configured gateway (key, registry, broker files) and its running Mosquitto."""

    tmp: Path
    config: GatewayConfig
    gateway_public: bytes
    devices: list[SimDevice]
    broker_dir: Path
    broker_proc: object = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.config.mqtt.port

    def db(self) -> Database:
        return Database(self.config.db_path)

    def device_peer(self, device: SimDevice) -> DevicePeer:
        return DevicePeer(self.port, device, self.gateway_public)

    def superuser(self, subscribe: str | None = None) -> MqttPeer:
        return MqttPeer(self.port, SUPERUSER, SUPERUSER_PASSWORD, subscribe=subscribe)

    def write_broker_files(self) -> None:
        db = self.db()
        try:
            registered = db.run_sync(device_store.list_devices)
        finally:
            db.close()
        gw_password = self.config.mqtt_password_path.read_text().strip()
        users = [
            broker.gateway_user(self.config.mqtt.username, device_store.mosquitto_password_hash(gw_password)),
            broker.BrokerUser(
                SUPERUSER, device_store.mosquitto_password_hash(SUPERUSER_PASSWORD), ("topic readwrite #",)
            ),
        ]
        users += [
            broker.BrokerUser(d.kid_hex, d.mqtt_password_hash or "") for d in registered if not d.revoked
        ]
        broker.write_broker_config(self.broker_dir, host="127.0.0.1", port=self.port, users=users)

    def write_toml(self, path: Path) -> Path:
        """The configuration as a TOML file, for `pinseal-gateway ... --config`."""
        lines = []
        for section, values in self.extra["raw"].items():  # type: ignore[union-attr]
            lines.append(f"[{section}]")
            for key, value in values.items():
                if isinstance(value, bool):
                    lines.append(f"{key} = {'true' if value else 'false'}")
                else:
                    lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
        path.write_text("\n".join(lines) + "\n")
        return path

    def register(self, device: SimDevice, **kwargs: object) -> None:
        db = self.db()
        try:
            db.run_sync(
                lambda conn: device_store.add_device(
                    conn,
                    device.public,
                    label=kwargs.get("label"),  # type: ignore[arg-type]
                    expected_interval_s=kwargs.get("interval"),  # type: ignore[arg-type]
                    password_hash=device_store.mosquitto_password_hash(device.password),
                )
            )
        finally:
            db.close()


def make_env(tmp_path: Path, n_devices: int = 3, **sections: dict[str, object]) -> GatewayEnv:
    data_dir = tmp_path / "data"
    port = broker.free_port()
    raw: dict[str, dict[str, object]] = {
        "gateway": {"data_dir": str(data_dir)},
        "mqtt": {"port": port, "client_id": f"pinseal-gateway-{port}"},
        "http": {"listen": "127.0.0.1:0"},
        "uplink": {"kind": "none"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    config = from_mapping(raw)
    key = create_gateway_key(config.key_path)
    write_secret(config.mqtt_password_path, b"gateway-test-password")
    env = GatewayEnv(tmp_path, config, keys.public_key_bytes(key), [], tmp_path / "broker")
    env.extra["raw"] = raw
    for _ in range(n_devices):
        device = new_sim_device()
        env.register(device)
        env.devices.append(device)
    env.write_broker_files()
    return env


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """The gateway CLI run in-process (`main([...])`) points the root logger at this test's captured
    stderr, which closes with the test; a later test's thread logging through that handler would print
    "--- Logging error ---" into the run. Every test leaves the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture
def make_gateway_env() -> Callable[..., GatewayEnv]:
    """The shared gateway-environment builder (tests must not import conftest by name: run together with
    the other packages' tests, `conftest` may be another folder's module)."""
    return make_env


@pytest.fixture
def new_device() -> Callable[..., SimDevice]:
    """The host-signing device factory (tests must not import conftest by name)."""
    return new_sim_device


@pytest.fixture
def env(tmp_path: Path) -> Iterator[GatewayEnv]:
    """Gateway configured with three registered devices, and a running Mosquitto for it."""
    gateway_env = make_env(tmp_path)
    proc = broker.start_mosquitto(gateway_env.broker_dir, gateway_env.port)
    gateway_env.broker_proc = proc
    try:
        yield gateway_env
    finally:
        broker.stop_mosquitto(gateway_env.broker_proc or proc)  # a test may have restarted it


class RunningGateway:
    """`run_gateway` in a background thread with its own event loop, for synchronous tests."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.ctx: GatewayContext | None = None
        self.http_port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError(f"gateway did not become ready: {self.error!r}")
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(ctx: GatewayContext, port: int) -> None:
                self.ctx, self.http_port = ctx, port
                self._ready.set()

            await run_gateway(self.config, self._stop, on_ready=ready)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "gateway did not stop"


@pytest.fixture
def gateway(env: GatewayEnv) -> Iterator[RunningGateway]:
    running = RunningGateway(env.config)
    try:
        yield running
    finally:
        running.stop()
    if running.error is not None:
        raise running.error


@pytest.fixture
def start_gateway() -> type[RunningGateway]:
    """The in-thread gateway class, for tests that start and stop it themselves (tests must not
    import conftest by name): a gateway that stalls then fails the test, not the teardown."""
    return RunningGateway


def with_sections(config: GatewayConfig, **sections: object) -> GatewayConfig:
    return replace(config, **sections)  # type: ignore[arg-type]
