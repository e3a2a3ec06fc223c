"""A host-simulated device on the BLE link (docs/protocol.md §11): a `SimDevice`'s real, signed bundles
over a BlueZ peripheral (`pinseal_vboard.bluez.peripheral`), with the firmware's outbox rules.

What it does is what §11 asks of a device: it advertises the pinseal service with its key id prefix
while its outbox holds a bundle; it answers the info read with its outbox depth; once subscribed, it
sends its oldest bundle as one transfer (a new transfer id each time it is sent), resends the chunks a
resend request names, counts the bundle as handed over on "received", and drops it from the outbox only
on a verified ack (`SimDevice.receive_reply`: the same check as over MQTT). A bundle neither received
nor acked within `resend_after_s` goes again as a new transfer.

Fault knobs (`Faults`, seeded): drop or reorder a fraction of notifications, and drop the link at random
points (while sending, or right after an ack). A dropped link is a device that reset its radio: it stops,
takes a new address (a resolvable private address, and BlueZoo's need: `readdress_adapter`) and
advertises again if it still holds bundles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field

from pinseal_devkit.simdevice import SimDevice
from pinseal_protocol import ble_link as bl
from pinseal_vboard.bluez.bus import readdress_adapter
from pinseal_vboard.bluez.peripheral import Advertisement, Characteristic, Handlers, Peripheral

log = logging.getLogger("pinseal.ble_device")

RELINK_ATTEMPTS = 5
RESEND_AFTER_S = 2.0
"""No "received" or no ack this long after sending a bundle: send it again (as the firmware's resend)."""


@dataclass
class Faults:
    """What the device's radio gets wrong, reproducibly from `seed`."""

    drop: float = 0.0
    """Fraction of notifications never sent."""
    reorder: float = 0.0
    """Fraction of notifications held back and sent after the next one."""
    disconnect: float = 0.0
    """Chance, at each notification and after each ack, that the device drops the link there."""
    seed: int = 0


@dataclass
class Stats:
    notifications: int = 0
    notified_bytes: int = 0
    """Bytes on the air for the notifications sent: each value and its ATT header (resends included)."""
    dropped: int = 0
    reordered: int = 0
    disconnects: int = 0
    resend_requests: int = 0
    transfers: int = 0
    acks: int = 0
    connections: int = 0
    addresses: list[str] = field(default_factory=list)


class BleDevice:
    """`sim`'s outbox served over BLE on BlueZoo adapter `adapter` (see the module's docstring)."""

    def __init__(
        self,
        sim: SimDevice,
        bus_address: str,
        adapter: int,
        *,
        faults: Faults | None = None,
        firmware: str = "sim-1",
        board: str = "host",
        mtu: int = bl.DEFAULT_MTU,
        resend_after_s: float = RESEND_AFTER_S,
    ) -> None:
        self.sim = sim
        self.bus_address = bus_address
        self.adapter = adapter
        self.faults = faults or Faults()
        self.firmware = firmware
        self.board = board
        self.mtu = mtu
        self.resend_after_s = resend_after_s
        self.stats = Stats()
        self._rng = random.Random(self.faults.seed)
        self._transfer = self._rng.randrange(256)
        self._current: tuple[int, list[bytes]] | None = None
        self._received = asyncio.Event()
        self._acked = asyncio.Event()
        self._sealed = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._relinking: asyncio.Task[None] | None = None
        self._addresses = 0
        self._stopped = False
        self.peripheral = Peripheral(
            adapter,
            bl.SERVICE_UUID,
            [
                Characteristic(bl.INFO_UUID, ("read",)),
                Characteristic(bl.BUNDLES_UUID, ("notify",)),
                Characteristic(bl.DOWN_UUID, ("write",)),
            ],
            # the payloads §11 specifies, as a board's stack would hand them to its radio
            Advertisement.from_payloads(bl.advertisement(), bl.scan_response(sim.kid)),
            Handlers(
                on_read=self._on_read,
                on_write=self._on_write,
                on_connect=self._on_connect,
                on_disconnect=self._on_disconnect,
            ),
            bus_address=bus_address,
            name=f"dev{sim.kid_hex[:8]}",
            mtu=mtu,
        )

    @property
    def outbox_depth(self) -> int:
        return len(self.sim.unacked)

    @property
    def idle(self) -> bool:
        """Not connected and not changing address: what it advertises now stays so until it seals."""
        return self.peripheral.central is None and self._relinking is None

    async def start(self) -> None:
        """On a fresh address; advertising once the outbox holds a bundle."""
        await self._new_address()
        await self.peripheral.start(advertise=self.outbox_depth > 0)

    async def stop(self) -> None:
        self._stopped = True
        for task in (self._sender, self._relinking):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.peripheral.stop()

    async def seal(self, bundles: int = 1) -> None:
        """Take and seal readings into `bundles` bundles (into the outbox), and advertise."""
        for _ in range(bundles):
            self.sim.seal_next()
        self._sealed.set()
        if self.peripheral.central is None and not self._stopped and self._relinking is None:
            await self.peripheral.advertise(True)

    # -- GATT callbacks ------------------------------------------------------------------------------

    def _on_read(self, uuid: str, offset: int) -> bytes:
        if uuid != bl.INFO_UUID:
            return b""
        info = bl.Info(self.sim.kid, self.firmware, self.board, self.outbox_depth)
        return info.encode()[offset:]

    def _on_connect(self, central: str) -> None:
        self.stats.connections += 1

    def _on_write(self, uuid: str, value: bytes) -> None:
        try:
            message = bl.decode_down(value)
        except bl.BleLinkError as exc:
            log.warning("device %s: a bad write: %s", self.sim.kid_hex, exc)
            return
        current = self._current
        if isinstance(message, bl.AckDown):
            if self.sim.receive_reply(message.message):
                self.stats.acks += 1
                self._acked.set()
            if self._chance(self.faults.disconnect):
                self._drop_link("after an ack")
        elif isinstance(message, bl.ResendDown):
            self.stats.resend_requests += 1
            if current is not None and message.transfer == current[0]:
                self._send([current[1][i] for i in message.indices if i < len(current[1])])
        elif isinstance(message, bl.SendDown):
            # the gateway subscribed: start, as the firmware does (its stack reports no subscriptions)
            if self._sender is None or self._sender.done():
                self._sender = asyncio.ensure_future(self._send_outbox())
        elif current is not None and message.transfer == current[0]:
            self._received.set()

    def _on_disconnect(self, central: str) -> None:
        self._relink()

    # -- sending -------------------------------------------------------------------------------------

    async def _send_outbox(self) -> None:
        """Stop and wait, as the firmware: the oldest bundle until it is acked, then the next."""
        while self.peripheral.subscribed(bl.BUNDLES_UUID):
            with self.sim._lock:
                oldest = next(iter(self.sim.outbox.items()), None)
            if oldest is None:
                self._sealed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._sealed.wait(), self.resend_after_s)
                continue
            bundle_hash, entry = oldest
            self._transfer = (self._transfer + 1) % 256
            pieces = bl.chunks(self._transfer, entry.raw, self.mtu)
            self._current = (self._transfer, pieces)
            self._received.clear()
            self._acked.clear()
            self.stats.transfers += 1
            self._send(pieces)
            try:
                await asyncio.wait_for(self._received.wait(), self.resend_after_s)
                while bundle_hash in self.sim.unacked:
                    await asyncio.wait_for(self._acked.wait(), self.resend_after_s)
                    self._acked.clear()
            except TimeoutError:
                continue  # not received or not acked: the same bundle again, as a new transfer
            await asyncio.sleep(0)

    def _send(self, pieces: list[bytes]) -> None:
        """Notify `pieces` in order, through the fault knobs."""
        held: bytes | None = None
        for piece in pieces:
            if self._chance(self.faults.disconnect):
                self._drop_link("while sending")
                return
            if self._chance(self.faults.drop):
                self.stats.dropped += 1
                continue
            if held is None and self._chance(self.faults.reorder):
                self.stats.reordered += 1
                held = piece
                continue
            if not self._notify(piece):
                return
            if held is not None:
                self._notify(held)
                held = None
        if held is not None:
            self._notify(held)

    def _notify(self, piece: bytes) -> bool:
        if not self.peripheral.notify(bl.BUNDLES_UUID, piece):
            return False
        self.stats.notifications += 1
        self.stats.notified_bytes += len(piece) + bl.ATT_HEADER
        return True

    def _chance(self, p: float) -> bool:
        return p > 0 and self._rng.random() < p

    # -- the link going away -------------------------------------------------------------------------

    def _drop_link(self, where: str) -> None:
        """The device resets its radio: the link is gone from its side (the gateway notices by itself)."""
        if self.peripheral.central is None and self._relinking is not None:
            return
        self.stats.disconnects += 1
        log.info("device %s drops the link %s", self.sim.kid_hex, where)
        self._relink()

    def _relink(self) -> None:
        if self._relinking is not None or self._stopped:
            return
        self._relinking = asyncio.ensure_future(self._restart_radio())

    async def _restart_radio(self) -> None:
        """Off the link, a new address, and back (advertising if bundles wait). A bench call that fails is
        tried again: a device that stays off the air would look like a gateway that lost it."""
        try:
            if self._sender is not None and self._sender is not asyncio.current_task():
                self._sender.cancel()
            self._current = None
            for attempt in range(1, RELINK_ATTEMPTS + 1):
                try:
                    await self.peripheral.stop()
                    await self._new_address()
                    if not self._stopped:
                        await self.peripheral.start(advertise=False)
                        # decided only now: a bundle sealed during the restart found it under way
                        # and left advertising to it (no await from here to the end of the restart)
                        if self.outbox_depth > 0:
                            await self.peripheral.advertise(True)
                    return
                except Exception as exc:  # a D-Bus error or timeout from the bench
                    log.warning("device %s: radio restart %d failed: %s", self.sim.kid_hex, attempt, exc)
                    await asyncio.sleep(0.2)
        finally:
            self._relinking = None

    async def _new_address(self) -> None:
        self._addresses += 1
        n = self._addresses
        address = f"00:AB:{self.adapter:02X}:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"
        await readdress_adapter(self.bus_address, self.adapter, address)
        self.stats.addresses.append(address)
