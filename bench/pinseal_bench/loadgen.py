"""Load generator for the gateway benchmark: many devices publishing pre-signed bundles through Mosquitto.

Each simulated device connects as itself (username = key id hex, its own password), so the broker's ACL
is exercised exactly as with real devices; it subscribes to its own ack topic at QoS 1, publishes at QoS 1
and answers every ack with a PUBACK, as a device does. The load generator shares the machine's two cores
with what it measures, so its clients are minimal MQTT 3.1.1 sessions on raw non-blocking sockets, all
driven by one asyncio loop: each PUBLISH packet is encoded before the run and written as is, and the
broker's packets are split in place, all framed by `pinseal_protocol.mqtt_frames` (a paho client per
device cost ~0.25 CPU-ms per acked bundle, about as much as the broker and a third of the gateway).

Two ways to drive the load:
- closed loop (`window`): each device keeps up to `window` bundles in flight, sending the next when the
  gateway's ack for one arrives: the gateway's capacity sets the rate (accepted_per_s).
- open loop (`rate`): bundles are released at a fixed total rate, round-robin over devices, whatever
  the acks do: latency from publish to ack is then measured at a known load.

Signing happens before the run (`SimDevice.presign`, the devices' `bundles`), so the generator spends its
CPU on MQTT only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cbor2

from pinseal_devkit.simdevice import SimDevice
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import mqtt_frames


@dataclass
class Results:
    published: int = 0
    acked: int = 0
    duplicate_acks: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_ack_at: float | None = None
    last_ack_at: float | None = None
    connect_failures: int = 0
    disconnects: int = 0
    resent: int = 0

    def ack_rate(self) -> float:
        if self.first_ack_at is None or self.last_ack_at is None or self.acked < 2:
            return 0.0
        return (self.acked - 1) / (self.last_ack_at - self.first_ack_at)


KEEPALIVE_S = 60


class _DeviceClient:
    """One simulated device's MQTT session on a raw non-blocking socket.

    The device connects as itself (its key id as username, its own password, so the broker's ACL
    applies), subscribes to its ack topic at QoS 1 and publishes its bundles at QoS 1 as pre-encoded
    PUBLISH packets: a load generator's job is to cost the machine as little as possible per message,
    so nothing is built or parsed per message that need not be. It still answers each ack with a
    PUBACK, as a device does, and matches each ack to the bundle it names.
    """

    def __init__(self, gen: LoadGenerator, device: SimDevice) -> None:
        self.gen = gen
        self.device = device
        self.next_index = 0
        self.in_flight: dict[bytes, float] = {}
        self.acked: set[bytes] = set()
        self.subscribed = asyncio.Event()
        kid_hex = device.kid_hex
        self.up_topic = f"pinseal/v1/{kid_hex}/up"
        self.connect_bytes = mqtt_frames.connect(f"loadgen-{kid_hex}", kid_hex, device.password, KEEPALIVE_S)
        self.subscribe_bytes = mqtt_frames.subscribe(1, f"pinseal/v1/{kid_hex}/ack", 1)
        # Packet ids 2.. for the bundles, in order (1 is the SUBSCRIBE), so a PUBACK's id is an index.
        if len(device.bundles) > 65534:
            raise ValueError("a device publishes at most 65,534 bundles per run")
        self.hashes = [pbundle.bundle_hash(data) for data in device.bundles]
        self.packets = [
            mqtt_frames.publish(self.up_topic, data, 1, 2 + i) for i, data in enumerate(device.bundles)
        ]
        self.sock: socket.socket | None = None
        self.splitter = mqtt_frames.FrameSplitter()
        self.wbuf = bytearray()
        self.writing = False

    # -- socket ------------------------------------------------------------------------------------

    def open(self, host: str, port: int) -> None:
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.gen.loop.add_reader(sock, self._readable)
        self._send(self.connect_bytes)

    def close(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        with contextlib.suppress(OSError, ValueError):
            self.gen.loop.remove_reader(sock)
        with contextlib.suppress(OSError, ValueError):
            self.gen.loop.remove_writer(sock)
        with contextlib.suppress(OSError):
            sock.send(mqtt_frames.DISCONNECT_PACKET)
        sock.close()

    def _send(self, data: bytes) -> None:
        if self.wbuf:
            self.wbuf += data
            return
        assert self.sock is not None
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.wbuf += data[sent:]
            if not self.writing:
                self.writing = True
                self.gen.loop.add_writer(self.sock, self._writable)

    def _writable(self) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(self.wbuf)
        except BlockingIOError:
            return
        del self.wbuf[:sent]
        if not self.wbuf:
            self.writing = False
            self.gen.loop.remove_writer(self.sock)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            self.close()
            return
        buf, spans = self.splitter.feed(data)
        out: list[bytes] = []
        for kind, body, end in spans:
            self._packet(kind, buf, body, end, out)
        if out:
            self._send(b"".join(out))

    def _packet(self, kind: int, buf: bytes, start: int, end: int, out: list[bytes]) -> None:
        """One frame from the broker, buf[start:end] its body; PUBACKs to send go to `out`."""
        kind_high = kind & 0xF0
        if kind_high == 0x30:  # PUBLISH: an ack from the gateway (QoS 1 as the device subscribed)
            _, _, packet_id, payload = mqtt_frames.publish_fields(kind, buf, start, end)
            if packet_id:
                out.append(mqtt_frames.puback(packet_id))
            if self.gen.complete_on == "ack":
                self._complete(ack_bundle_hash(buf[payload:end]))
            return
        body = buf[start:end]
        if kind_high == 0x40:  # PUBACK for one of our bundles
            if self.gen.complete_on == "puback":
                self._complete(self.hashes[int.from_bytes(body[:2], "big") - 2])
        elif kind_high == 0x20:  # CONNACK
            if body[1] != 0:
                self.gen.results.connect_failures += 1
                return
            out.append(self.subscribe_bytes)
        elif kind_high == 0x90:  # SUBACK
            if body[2] == 0x80:
                self.gen.results.connect_failures += 1
                return
            self.subscribed.set()
            # after a reconnect: what was in flight went with the old session (clean session, as the
            # firmware's): sent again, as the device's outbox does
            for bundle_hash in self.in_flight:
                out.append(self.packets[self.hashes.index(bundle_hash)])
                self.gen.results.resent += 1

    def drop(self, host: str, port: int) -> None:
        """The connection lost (no DISCONNECT: the broker sees the socket die) and opened again at once."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self.gen.loop.remove_reader(sock)
            with contextlib.suppress(OSError, ValueError):
                self.gen.loop.remove_writer(sock)
            sock.close()
        self.splitter = mqtt_frames.FrameSplitter()
        self.wbuf = bytearray()
        self.writing = False
        self.subscribed.clear()
        self.gen.results.disconnects += 1
        self.open(host, port)

    # -- bundles -----------------------------------------------------------------------------------

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
        return self.next_index < len(self.packets)

    def send_next(self) -> None:
        index = self.next_index
        self.next_index += 1
        self.in_flight[self.hashes[index]] = time.perf_counter()
        self._send(self.packets[index])
        self.gen.results.published += 1

    def ping(self) -> None:
        if self.sock is not None:
            self._send(mqtt_frames.PINGREQ_PACKET)

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
        self._pinger: asyncio.Task[None] | None = None

    async def connect(self, concurrency: int = 50) -> None:
        """Connect every device and wait until each has subscribed to its ack topic."""
        self.clients = [_DeviceClient(self, d) for d in self.devices]
        for i in range(0, len(self.clients), concurrency):
            chunk = self.clients[i : i + concurrency]
            for c in chunk:
                c.open(self.host, self.port)
            await asyncio.wait_for(asyncio.gather(*(c.subscribed.wait() for c in chunk)), timeout=30)
        if self.results.connect_failures:
            raise RuntimeError(f"{self.results.connect_failures} devices were refused by the broker")
        self._pinger = self.loop.create_task(self._keepalive())

    async def _keepalive(self) -> None:
        """PINGREQ from every device well within its keepalive, as paho would send."""
        while True:
            await asyncio.sleep(KEEPALIVE_S / 2)
            for c in self.clients:
                c.ping()

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
        if self._pinger is not None:
            self._pinger.cancel()
        for c in self.clients:
            c.close()
        await asyncio.sleep(0.2)
