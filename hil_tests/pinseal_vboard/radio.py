"""A virtual board's Bluetooth LE radio on an emulated BlueZ adapter: the bridge between the `bluetooth` shim
in the VM (hil_tests/vboard/mpy/bluetooth.py, radio.mjs) and `pinseal_vboard.bluez.peripheral`.

What the unmodified firmware asks of its stack becomes what a peripheral on a BlueZ adapter does: its
registered service is exported as a GATT application, its raw advertising payloads are parsed and
registered as an LE advertisement, its attribute writes are served to the central's reads, its
notifications go out on the central's notify socket. What the central does comes back to the firmware as
the IRQs a board gets: connect, write (the value a central wrote, after the stack's length check against
the attribute's buffer, as NimBLE refuses a longer write), disconnect. So the gateway's unmodified bleak
connects to the board as to any BlueZ peripheral.

The board's request messages arrive in the board host's reader thread; the bridge runs the D-Bus side on
an event loop of its own (a thread), so neither waits for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from typing import Any

from dbus_fast.errors import DBusError

from pinseal_protocol import ble_link
from pinseal_vboard.bluez.bus import readdress_adapter
from pinseal_vboard.bluez.peripheral import Advertisement, Characteristic, Handlers, Peripheral
from pinseal_vboard.board import VirtualBoard

log = logging.getLogger(__name__)

_FLAG_READ = 0x0002
_FLAG_WRITE_NO_RESPONSE = 0x0004
_FLAG_WRITE = 0x0008
_FLAG_NOTIFY = 0x0010


def _bluez_flags(flags: int) -> tuple[str, ...]:
    names = []
    if flags & _FLAG_READ:
        names.append("read")
    if flags & _FLAG_WRITE:
        names.append("write")
    if flags & _FLAG_WRITE_NO_RESPONSE:
        names.append("write-without-response")
    if flags & _FLAG_NOTIFY:
        names.append("notify")
    return tuple(names)


def advertisement_of(adv: bytes, resp: bytes) -> Advertisement:
    """The BlueZ advertisement that carries what the firmware's raw payloads say (service UUIDs and
    service data); what BlueZ's advertising API cannot express is refused, not dropped in silence."""
    uuids: list[str] = []
    data: dict[str, bytes] = {}
    for ad_type, body in ble_link.ad_structures(adv) + ble_link.ad_structures(resp):
        if ad_type == ble_link.AD_FLAGS:
            continue
        if ad_type in (0x06, 0x07):  # incomplete / complete list of 128-bit UUIDs
            for i in range(0, len(body) - 15, 16):
                uuids.append(str(_uuid(body[i : i + 16])))
        elif ad_type == ble_link.AD_SERVICE_DATA_UUID128 and len(body) >= 16:
            data[str(_uuid(body[:16]))] = bytes(body[16:])
        elif ad_type in (0x08, 0x09):
            continue  # the name: BlueZ takes it from the adapter
        else:
            raise ValueError(f"vboard radio: AD type 0x{ad_type:02x} is not bridged to BlueZ")
    return Advertisement(tuple(uuids), data)


def _uuid(little_endian: bytes) -> Any:
    import uuid

    return uuid.UUID(bytes=bytes(little_endian[::-1]))


