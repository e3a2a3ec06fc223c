"""Load generator for the gateway benchmark: many devices publishing pre-signed bundles through Mosquitto.

Each simulated device connects as itself (username = key id hex, its own password), so the broker's ACL
is exercised exactly as with real devices. All clients are paho-mqtt clients driven by one asyncio loop
through paho's socket callbacks (no thread per client), so one process can hold a thousand connections.

Two ways to drive the load:
- closed loop (`window`): each device keeps up to `window` bundles in flight, sending the next when the
  gateway's ack for one arrives: the gateway's capacity sets the rate (accepted_per_s).
- open loop (`rate`): bundles are released at a fixed total rate, round-robin over devices, whatever
  the acks do: latency from publish to ack is then measured at a known load.

Signing happens before the run (`presign`), so the generator spends its CPU on MQTT only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cbor2
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_hil.simdevice import thp_reading
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import keys
from pinseal_protocol.bundle import Status


@dataclass
class SimDevice:
    """A device's identity, MQTT credentials and the bundles it will publish, in order."""

    key: Ed25519PrivateKey
    password: str
    bundles: list[bytes] = field(default_factory=list)

    @property
    def kid_hex(self) -> str:
        return keys.key_id_hex(self.key.public_key())

    @property
    def public_key_hex(self) -> str:
        return keys.public_key_bytes(self.key.public_key()).hex()


def presign(
    device: SimDevice,
    count: int,
    per_bundle: int,
    now_s: int | None = None,
    *,
    first_seq: int = 0,
    prev: bytes = bytes(16),
) -> None:
    """Seal `count` chained bundles of `per_bundle` readings each for `device`, as its firmware would."""
    now_s = now_s if now_s is not None else int(time.time())
    seq = first_seq
    total = count * per_bundle
    for _ in range(count):
        readings = [thp_reading(seq + j, now_s - (total - (seq - first_seq) - j)) for j in range(per_bundle)]
        data = pbundle.seal(
            device.key,
            boot=1,
            seq=seq,
            prev=prev,
            status=Status(3900, -60, 3600, 0, 0),
            time_source=1,
            readings=readings,
        )
        device.bundles.append(data)
        prev = pbundle.link_of(data)
        seq += per_bundle


@dataclass
class Results:
    published: int = 0
    acked: int = 0
    duplicate_acks: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_ack_at: float | None = None
    last_ack_at: float | None = None
    connect_failures: int = 0

    def ack_rate(self) -> float:
        if self.first_ack_at is None or self.last_ack_at is None or self.acked < 2:
            return 0.0
        return (self.acked - 1) / (self.last_ack_at - self.first_ack_at)


class _LoopAdapter:
    """Drives one paho client from the asyncio loop through its socket callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: mqtt.Client) -> None:
        self.loop = loop
        self.client = client
        self.misc: asyncio.Task[None] | None = None
        client.on_socket_open = self._open
        client.on_socket_close = self._close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write

    def _open(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        self.loop.add_reader(sock, client.loop_read)
        self.misc = self.loop.create_task(self._misc_loop())

    def _close(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        self.loop.remove_reader(sock)
        if self.misc is not None:
            self.misc.cancel()

    def _register_write(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def _unregister_write(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        self.loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)


class _DeviceClient:
    """One simulated device's MQTT session: publish its bundles, match the gateway's acks to them."""

    def __init__(self, gen: LoadGenerator, device: SimDevice) -> None:
        self.gen = gen
        self.device = device
        self.next_index = 0
        self.in_flight: dict[bytes, float] = {}
        self.acked: set[bytes] = set()
        self.subscribed = asyncio.Event()
        self.up_topic = f"pinseal/v1/{device.kid_hex}/up"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"loadgen-{device.kid_hex}", clean_session=True
        )
        client.username_pw_set(device.kid_hex, device.password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if gen.complete_on == "puback":
            client.on_publish = self._on_publish
        self.client = client
        self.mid_to_hash: dict[int, bytes] = {}
        self.adapter = _LoopAdapter(gen.loop, client)

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            self.gen.results.connect_failures += 1
            return
        client.subscribe(f"pinseal/v1/{self.device.kid_hex}/ack", qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, rcs: object, props: object
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self.gen.complete_on == "ack":
            self._complete(ack_bundle_hash(message.payload))

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        """complete_on="puback": the broker's PUBACK completes a bundle (raw-throughput baseline)."""
        bundle_hash = self.mid_to_hash.pop(mid, None)
        if bundle_hash is None:
            return
        self._complete(bundle_hash)

    def _complete(self, bundle_hash: bytes) -> None:
        now = time.perf_counter()
        results = self.gen.results
        sent_at = self.in_flight.pop(bundle_hash, None)
        if bundle_hash in self.acked:
            results.duplicate_acks += 1
            return
        if sent_at is None:
            return  # an ack for something this run did not send (a previous run's resend)
        self.acked.add(bundle_hash)
        results.acked += 1
        results.latencies_ms.append((now - sent_at) * 1000)
        if results.first_ack_at is None:
            results.first_ack_at = now
        results.last_ack_at = now
        self.gen.on_ack(self)

    def can_send(self) -> bool:
        return self.next_index < len(self.device.bundles)

    def send_next(self) -> None:
        data = self.device.bundles[self.next_index]
        self.next_index += 1
        bundle_hash = pbundle.bundle_hash(data)
        self.in_flight[bundle_hash] = time.perf_counter()
        info = self.client.publish(self.up_topic, data, qos=1)
        if self.gen.complete_on == "puback":
            self.mid_to_hash[info.mid] = bundle_hash
        self.gen.results.published += 1

    def done(self) -> bool:
        return not self.can_send() and not self.in_flight


