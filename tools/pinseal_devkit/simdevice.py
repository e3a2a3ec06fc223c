"""The one device simulated on the host (`SimDevice`): it signs with `cryptography` exactly as
docs/protocol.md says a device does, and talks MQTT to the broker as itself. Gateway, ingest and
hardening tests and the load generator all use it wherever a device is needed and the firmware is not
the subject (the firmware itself runs on virtual boards).

It behaves as the firmware does where the network's accounting depends on it: every sealed bundle stays in
the device's outbox until a VERIFIED ack names it or covers its last reading (docs/protocol.md §5), and is
resent until then. With `outbox_dir` the outbox and the counter live on disk, so a device rebuilt from that
directory after a simulated power cut (`restore`) continues its chain and resends what was never acked, as a
board does from its flash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_protocol import bundle as pbundle
from pinseal_protocol import keys, rejection
from pinseal_protocol.bundle import Status
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import RejectedMessage
from pinseal_protocol.senml import Reading, Record

log = logging.getLogger("pinseal.simdevice")

ReadingValues = tuple[int, tuple[tuple[str, str | None, str], ...]]
"""A reading as the accounting compares it: its time and each record's (name, unit, value as text)."""


def thp_reading(i: int, time_s: int, value: int = 0) -> Reading:
    """A temperature/humidity/pressure reading from integer driver outputs (0.01 degC, 0.01 %RH, Pa); the
    i-th of a device's readings, varying with i; `value` shifts the temperature (other bytes, same place)."""
    return Reading(
        time_s,
        (
            Record("t", "Cel", DecimalFraction(-2, 2150 + (i * 37) % 200 - 100 + value)),
            Record("h", "%RH", DecimalFraction(-2, 4500 + (i * 53) % 600 - 300)),
            Record("p", "Pa", 101325 + (i * 11) % 80 - 40),
        ),
    )


Sensor = Callable[[int, int, int], Reading]
"""What a device's sensors read: (reading seq, time, value shift) -> one reading."""


