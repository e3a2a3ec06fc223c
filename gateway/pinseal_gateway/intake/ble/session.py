"""One BLE connection's life (docs/protocol.md §11): connect, confirm the key id, receive, ack, disconnect.

Following Home Assistant's Bluetooth guidance: the connection is made by bleak-retry-connector's
`establish_connection` (it knows BlueZ's transient errors and backs off between its few attempts), a
fresh `BleakClient` is made for every session and never reused, every GATT operation has a timeout, and
the client is disconnected whatever happened.

In order: connect; read info and confirm that its full key id is registered, not revoked, and starts
with the advertised prefix (else: disconnect, refused); subscribe to the bundle notifications (bleak's
AcquireNotify by default; `use_start_notify` for StartNotify, which on real BlueZ can lose notifications,
bleak #1343: the reassembler's resend requests recover both); then reassemble. A gap found by the
reassembler, or a quiet spell with a transfer half done, is answered with resend requests; a whole bundle
with "received" (the device's send() returns) and then goes to the pipeline as a `Message` on the
device's up topic. The pipeline's ack (or signed rejection) is written down when it comes; after an ack
the info is read again, and an empty outbox ends the session. No chunk for `idle_timeout_s` while
nothing is in flight ends it too.

Everything the pipeline says (acks, settlements) arrives as events on the session's queue and is written
from the session's own task, so writes never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak_retry_connector import establish_connection

from pinseal_gateway.config import BleSection
from pinseal_gateway.metrics import Metrics
from pinseal_protocol import ble_link as bl

log = logging.getLogger(__name__)

GATT_TIMEOUT_S = 10.0
"""One read, write or subscription: BlueZ answers or times the link out well within this."""
GAP_QUIET_S = 0.3
"""A transfer half done and no chunk for this long: ask again for every chunk still missing."""
CONNECT_ATTEMPTS = 2
"""establish_connection's attempts per session; the intake's per-device backoff spaces sessions."""


class Outcome(enum.Enum):
    DRAINED = "drained"  # the device said its outbox is empty: a clean end
    HUNG_UP = "hung_up"  # the device ended the link between transfers (a board does once it has sent all)
    IDLE = "idle"  # no chunk for idle_timeout_s
    FAILED = "failed"  # connecting, a GATT operation or the link failed
    REFUSED = "refused"  # the info's key id is not one we may take bundles from


class Refused(Exception):
    """The device's info does not confirm a registered, unrevoked key id with the advertised prefix."""


@dataclass
class SessionResult:
    outcome: Outcome
    kid: bytes | None
    bundles: int
    detail: str = ""


Event = tuple[str, object]
"""("chunk", bytes) | ("ack", bytes) | ("settled", int) | ("lost", None)"""


