"""The virtual board's radio on BlueZoo (an emulated BlueZ on a private D-Bus bus): the board becomes a
peripheral on one of its adapters (`pinseal_vboard.bluez.peripheral`), so the gateway's unmodified bleak
connects to it as to any BlueZ peripheral. What `make test` runs.

The firmware's service is exported as a GATT application, its raw advertising payloads become an LE
advertisement, its notifications go out on the central's notify socket. After each link the adapter takes
a new address, as a device with a resolvable private address does: BlueZoo keeps a link's GATT objects
under the old address for ever (see `readdress_adapter`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from dbus_fast.errors import DBusError

from pinseal_vboard.bluez.bus import readdress_adapter
from pinseal_vboard.bluez.peripheral import Advertisement, Characteristic, Handlers, Peripheral
from pinseal_vboard.board import VirtualBoard
from pinseal_vboard.radio import Radio, WriteTooLong

BLUEZ_MTU = 517  # what BlueZ offers in the exchange it starts on every LE link

_FLAG_NAMES = ((0x0002, "read"), (0x0008, "write"), (0x0004, "write-without-response"), (0x0010, "notify"))


def _bluez_flags(flags: int) -> tuple[str, ...]:
    return tuple(name for bit, name in _FLAG_NAMES if flags & bit)


class BluezRadio(Radio):
    """`board`'s radio on adapter `adapter` of the BlueZoo bus at `bus_address`.

    BlueZ on a radio exchanges the ATT MTU as it connects (it offers 517); BlueZoo exchanges none, so the
    radio plays that exchange: the link's MTU is the lower of 517 and what the firmware offered, reported to
    the firmware as a board's stack does. exchange_mtu=False: a central that never exchanges (MTU 23)."""

    def __init__(
        self,
        board: VirtualBoard,
        bus_address: str,
        adapter: int,
        lose: float = 0.0,
        seed: int = 0,
        exchange_mtu: bool = True,
    ) -> None:
        self.bus_address = bus_address
        self.adapter = adapter
        self.exchange_mtu = exchange_mtu
        self.peripheral: Peripheral | None = None
        self._addresses = 0
        super().__init__(board, lose, seed)

    async def _air_advertise(self, on: bool, adv: bytes, resp: bytes) -> None:
        if not on:
            if self.peripheral is not None:
                await self.peripheral.advertise(False)
            return
        advert = Advertisement.from_payloads(adv, resp)
        if self.peripheral is None:
            chars = [Characteristic(uuid, _bluez_flags(flags)) for uuid, flags, _ in self.chars]
            self.peripheral = Peripheral(
                self.adapter,
                self.service,
                chars,
                advert,
                Handlers(
                    on_read=self.read,
                    on_write=self._write,
                    on_connect=self._central_came,
                    on_disconnect=self._central_went,
                ),
                bus_address=self.bus_address,
                name=f"vboard{self.board.id}",
            )
            await self.peripheral.start(advertise=False)
        await self.peripheral.advertise(True, advert)

    def _air_notify(self, uuid: str, data: bytes) -> None:
        if self.peripheral is not None:
            self.peripheral.notify(uuid, data)

    async def _air_hang_up(self) -> None:
        # BlueZoo ends a peripheral's link when its application goes: the relink does that
        if self._central is not None:
            await self._central_went(str(self._central))

    async def _air_teardown(self) -> None:
        if self.peripheral is not None:
            with contextlib.suppress(Exception):
                await self.peripheral.stop()
            self.peripheral = None

    async def _air_request(self, msg: dict[str, Any]) -> None:
        if msg["op"] == "relink":
            await self._air_teardown()
            self._addresses += 1
            n = self._addresses
            address = f"00:AC:{self.adapter:02X}:00:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"
            await readdress_adapter(self.bus_address, self.adapter, address)

    async def _write(self, uuid: str, value: bytes) -> None:
        try:
            self.write(uuid, value)
        except WriteTooLong as exc:
            raise DBusError("org.bluez.Error.InvalidValueLength", str(exc)) from exc

    async def _central_came(self, central: str) -> None:
        self._connected(central, _address_of(central))
        if self.exchange_mtu and self.peripheral is not None:
            self.peripheral.mtu = min(BLUEZ_MTU, self.offered_mtu)
            self.mtu_exchanged(self.peripheral.mtu)

    async def _central_went(self, central: str) -> None:
        if self._disconnected(central):
            # the next link from a new address; the firmware's next advertise request starts it again
            self._queue.put_nowait({"op": "relink"})


def _address_of(device_path: str) -> str:
    """The address in a BlueZ device path (/org/bluez/hci0/dev_AA_BB_...), as the IRQ's 6 bytes (hex)."""
    parts = device_path.rsplit("/", 1)[-1].removeprefix("dev_").split("_")
    try:
        return bytes(int(p, 16) for p in parts)[::-1].hex() if len(parts) == 6 else "00" * 6
    except ValueError:
        return "00" * 6
