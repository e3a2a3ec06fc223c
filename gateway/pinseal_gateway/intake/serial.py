"""The serial intake: boards wired to the gateway (UART adapters, USB CDC, RS-485, `rfc2217://` ports),
speaking the frames of docs/protocol.md §10. It feeds the same pipeline as MQTT and answers as its `Link`.

A serial line is a wire, not a login: whoever is plugged in is who signs. So the intake takes a bundle's
key id from its own COSE header and submits it on that device's up topic; the pipeline then verifies the
signature against that registered key exactly as for MQTT, so a device can still only publish as itself,
and a forged or unregistered one is rejected and recorded there. Acks go back on the port the device's
last bundle came in on.

Nothing is lost here that a device does not resend: frames damaged on the line are dropped by their CRC
(counted by reason in `pinseal_gateway_serial_frames_dropped_total`), a bundle arriving while the
pipeline is full is dropped (`busy`), an ack for a port that went away is not written; in each case the
device sends the bundle again until a verified ack names it, and the pipeline stores it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from serial.tools import list_ports

from pinseal_gateway.config import SerialSection
from pinseal_gateway.intake.serial_port import SerialPort
from pinseal_gateway.link import Inbox, Message
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.verify import TOPIC_PREFIX, UP_SUFFIX
from pinseal_protocol import cose
from pinseal_protocol import serial_frames as sf

log = logging.getLogger(__name__)

USB_SCAN_S = 5.0
# Reasons a serial intake drops a whole frame, besides the frame reader's (sf.DROP_REASONS).
DROP_NOT_BUNDLE = "not_bundle"  # a frame kind a device never sends (an ack or hello echoed back)
DROP_UNDECODABLE = "undecodable"  # CRC good, but not a COSE_Sign1 with a pinseal key id
DROP_BUSY = "busy"  # the pipeline is full; the device resends


class SerialIngest:
    """Reads every configured port; submits bundles to `inbox`; writes acks back (`Link`)."""

    def __init__(self, config: SerialSection, inbox: Inbox, metrics: Metrics) -> None:
        self.config = config
        self.inbox = inbox
        self.metrics = metrics
        self.ports: dict[str, SerialPort] = {}
        self._readers: dict[str, sf.FrameReader] = {}
        self._port_of_kid: dict[bytes, str] = {}
        self._drops: dict[str, int] = {}  # per reason, for the log's pacing (not the metric's private state)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scan_task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config.ports or self.config.usb_ids)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for url in self.config.ports:
            self._add_port(url)
        if self.config.usb_ids:
            self._scan_task = asyncio.create_task(self._scan_usb(), name="pinseal-serial-usb")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._scan_task

    async def stop(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            await asyncio.gather(self._scan_task, return_exceptions=True)
        ports = list(self.ports.values())
        self.ports.clear()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in ports))

    # -- ports -------------------------------------------------------------------------------------------

    def _add_port(self, url: str) -> None:
        if url in self.ports:
            return
        self._readers[url] = sf.FrameReader()
        port = SerialPort(
            url,
            self.config.baudrate,
            self.config.reopen_s,
            on_bytes=lambda data, u=url: self._in_loop(self._bytes_in, u, data),
            on_state=lambda is_open, why, u=url: self._in_loop(self._state, u, is_open, why),
        )
        self.ports[url] = port
        port.start()

    async def _scan_usb(self) -> None:
        """Ports of the configured USB ids, read from the moment they appear (a board plugged in later)."""
        wanted = {tuple(int(x, 16) for x in usb_id.split(":")) for usb_id in self.config.usb_ids}
        while True:
            found = await asyncio.to_thread(list_ports.comports)
            for info in found:
                if (info.vid, info.pid) in wanted and info.device not in self.ports:
                    log.info("serial: %s (%04x:%04x) appeared", info.device, info.vid, info.pid)
                    self._add_port(info.device)
            await asyncio.sleep(USB_SCAN_S)

    def _in_loop(self, fn: object, *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)  # type: ignore[arg-type]

    def _state(self, url: str, is_open: bool, why: str) -> None:
        self.metrics.serial_ports_open.labels(url).set(1 if is_open else 0)
        if is_open:
            self._readers[url] = sf.FrameReader()  # a new byte stream: nothing half-read carries over
            log.info("serial: reading %s at %d baud", url, self.config.baudrate)
        else:
            every = self.config.reopen_s
            log.warning("serial: %s is not available (%s); trying again every %g s", url, why, every)

    # -- frames ------------------------------------------------------------------------------------------

    def _bytes_in(self, url: str, data: bytes) -> None:
        reader = self._readers.get(url)
        if reader is None:
            return
        for event in reader.feed(data):
            if isinstance(event, sf.Dropped):
                self._dropped(url, event.reason)
            elif event.kind != sf.KIND_BUNDLE:
                self._dropped(url, DROP_NOT_BUNDLE)
            else:
                self._bundle_in(url, event.payload)

    def _bundle_in(self, url: str, payload: bytes) -> None:
        try:
            kid = cose.pinseal_kid(cose.decode_sign1(payload))
        except Exception:  # whatever the bytes are, they are only this frame's problem
            self._dropped(url, DROP_UNDECODABLE)
            return
        if not self.inbox.has_room():
            self._dropped(url, DROP_BUSY)
            return
        self._port_of_kid[kid] = url
        self.metrics.serial_bundles.inc()
        topic = f"{TOPIC_PREFIX}{kid.hex()}{UP_SUFFIX}"
        self.inbox.submit_nowait(Message(topic, payload, time.time(), None, self))

    def _dropped(self, url: str, reason: str) -> None:
        self.metrics.serial_frames_dropped.labels(reason).inc()
        n = self._drops[reason] = self._drops.get(reason, 0) + 1
        if n == 1 or n % 100 == 0:  # the first, then every hundredth: noise on a line must not flood the log
            log.warning("serial: %s: dropped a frame (%s); %d so far for this reason", url, reason, n)

    # -- Link: what the pipeline calls after a commit ------------------------------------------------

    def settle(self, tokens: Sequence[object]) -> None:
        """Nothing to release: a serial device resends until acked, no broker holds the messages."""

    def publish_acks(self, acks: Sequence[tuple[bytes, bytes]]) -> None:
        for kid, ack in acks:
            url = self._port_of_kid.get(kid)
            port = self.ports.get(url) if url is not None else None
            if port is not None:
                port.write_frame(sf.encode(sf.KIND_ACK, ack))