def ack_bundle_hash(payload: bytes) -> bytes:
    """The bundle hash an ack names (payload key 4), read without verifying: the benchmark counts acks;
    the gateway tests verify them."""
    message = cbor2.loads(payload)
    inner = cbor2.loads(message.value[2])
    return bytes(inner[4])


class LoadGenerator:
    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[SimDevice],
        *,
        window: int = 1,
        rate: float | None = None,
        complete_on: str = "ack",
    ) -> None:
        """complete_on: "ack" (the gateway's signed ack, end to end) or "puback" (the broker's, for the
        raw-subscriber baseline where no gateway answers)."""
        self.host = host
        self.port = port
        self.devices = devices
        self.window = window
        self.rate = rate
        self.complete_on = complete_on
        self.results = Results()
        self.loop = asyncio.get_running_loop()
        self.clients: list[_DeviceClient] = []
        self._all_done = asyncio.Event()

    async def connect(self, concurrency: int = 50) -> None:
        """Connect every device and wait until each has subscribed to its ack topic."""
        self.clients = [_DeviceClient(self, d) for d in self.devices]
        for i in range(0, len(self.clients), concurrency):
            chunk = self.clients[i : i + concurrency]
            for c in chunk:
                c.client.connect(self.host, self.port, keepalive=60)
            await asyncio.wait_for(asyncio.gather(*(c.subscribed.wait() for c in chunk)), timeout=30)

    def on_ack(self, client: _DeviceClient) -> None:
        if self.rate is None and client.can_send():
            client.send_next()
        if client.done() and all(c.done() for c in self.clients):
            self._all_done.set()

    async def run(self, timeout_s: float) -> Results:
        """Publish every device's bundles (closed or open loop), wait for their acks or the timeout."""
        if self.rate is None:
            for c in self.clients:
                for _ in range(self.window):
                    if c.can_send():
                        c.send_next()
        else:
            self.loop.create_task(self._paced())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_done.wait(), timeout=timeout_s)
        return self.results

    async def _paced(self) -> None:
        """Open loop: release bundles at `rate` per second in small ticks, round-robin over devices."""
        assert self.rate is not None
        tick_s = 0.005
        start = time.perf_counter()
        sent = 0
        order = [c for c in self.clients if c.can_send()]
        i = 0
        while order:
            due = int((time.perf_counter() - start) * self.rate)
            while sent < due and order:
                c = order[i % len(order)]
                if c.can_send():
                    c.send_next()
                    sent += 1
                    i += 1
                else:
                    order.remove(c)
            await asyncio.sleep(tick_s)

    async def close(self) -> None:
        for c in self.clients:
            c.client.disconnect()
        await asyncio.sleep(0.2)


def make_devices(n: int) -> list[SimDevice]:
    """n devices with fresh keys; passwords are set by the caller's registry (gateway `devices add`)."""
    return [SimDevice(Ed25519PrivateKey.generate(), password="") for _ in range(n)]
