"""The virtual board's radio on a bumble controller, for a real Bluetooth stack on the other side: the
board's requests drive a bumble host (`bumble.device.Device`, GATT server and advertiser) on an emulated
controller, linked (bumble's LocalLink) to a second emulated controller that a real kernel's Bluetooth
stack drives over HCI (`make test-ble-kernel`: a QEMU guest's /dev/vhci, relayed over virtio-serial).
The kernel, bluetoothd and the gateway's bleak in the guest then see the board as any LE peripheral.

bumble 0.0.236's emulated controller reports a scanned device's advertising data a second time where a
real one reports its scan response; `ScanResponseController` reports the scan response the advertiser
set, since the gateway finds a board's key-id prefix there (docs/protocol.md §11).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from bumble import hci
from bumble.att import ATT_Error, ErrorCode
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from pinseal_vboard.board import VirtualBoard
from pinseal_vboard.radio import Radio, WriteTooLong

_LEGACY_SCAN_RSP = hci.HCI_LE_Advertising_Report_Event.EventType.SCAN_RSP
_EXTENDED_SCAN_RSP = hci.HCI_LE_Extended_Advertising_Report_Event.EventType.SCAN_RESPONSE
_FLAGS = (
    (0x0002, Characteristic.Properties.READ, Characteristic.READABLE),
    (0x0008, Characteristic.Properties.WRITE, Characteristic.WRITEABLE),
    (0x0004, Characteristic.Properties.WRITE_WITHOUT_RESPONSE, Characteristic.WRITEABLE),
    (0x0010, Characteristic.Properties.NOTIFY, 0),
)


class ScanResponseController(Controller):
    """An emulated controller whose scan reports carry the advertiser's scan response, as a real one's do."""

    def on_advertising_pdu(self, pdu: Any) -> None:
        scan_rsp = self._scan_response_of(pdu.advertiser_address)
        if scan_rsp is None:
            super().on_advertising_pdu(pdu)
            return
        send = self.send_hci_packet

        def with_scan_response(packet: Any) -> None:
            reports = getattr(packet, "reports", None)
            if reports:
                fixed = [
                    dataclasses.replace(r, data=scan_rsp) if _is_scan_response(r.event_type) else r
                    for r in reports
                ]
                packet = type(packet)(fixed)
            send(packet)

        self.send_hci_packet = with_scan_response  # type: ignore[method-assign]
        try:
            super().on_advertising_pdu(pdu)
        finally:
            del self.send_hci_packet

    def _scan_response_of(self, address: hci.Address) -> bytes | None:
        """What the advertiser at `address` set as its scan response: a legacy advertiser, or an advertising
        set (a host uses those when the controller offers extended advertising, legacy PDUs or not)."""
        for other in self.link.controllers if self.link is not None else ():
            if other is self:
                continue
            advertisers = [getattr(other, "le_legacy_advertiser", None), *other.advertising_sets.values()]
            for adv in advertisers:
                if adv is not None and adv.enabled and adv.address == address:
                    return bytes(adv.scan_response_data)
        return None


def _is_scan_response(event_type: int) -> bool:
    return event_type == _LEGACY_SCAN_RSP or (
        isinstance(event_type, hci.HCI_LE_Extended_Advertising_Report_Event.EventType)
        and bool(event_type & _EXTENDED_SCAN_RSP)
    )


class BumbleRadio(Radio):
    """`board`'s radio as a bumble peripheral whose air is shared with the controller at `hci_transport`
    (a bumble transport spec, e.g. "unix:/path/to/qemu-virtio-serial.sock")."""

    def __init__(
        self,
        board: VirtualBoard,
        hci_transport: str,
        address: str = "F0:F1:F2:F3:F4:F5",
        lose: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.hci_transport = hci_transport
        self.address = address
        self.device: Device | None = None
        self.connection: Connection | None = None
        self._transport: Any = None
        self._characteristics: dict[str, Characteristic] = {}
        self._registered: set[str] = set()
        self._outgoing: asyncio.Queue[tuple[str, bytes]] | None = None
        super().__init__(board, lose, seed)

    async def start(self) -> None:
        """Open the transport to the other controller and power the board's host on (on the radio's loop)."""
        self._transport = await open_transport(self.hci_transport)
        self.link = link = LocalLink()
        ScanResponseController(
            "air", host_source=self._transport.source, host_sink=self._transport.sink, link=link
        )
        mine = Controller("board", link=link)
        device = Device.with_hci("pinseal", hci.Address(self.address), mine, AsyncPipeSink(mine))
        device.on("connection", self._on_connection)
        await device.power_on()
        self.device = device
        self._outgoing = asyncio.Queue()
        self._sender = asyncio.ensure_future(self._send_notifications())

    async def _air_register(self) -> None:
        assert self.device is not None, "start() first"
        if self.service in self._registered:
            return  # bumble's server cannot drop a service: a board registering again after a reset reuses it
        chars = []
        for uuid, flags, _handle in self.chars:
            properties, permissions = 0, 0
            for bit, prop, perm in _FLAGS:
                if flags & bit:
                    properties |= prop
                    permissions |= perm
            value = CharacteristicValue(
                read=lambda _conn, u=uuid: self.read(u),
                write=lambda _conn, v, u=uuid: self._write(u, bytes(v)),
            )
            char = Characteristic(uuid, properties, permissions, value)
            self._characteristics[uuid] = char
            chars.append(char)
        self.device.add_service(Service(self.service, chars))
        self._registered.add(self.service)

    def _write(self, uuid: str, value: bytes) -> None:
        try:
            self.write(uuid, value)
        except WriteTooLong as exc:
            raise ATT_Error(ErrorCode.INVALID_ATTRIBUTE_LENGTH, message=str(exc)) from exc

    async def _air_advertise(self, on: bool, adv: bytes, resp: bytes) -> None:
        assert self.device is not None
        if on:
            await self.device.start_advertising(advertising_data=adv, scan_response_data=resp)
        else:
            with contextlib.suppress(Exception):
                await self.device.stop_advertising()

    def _air_notify(self, uuid: str, data: bytes) -> None:
        if self._outgoing is not None:
            self._outgoing.put_nowait((uuid, data))

    async def _send_notifications(self) -> None:
        assert self._outgoing is not None and self.device is not None
        while True:
            uuid, data = await self._outgoing.get()
            connection = self.connection
            if connection is None:
                continue  # the link is gone: lost with it, as on the air
            with contextlib.suppress(Exception):
                await self.device.notify_subscriber(connection, self._characteristics[uuid], data, force=True)

    async def _air_hang_up(self) -> None:
        connection = self.connection
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    async def _air_teardown(self) -> None:
        await self._air_hang_up()
        if self.device is not None:
            with contextlib.suppress(Exception):
                await self.device.stop_advertising()

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        self._connected(connection, bytes(connection.peer_address.address_bytes)[::-1].hex())
        connection.on("disconnection", lambda _reason: self._gone(connection))
        connection.on("connection_att_mtu_update", lambda: self.mtu_exchanged(connection.att_mtu))

    def _gone(self, connection: Connection) -> None:
        if self.connection is connection:
            self.connection = None
        self._disconnected(connection)
