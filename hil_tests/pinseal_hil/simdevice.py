"""Devices simulated on the host: they sign on the host with `cryptography`, exactly as docs/protocol.md says
a device does, and talk MQTT to the broker as themselves. `make run` uses them until virtual boards running
the firmware take their place; tests use them wherever a device is needed and the firmware is not the subject.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_protocol import ack as pack
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import keys
from pinseal_protocol.bundle import Status
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import RejectedMessage
from pinseal_protocol.senml import Reading, Record

log = logging.getLogger("pinseal.simdevice")


def thp_reading(i: int, time_s: int) -> Reading:
    """A temperature/humidity/pressure reading from integer driver outputs (0.01 degC, 0.01 %RH, Pa)."""
    return Reading(
        time_s,
        (
            Record("t", "Cel", DecimalFraction(-2, 2150 + (i * 37) % 200 - 100)),
            Record("h", "%RH", DecimalFraction(-2, 4500 + (i * 53) % 600 - 300)),
            Record("p", "Pa", 101325 + (i * 11) % 80 - 40),
        ),
    )


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """A simulated device's key lives in its own 0600 file, as a board's lives in its flash."""
    if path.exists():
        return keys.load_private_key(path.read_bytes())
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes_raw())
    return key


@dataclass
class AckEvent:
    device: str
    seq: int
    bundle_hash: bytes
    gateway_time: int


@dataclass
class SimulatedDevice:
    """One device: samples, seals `per_bundle` readings a signature, publishes, checks the gateway's acks."""

    key: Ed25519PrivateKey
    password: str
    gateway_public_key: Ed25519PublicKey
    per_bundle: int = 1
    seq: int = 0
    prev: bytes = bytes(16)
    boot: int = 1
    started: float = field(default_factory=time.monotonic)
    unacked: dict[bytes, int] = field(default_factory=dict)
    acks: queue.Queue[AckEvent] = field(default_factory=queue.Queue)
    client: mqtt.Client | None = None

    @property
    def kid(self) -> bytes:
        return keys.key_id(self.key.public_key())

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    @property
    def public_key_hex(self) -> str:
        return keys.public_key_bytes(self.key.public_key()).hex()

    def connect(self, host: str, port: int) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{self.kid_hex}")
        client.username_pw_set(self.kid_hex, self.password)
        client.on_connect = lambda c, *_: c.subscribe(f"pinseal/v1/{self.kid_hex}/ack", qos=1)
        client.on_message = self._on_ack
        client.connect(host, port, keepalive=30)
        client.loop_start()
        self.client = client

    def _on_ack(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            verified = pack.verify_ack(message.payload, self.gateway_public_key, self.kid)
        except RejectedMessage as exc:
            log.warning("device %s: ack rejected (%s): %s", self.kid_hex, exc.reason, exc)
            return
        self.unacked.pop(verified.bundle_hash, None)
        self.acks.put(AckEvent(self.kid_hex, verified.seq, verified.bundle_hash, verified.time))

    def seal_next(self, now_s: int | None = None) -> bytes:
        """Take `per_bundle` readings and seal them, chained to the previous bundle."""
        now_s = int(time.time()) if now_s is None else now_s
        readings = [thp_reading(self.seq + i, now_s) for i in range(self.per_bundle)]
        data = pbundle.seal(
            self.key,
            boot=self.boot,
            seq=self.seq,
            prev=self.prev,
            status=Status(3900, -61, int(time.monotonic() - self.started), 0, 0),
            time_source=1,
            readings=readings,
        )
        self.prev = pbundle.link_of(data)
        self.seq += self.per_bundle
        self.unacked[pbundle.bundle_hash(data)] = self.seq - 1
        return data

    def publish(self, data: bytes) -> None:
        assert self.client is not None, "connect() first"
        self.client.publish(f"pinseal/v1/{self.kid_hex}/up", data, qos=1)

    def close(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()


def drain(events: queue.Queue[AckEvent], handle: Callable[[AckEvent], None]) -> None:
    while True:
        try:
            handle(events.get_nowait())
        except queue.Empty:
            return