class Session:
    """A connection to one advertised device, run once by `run`.

    The intake supplies `check_kid` (the registry check), `confirmed` (called once the key id is
    confirmed: from then on the intake posts the device's acks here, those kept from an earlier session
    first) and `submit` (hands a reassembled bundle to the pipeline, waiting for room).
    """

    def __init__(
        self,
        device: BLEDevice,
        prefix: bytes,
        config: BleSection,
        metrics: Metrics,
        check_kid: Callable[[bytes, bytes], str | None],
        confirmed: Callable[[Session], None],
        submit: Callable[[Session, bytes], Awaitable[None]],
    ) -> None:
        self.device = device
        self.prefix = prefix
        self.config = config
        self.metrics = metrics
        self.check_kid = check_kid
        self.confirmed = confirmed
        self.submit = submit
        self.kid: bytes | None = None
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.bundles = 0
        self._client: BleakClient | None = None
        self._reassembler = bl.Reassembler()
        self._in_flight = 0  # bundles handed to the pipeline, not yet settled

    @property
    def name(self) -> str:
        return f"{self.prefix.hex()}@{self.device.address}"

    def post(self, kind: str, value: object = None) -> None:
        """From the event loop (pipeline callbacks, bleak callbacks): something for the session to act on."""
        self.events.put_nowait((kind, value))

    async def run(self) -> SessionResult:
        try:
            await self._run()
        except Refused as exc:
            return SessionResult(Outcome.REFUSED, self.kid, self.bundles, str(exc))
        except _Ended as end:
            return SessionResult(end.outcome, self.kid, self.bundles, end.detail)
        except Exception as exc:  # BleakError, D-Bus errors, timeouts, BleLinkError in the info
            return SessionResult(Outcome.FAILED, self.kid, self.bundles, f"{type(exc).__name__}: {exc}")
        finally:
            await self._disconnect()
        return SessionResult(
            Outcome.DRAINED, self.kid, self.bundles
        )  # pragma: no cover (run ends by raising)

    async def _run(self) -> None:
        cfg = self.config
        async with asyncio.timeout(cfg.connect_timeout_s * CONNECT_ATTEMPTS):
            self._client = await establish_connection(
                BleakClient,
                self.device,
                self.name,
                disconnected_callback=lambda _client: self.post("lost"),
                max_attempts=CONNECT_ATTEMPTS,
                timeout=cfg.connect_timeout_s,
            )
        info = await self._read_info()
        why = self.check_kid(info.kid, self.prefix)
        if why is not None:
            raise Refused(why)
        self.kid = info.kid
        self.confirmed(self)
        log.info(
            "BLE %s connected: device %s, firmware %s on %s, %d bundles waiting",
            self.name,
            info.kid.hex(),
            info.firmware,
            info.board,
            info.outbox_depth,
        )
        await asyncio.wait_for(
            self._client.start_notify(
                bl.BUNDLES_UUID,
                lambda _char, data: self.post("chunk", bytes(data)),
                bluez={"use_start_notify": cfg.use_start_notify},
            ),
            GATT_TIMEOUT_S,
        )
        await self._write(bl.encode_down(bl.SendDown()))  # a board's stack does not tell it we subscribed
        await self._receive()

    async def _read_info(self) -> bl.Info:
        assert self._client is not None
        raw = await asyncio.wait_for(self._client.read_gatt_char(bl.INFO_UUID), GATT_TIMEOUT_S)
        return bl.decode_info(bytes(raw))

    async def _write(self, data: bytes) -> None:
        assert self._client is not None
        await asyncio.wait_for(
            self._client.write_gatt_char(bl.DOWN_UUID, data, response=True), GATT_TIMEOUT_S
        )

    async def _receive(self) -> None:
        """Until the device is drained, idle, or the link is lost (each ends by raising `_Ended`)."""
        last_chunk = time.monotonic()
        while True:
            quiet = self._reassembler.in_progress and not self._in_flight
            timeout = GAP_QUIET_S if quiet else self.config.idle_timeout_s
            try:
                kind, value = await asyncio.wait_for(self.events.get(), timeout)
            except TimeoutError:
                if quiet and time.monotonic() - last_chunk < self.config.idle_timeout_s:
                    await self._ask_again(self._reassembler.missing())
                    continue
                if self._in_flight:
                    continue  # the pipeline has our bundle: its answer is on the way
                raise _Ended(Outcome.IDLE, f"no chunk for {self.config.idle_timeout_s:g} s") from None
            if kind == "chunk":
                last_chunk = time.monotonic()
                await self._chunk(value)  # type: ignore[arg-type]
            elif kind == "ack":
                await self._write(bl.encode_down(bl.AckDown(value)))  # type: ignore[arg-type]
                if (await self._read_info()).outbox_depth == 0:
                    raise _Ended(Outcome.DRAINED)
            elif kind == "settled":
                self._in_flight -= 1
                last_chunk = time.monotonic()
            elif kind == "lost":
                if self.bundles and not self._reassembler.in_progress and not self._in_flight:
                    raise _Ended(Outcome.HUNG_UP)
                raise _Ended(Outcome.FAILED, "the device disconnected")

    async def _chunk(self, raw: bytes) -> None:
        try:
            chunk = bl.parse_chunk(raw)
        except bl.BleLinkError as exc:
            log.debug("BLE %s: notification dropped: %s", self.name, exc)
            return
        fed = self._reassembler.feed(chunk)
        if fed.gaps:
            await self._ask_again(fed.gaps)
        if fed.bundle is not None:
            self.bundles += 1
            self.metrics.ble_bundles_received.inc()
            await self._write(bl.encode_down(bl.ReceivedDown(chunk.transfer)))
            self._in_flight += 1
            await self.submit(self, fed.bundle)

    async def _ask_again(self, missing: list[int]) -> None:
        transfer = self._reassembler.transfer
        if not missing or transfer is None:
            return
        for request in bl.resend_requests(transfer, missing):
            self.metrics.ble_resend_requests.inc()
            await self._write(request)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), GATT_TIMEOUT_S)


class _Ended(Exception):
    def __init__(self, outcome: Outcome, detail: str = "") -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
