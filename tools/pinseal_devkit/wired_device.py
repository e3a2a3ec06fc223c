"""A device on the far end of a serial line, simulated on the host: `SimDevice` signs, this speaks the
frames of docs/protocol.md §10 on a pseudo-terminal whose other end the gateway's serial intake reads.

It follows the firmware's rules where the accounting depends on them: stop and wait (the oldest bundle is
sent, and sent again after `resend_after_s` until a VERIFIED ack names or covers it), bundles sent only while
the gateway's hellos are heard. The line can be damaged in both directions (a seeded share of bytes flipped,
lost or joined by noise) and unplugged and plugged in again: the gateway reads a fixed path (`path`, a
symlink, as /dev/serial/by-id/... is), which points at a new pty after each `replug`, as a USB adapter
comes back as a new tty.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import time
import tty
from collections import OrderedDict
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pinseal_devkit.simdevice import SimDevice
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import rejection
from pinseal_protocol import serial_frames as sf
from pinseal_protocol.errors import RejectedMessage

HEARD_FOR_S = 10.0  # as the firmware: the line is up for this long after the gateway's last frame


class LineDamage:
    """What a long or noisy cable does to a share `rate` of the bytes, seeded: one bit flipped, the byte
    lost, or a burst of noise in its place."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rnd = random.Random(seed)
        self.bytes_damaged = 0

    def __call__(self, data: bytes) -> bytes:
        if self.rate <= 0:
            return data
        out = bytearray()
        for b in data:
            if self.rnd.random() >= self.rate:
                out.append(b)
                continue
            self.bytes_damaged += 1
            kind = self.rnd.randrange(3)
            if kind == 0:
                out.append(b ^ (1 << self.rnd.randrange(8)))
            elif kind == 2:
                out += self.rnd.randbytes(self.rnd.randrange(1, 8))
        return bytes(out)


class WiredDevice:
    """`device` plugged into the gateway through `path`; `damage_up`/`damage_down`: the line's damage."""

    def __init__(
        self,
        device: SimDevice,
        gateway_public: bytes,
        path: Path,
        damage_up: LineDamage | None = None,
        damage_down: LineDamage | None = None,
    ) -> None:
        self.device = device
        self.gateway_key = Ed25519PublicKey.from_public_bytes(gateway_public)
        self.path = Path(path)
        self.damage_up = damage_up or LineDamage(0, 0)
        self.damage_down = damage_down or LineDamage(0, 0)
        self.outbox: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()  # hash -> (raw, last seq)
        self.acked: set[bytes] = set()
        self.rejections: list[rejection.RejectionNotice] = []
        self.frames_sent = 0
        self.bytes_sent = 0
        self.dropped: dict[str, int] = {}
        self.bad_acks = 0
        self._heard = 0.0
        self._lock = threading.Lock()
        self._acked_event = threading.Event()
        self._master = -1
        self._slave = -1
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self.plug()

    # -- the cable ---------------------------------------------------------------------------------------

    def plug(self) -> None:
        """A new pty, and `path` pointing at it (atomically, as udev replaces a by-id link)."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.ttyname(self._slave), tmp)
        os.replace(tmp, self.path)
        self._stop.clear()
        self._reader = threading.Thread(target=self._read_loop, args=(self._master,), daemon=True)
        self._reader.start()

    def unplug(self) -> None:
        """The cable pulled: both ends of the pty close (the gateway's reads fail) and the path dangles."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join(2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1
        self._heard = 0.0

    def replug(self) -> None:
        self.unplug()
        self.plug()

    def close(self) -> None:
        self.unplug()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def linked(self) -> bool:
        return time.monotonic() - self._heard < HEARD_FOR_S

    # -- receiving -------------------------------------------------------------------------------------

    def _read_loop(self, fd: int) -> None:
        reader = sf.FrameReader()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            for event in reader.feed(self.damage_down(data)):
                if isinstance(event, sf.Dropped):
                    self.dropped[event.reason] = self.dropped.get(event.reason, 0) + 1
                    continue
                self._heard = time.monotonic()
                if event.kind == sf.KIND_ACK:
                    self._on_ack(event.payload)

    def _on_ack(self, payload: bytes) -> None:
        try:
            verified = rejection.verify_reply(payload, self.gateway_key, self.device.kid)
        except RejectedMessage:
            self.bad_acks += 1
            return
        if isinstance(verified, rejection.RejectionNotice):
            self.rejections.append(verified)
            return
        with self._lock:
            done = [
                h for h, (_, last) in self.outbox.items() if h == verified.bundle_hash or last <= verified.seq
            ]
            for h in done:
                del self.outbox[h]
                self.acked.add(h)
        self._acked_event.set()

    # -- sending ---------------------------------------------------------------------------------------

    def seal(self, n: int) -> list[bytes]:
        """Seal `n` bundles into the outbox."""
        out = []
        for _ in range(n):
            first = self.device.seq
            raw = self.device.seal()
            with self._lock:
                self.outbox[pbundle.bundle_hash(raw)] = (raw, first + self.device.per_bundle - 1)
            out.append(raw)
        return out

    def write_frame(self, kind: int, payload: bytes) -> None:
        frame = sf.encode(kind, payload)
        self.frames_sent += 1
        self.bytes_sent += len(frame)
        with contextlib.suppress(OSError):  # unplugged: the bytes go nowhere, as on a pulled cable
            os.write(self._master, self.damage_up(frame))

    def drain(self, timeout_s: float, resend_after_s: float = 1.0) -> bool:
        """Stop and wait until the outbox is empty; False if `timeout_s` ran out first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self.outbox:
                    return True
                raw = next(iter(self.outbox.values()))[0]
            if not self.linked:
                time.sleep(0.05)
                continue
            self._acked_event.clear()
            self.write_frame(sf.KIND_BUNDLE, raw)
            self._acked_event.wait(resend_after_s)
        with self._lock:
            return not self.outbox