class RadioBridge:
    """Puts `board`'s radio on adapter `adapter` of the BlueZ bus at `bus_address`.

    `lose`: the share of the board's notifications the air loses or delays past the next one (seeded by
    `seed`), for tests of the link's gap recovery."""

    def __init__(
        self, board: VirtualBoard, bus_address: str, adapter: int, lose: float = 0.0, seed: int = 0
    ) -> None:
        self.board = board
        self.lose = lose
        self._rng = random.Random(seed)
        self._held: tuple[str, bytes] | None = None
        self.notifications_lost = 0
        self.notifications_reordered = 0
        self.bus_address = bus_address
        self.adapter = adapter
        self.peripheral: Peripheral | None = None
        self.errors: list[str] = []
        self._values: dict[int, bytes] = {}
        self._sizes: dict[int, int] = {}
        self._handle_of: dict[str, int] = {}
        self._uuid_of: dict[int, str] = {}
        self._service = ""
        self._chars: list[Characteristic] = []
        self._conn = 0
        self._central: str | None = None
        self._advert: Advertisement | None = None
        self._addresses = 0
        self._advertise_on = False
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"vboard-radio {board.id}", daemon=True
        )
        self._thread.start()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker = asyncio.run_coroutine_threadsafe(self._work(), self.loop)
        board.on_radio = self._from_board

    def close(self) -> None:
        self.board.on_radio = None
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        with contextlib.suppress(Exception):
            fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        await self._teardown()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # -- from the board (host reader thread) ----------------------------------------------------------

    def _from_board(self, msg: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self._queue.put_nowait, msg)

    async def _work(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                await self._request(msg)
            except Exception as exc:  # one request's failure is that request's: logged, kept for the test
                log.exception("vboard radio: %s failed", msg.get("op"))
                self.errors.append(f"{msg.get('op')}: {exc!r}")

    async def _request(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "active":
            if not msg["on"]:
                await self._teardown()
        elif op == "register":
            await self._teardown()
            (service,) = msg["services"]  # one service: what the firmware registers
            self._service = service["uuid"]
            self._chars = []
            for char in service["chars"]:
                handle = char["handle"]
                self._handle_of[char["uuid"]] = handle
                self._uuid_of[handle] = char["uuid"]
                self._values[handle] = b""
                self._sizes[handle] = 20
                self._chars.append(Characteristic(char["uuid"], _bluez_flags(char["flags"])))
        elif op == "value":
            self._values[msg["handle"]] = bytes.fromhex(msg["hex"])
            self._sizes[msg["handle"]] = max(
                self._sizes.get(msg["handle"], 20), len(self._values[msg["handle"]])
            )
        elif op == "buffer":
            self._sizes[msg["handle"]] = msg["size"]
        elif op == "advertise":
            await self._advertise(msg)
        elif op == "notify":
            self._notify(self._uuid_of[msg["handle"]], bytes.fromhex(msg["hex"]))
        elif op == "disconnect" and self._central is not None:
            # the board hangs up: the link ends from its side (its stack then reports the disconnect, as
            # NimBLE does after gap_disconnect); BlueZoo ends a peripheral's link when its radio goes
            await self._disconnected(self._central)
        elif op == "relink":
            await self._relink()
        elif op == "drop" and self._central is not None:
            await self._disconnected(self._central)

    def _notify(self, uuid: str, data: bytes) -> None:
        if self.peripheral is None:
            return
        if self.lose and self._rng.random() < self.lose:
            if self._rng.random() < 0.5:
                self.notifications_lost += 1
                return
            if self._held is None:  # delayed: it goes out after the next one
                self._held = (uuid, data)
                self.notifications_reordered += 1
                return
        self.peripheral.notify(uuid, data)
        held, self._held = self._held, None
        if held is not None:
            self.peripheral.notify(*held)

    def drop(self) -> None:
        """The link lost from the board's side (out of range, its radio reset): from any thread."""
        self.loop.call_soon_threadsafe(self._queue.put_nowait, {"op": "drop"})

    async def _advertise(self, msg: dict[str, Any]) -> None:
        if not msg["on"]:
            if self.peripheral is not None:
                await self.peripheral.advertise(False)
            return
        advert = advertisement_of(bytes.fromhex(msg["adv"]), bytes.fromhex(msg["resp"]))
        if self.peripheral is None:
            self.peripheral = Peripheral(
                self.adapter,
                self._service,
                self._chars,
                advert,
                Handlers(
                    on_read=self._read,
                    on_write=self._write,
                    on_connect=self._connected,
                    on_disconnect=self._disconnected,
                ),
                bus_address=self.bus_address,
                name=f"vboard{self.board.id}",
            )
            await self.peripheral.start(advertise=False)
        await self.peripheral.advertise(True, advert)

    async def _teardown(self) -> None:
        if self._central is not None:
            await self._disconnected(self._central)
        if self.peripheral is not None:
            with contextlib.suppress(Exception):
                await self.peripheral.stop()
            self.peripheral = None

    # -- from the air (the bridge's loop) ---------------------------------------------------------------

    def _read(self, uuid: str, offset: int) -> bytes:
        return self._values.get(self._handle_of.get(uuid, -1), b"")[offset:]

    async def _write(self, uuid: str, value: bytes) -> None:
        handle = self._handle_of.get(uuid, -1)
        if len(value) > self._sizes.get(handle, 20):
            # NimBLE refuses a write longer than the attribute's buffer (gatts_set_buffer)
            raise DBusError(
                "org.bluez.Error.InvalidValueLength", f"{len(value)} bytes > the attribute's buffer"
            )
        self._values[handle] = value
        self.board.radio_event(ev="write", conn=self._conn, handle=handle, hex=value.hex())

    async def _connected(self, central: str) -> None:
        self._conn += 1
        self._central = central
        self.board.radio_event(ev="connect", conn=self._conn, addr=_address_of(central))

    async def _disconnected(self, central: str) -> None:
        if central != self._central:
            return
        self._central = None
        self.board.radio_event(ev="disconnect", conn=self._conn, addr=_address_of(central))
        # The next connection comes from a new address, as an LE device with a resolvable private address
        # makes one: BlueZoo keeps a connection's GATT objects under the old address for ever (see
        # readdress_adapter). The firmware's next advertise request starts the application again.
        self._queue.put_nowait({"op": "relink"})

    async def _relink(self) -> None:
        if self.peripheral is not None:
            with contextlib.suppress(Exception):
                await self.peripheral.stop()
            self.peripheral = None
        self._addresses += 1
        n = self._addresses
        await readdress_adapter(
            self.bus_address, self.adapter, f"00:AC:{self.adapter:02X}:00:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"
        )


def _address_of(device_path: str) -> str:
    """The address in a BlueZ device path (/org/bluez/hci0/dev_AA_BB_...), as the IRQ's 6 bytes (hex)."""
    tail = device_path.rsplit("/", 1)[-1]
    parts = tail.removeprefix("dev_").split("_")
    try:
        return bytes(int(p, 16) for p in parts[:6])[::-1].hex() if len(parts) == 6 else "00" * 6
    except ValueError:
        return "00" * 6