def reading_values(reading: Reading) -> ReadingValues:
    """The comparable form of a reading: what was sampled must be what the network stores, value by value."""
    return (
        reading.time,
        tuple(
            (r.name, r.unit, str(r.value) if r.value is not None else f"error:{r.string_value}")
            for r in reading.records
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


class PowerCut(Exception):
    """Raised at a simulated power-cut point: everything the device held in RAM is gone."""


@dataclass
class AckEvent:
    device: str
    seq: int
    bundle_hash: bytes
    gateway_time: int


@dataclass
class OutboxEntry:
    """One sealed bundle waiting for its ack; `first_sent` is when it first went out (for ack latency)."""

    raw: bytes
    seq: int
    last_seq: int
    first_sent: float | None = None
    last_sent: float = 0.0


@dataclass
class SimDevice:
    """One device signing on the host, the only simulated device there is: samples, seals `per_bundle`
    readings a signature into a chain (boot, seq, prev as docs/protocol.md §3 says), and, when connected,
    publishes and checks the gateway's acks with the firmware's outbox rules.

    Its users take the part they need: tests seal single bundles at any chain position (`seal`), the load
    generator presigns whole runs before measuring (`presign`, `bundles`), the hardening suite runs it
    live (`seal_next`, `pump`) with an on-disk outbox it can cut the power on (`outbox_dir`, `restore`).
    """

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    password: str = ""
    gateway_public_key: Ed25519PublicKey | None = None
    """Needed only to verify acks (`connect`)."""
    per_bundle: int = 1
    seq: int = 0
    prev: bytes = pbundle.ZERO_PREV
    boot: int = 1
    epoch_s: int | None = None
    """A fixed clock: reading seq k is taken at `epoch_s + k`, so a chain position always seals to the same
    bytes (tests that compare bytes or judge times against a fixed window). None: the host's clock."""
    clock_offset_s: int = 0
    """Added to the host's time when sampling: a device clock that jumped."""
    sensor: Sensor = thp_reading
    """What each reading holds (default a BME280's temperature, humidity and pressure)."""
    bundles: list[bytes] = field(default_factory=list)
    """Bundles signed ahead (`presign`) for the load generator to publish, in order."""
    started: float = field(default_factory=time.monotonic)
    acks: queue.Queue[AckEvent] = field(default_factory=queue.Queue)
    client: mqtt.Client | None = None
    outbox_dir: Path | None = None
    cut_at: Callable[[str], bool] | None = None
    """Asked at each power-cut point (see `CUT_POINTS`); True: the power goes out there."""
    on_produced: Callable[[SimDevice, int, ReadingValues], None] | None = None
    """Called for each reading once its bundle is in the outbox (on disk, with `outbox_dir`)."""
    outbox: dict[bytes, OutboxEntry] = field(default_factory=dict)
    ack_latencies: list[float] = field(default_factory=list)
    in_flight: OutboxEntry | None = None
    dead: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    CUT_POINTS = ("sealed", "outbox_written", "persisted", "published", "ack_verified")

    @classmethod
    def fleet(cls, n: int) -> list[SimDevice]:
        """n devices with fresh keys; passwords are set by the caller's registry (gateway `devices add`)."""
        return [cls() for _ in range(n)]

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key (what a registry stores)."""
        return keys.public_key_bytes(self.key.public_key())

    @property
    def kid(self) -> bytes:
        return keys.key_id(self.key.public_key())

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    @property
    def public_key_hex(self) -> str:
        return self.public.hex()

    @property
    def up_topic(self) -> str:
        return f"pinseal/v1/{self.kid_hex}/up"

    @property
    def unacked(self) -> dict[bytes, int]:
        """Bundle hash -> last reading seq of every bundle still waiting for its ack."""
        with self._lock:
            return {h: e.last_seq for h, e in self.outbox.items()}

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected()

    # -- sealing ------------------------------------------------------------------------------------

    def sample_time(self, seq: int | None = None) -> int:
        """When reading `seq` (default: the next) is taken: the fixed clock's tick, else the host's time."""
        if self.epoch_s is not None:
            return self.epoch_s + (self.seq if seq is None else seq)
        return int(time.time()) + self.clock_offset_s

    def uptime_s(self, seq: int) -> int:
        """Seconds since boot for the status field: on the fixed clock (booted at `epoch_s`, a reading a
        second) the reading seq, whatever time a test stamps the readings with; else since `started`."""
        if self.epoch_s is not None:
            return seq
        return int(time.monotonic() - self.started)

    def seal(
        self,
        n: int | None = None,
        *,
        time_s: int | None = None,
        seq: int | None = None,
        prev: bytes | None = None,
        time_source: int = 1,
        value: int = 0,
        advance: bool = True,
    ) -> bytes:
        """Seal `n` (default `per_bundle`) readings, one a second from `time_s`, at the chain position
        `seq`/`prev` (default: the next); with `advance` the counter and chain move past it, as on a device.
        `value` shifts the temperatures (same position, other bytes). Signing only: no outbox, no MQTT."""
        n = self.per_bundle if n is None else n
        seq = self.seq if seq is None else seq
        prev = self.prev if prev is None else prev
        time_s = self.sample_time(seq) if time_s is None else time_s
        raw = self._sign(self.sample(seq, n, time_s, value), seq, prev, time_source)
        if advance:
            self.seq = seq + n
            self.prev = pbundle.link_of(raw)
        return raw

    def sample(self, seq: int, n: int, time_s: int, value: int = 0) -> list[Reading]:
        """`n` readings of `sensor` from reading seq `seq` on, one a second from `time_s`."""
        return [self.sensor(seq + i, time_s + i, value) for i in range(n)]

    def _sign(self, readings: list[Reading], seq: int, prev: bytes, time_source: int) -> bytes:
        """The COSE_Sign1 bundle of `readings` at a chain position, under this device's boot and status."""
        return pbundle.seal(
            self.key,
            boot=self.boot,
            seq=seq,
            prev=prev,
            status=Status(3900, -60, self.uptime_s(seq), 0, 0),
            time_source=time_source,
            readings=readings,
        )

    def presign(self, count: int, *, per_bundle: int | None = None, now_s: int | None = None) -> list[bytes]:
        """The next `count` bundles of the chain, signed ahead (a load generator spends its CPU on MQTT only):
        readings one a second, the last a second before `now_s`: none stale or in the future."""
        per_bundle = self.per_bundle if per_bundle is None else per_bundle
        now_s = int(time.time()) if now_s is None else now_s
        first_time_s = now_s - count * per_bundle - self.seq
        return [self.seal(per_bundle, time_s=first_time_s + self.seq) for _ in range(count)]

    # -- MQTT and the outbox -------------------------------------------------------------------------

    def connect(self, host: str, port: int) -> None:
        """Connect and keep reconnecting (paho's loop thread), subscribing to the ack topic each time."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{self.kid_hex}")
        client.username_pw_set(self.kid_hex, self.password)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_connect = self._on_connect
        client.on_message = self._on_ack
        client.connect(host, port, keepalive=30)
        client.loop_start()
        self.client = client

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        """A new connection (clean session): whatever was in flight on the old one is gone, send again."""
        with self._lock:
            self.in_flight = None
        client.subscribe(f"pinseal/v1/{self.kid_hex}/ack", qos=1)

    def _check_cut(self, point: str) -> None:
        if self.cut_at is not None and not self.dead and self.cut_at(point):
            self.dead = True
            raise PowerCut(point)

    def _on_ack(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.receive_reply(message.payload)

    def receive_reply(self, payload: bytes) -> bool:
        """An ack or signed rejection as received on any link (MQTT's ack topic, BLE's down writes):
        verified first; a verified ack drops what it covers from the outbox. True if it was an ack."""
        if self.dead:
            return False
        assert self.gateway_public_key is not None, "a connected device needs the gateway's public key"
        try:
            verified = rejection.verify_reply(payload, self.gateway_public_key, self.kid)
        except RejectedMessage as exc:
            log.warning("device %s: ack rejected (%s): %s", self.kid_hex, exc.reason, exc)
            return False
        if isinstance(verified, rejection.RejectionNotice):  # docs/protocol.md §5.1; kept: a test's evidence
            log.warning(
                "device %s: the gateway refused bundle %s (%s)",
                self.kid_hex,
                verified.bundle_hash.hex()[:16],
                verified.reason,
            )
            return False
        try:
            self._check_cut("ack_verified")
        except PowerCut:
            return False  # the ack is lost with the RAM: the bundle is resent after the reboot and re-acked
        now = time.monotonic()
        with self._lock:
            done = [
                h for h, e in self.outbox.items() if h == verified.bundle_hash or e.last_seq <= verified.seq
            ]
            for h in done:
                entry = self.outbox.pop(h)
                if entry.first_sent is not None and h == verified.bundle_hash:
                    self.ack_latencies.append(now - entry.first_sent)
                self._forget(entry)
        self.acks.put(AckEvent(self.kid_hex, verified.seq, verified.bundle_hash, verified.time))
        return True

    def seal_next(self, now_s: int | None = None) -> bytes:
        """Take `per_bundle` readings and seal them, chained to the previous bundle, into the outbox."""
        now_s = self.sample_time() if now_s is None else now_s
        readings = self.sample(self.seq, self.per_bundle, now_s)
        data = self._sign(readings, self.seq, self.prev, time_source=1)
        self._check_cut("sealed")
        entry = OutboxEntry(data, self.seq, self.seq + self.per_bundle - 1)
        self._persist_entry(entry)
        if self.on_produced is not None:  # from here on the bundle survives a power cut: produced
            for i, reading in enumerate(readings):
                self.on_produced(self, entry.seq + i, reading_values(reading))
        self._check_cut("outbox_written")
        self.prev = pbundle.link_of(data)
        self.seq += self.per_bundle
        self._persist_state()
        with self._lock:
            self.outbox[pbundle.bundle_hash(data)] = entry
        self._check_cut("persisted")
        return data

    def publish(self, data: bytes) -> None:
        assert self.client is not None, "connect() first"
        now = time.monotonic()
        with self._lock:
            entry = self.outbox.get(pbundle.bundle_hash(data))
            if entry is not None:
                entry.first_sent = now if entry.first_sent is None else entry.first_sent
                entry.last_sent = now
        self.client.publish(f"pinseal/v1/{self.kid_hex}/up", data, qos=1)
        self._check_cut("published")

    def pump(self, resend_after_s: float) -> bool:
        """Stop and wait, as the firmware's send loop: send the oldest unacked bundle unless it is in flight,
        again once `resend_after_s` passed without an ack; True if something went out. Only while
        connected. (A device that pipelines may deliver bundles out of order; the firmware never does.)"""
        if not self.connected:
            return False
        now = time.monotonic()
        with self._lock:
            if not self.outbox:
                return False
            oldest = next(iter(self.outbox.values()))  # insertion order is seq order
            waiting = oldest.first_sent is not None and self.in_flight is oldest
            if waiting and now - oldest.last_sent < resend_after_s:
                return False
            self.in_flight = oldest
        self.publish(oldest.raw)
        return True

    # -- on-disk outbox (power cuts) ----------------------------------------------------------------

    def _entry_path(self, entry: OutboxEntry) -> Path:
        assert self.outbox_dir is not None
        name = f"{entry.seq:020d}-{pbundle.bundle_hash(entry.raw).hex()[:16]}.cbor"
        return self.outbox_dir / "outbox" / name

    def _persist_entry(self, entry: OutboxEntry) -> None:
        if self.outbox_dir is None:
            return
        path = self._entry_path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, entry.raw)

    def _persist_state(self) -> None:
        if self.outbox_dir is None:
            return
        state = {"boot": self.boot, "seq": self.seq, "prev": self.prev.hex(), "per_bundle": self.per_bundle}
        _write_atomic(self.outbox_dir / "state.json", json.dumps(state).encode())

    def _forget(self, entry: OutboxEntry) -> None:
        if self.outbox_dir is not None:
            self._entry_path(entry).unlink(missing_ok=True)

    @classmethod
    def restore(
        cls, key: Ed25519PrivateKey, password: str, gateway_public_key: Ed25519PublicKey, outbox_dir: Path
    ) -> SimDevice:
        """The device after a power cut: a new boot, the counter and chain from disk (the newest bundle in
        the outbox wins over a state file the cut left one step behind), the unacked bundles to resend."""
        state_file = outbox_dir / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        device = cls(
            key,
            password,
            gateway_public_key,
            per_bundle=state.get("per_bundle", 1),
            seq=state.get("seq", 0),
            prev=bytes.fromhex(state.get("prev", "00" * 16)),
            boot=state.get("boot", 0) + 1,
            outbox_dir=outbox_dir,
        )
        for path in sorted(outbox_dir.glob("outbox/*.cbor")):
            raw = path.read_bytes()
            bundle = pbundle.verify_bundle(raw, key.public_key())
            device.outbox[bundle.bundle_hash] = OutboxEntry(raw, bundle.seq, bundle.last_seq)
            if bundle.last_seq >= device.seq:
                device.seq, device.prev = bundle.last_seq + 1, bundle.link
        device._persist_state()
        return device

    # -- connection ---------------------------------------------------------------------------------

    def cut_connection(self) -> None:
        """Wi-Fi gone: the socket closes under the client without an MQTT DISCONNECT; paho reconnects."""
        client = self.client
        sock = client.socket() if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def power_off(self) -> None:
        """Stop without a DISCONNECT (the broker sees the socket close), as a board losing power does."""
        self.dead = True
        client, self.client = self.client, None
        if client is not None:
            sock = client.socket()
            if sock is not None:  # the link dies first: no DISCONNECT can go out after this
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            client.disconnect()  # only stops paho's reconnect loop (the socket is already dead)
            # Its loop thread ends at its next select timeout (up to 1 s): not worth waiting for.
            threading.Thread(target=client.loop_stop, daemon=True).start()

    def close(self) -> None:
        """DISCONNECT first: paho's loop thread then ends at once instead of after its select timeout."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def drain(events: queue.Queue[AckEvent], handle: Callable[[AckEvent], None]) -> None:
    while True:
        try:
            handle(events.get_nowait())
        except queue.Empty:
            return
