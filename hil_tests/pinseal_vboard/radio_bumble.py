"""The virtual board's radio on a bumble controller, for a real Bluetooth stack on the other side: the
board's requests drive a bumble host (`bumble.device.Device`, GATT server and advertiser) on an emulated
controller, linked (bumble's LocalLink) to a second emulated controller that a real kernel's Bluetooth
stack drives over HCI (`make test-ble-kernel`: a QEMU guest's /dev/vhci, relayed over virtio-serial).
The kernel, bluetoothd and the gateway's bleak in the guest then see the board as any LE peripheral.

bumble 0.0.236's emulated controller reports a scanned device's advertising data a second time where a
real one reports its scan response, and reports a legacy advertiser's PDUs as extended ones (event type
"connectable" alone). Linux merges an advertisement with its scan response only for legacy PDUs, and a
service discovery filter (bleak's, by the service UUID) then drops the unmerged scan response, where the
gateway finds a board's key-id prefix (docs/protocol.md §11): the board was seen and never connected.
`ScanResponseController` reports what a real controller does: the scan response the advertiser set, with
the event types of the PDUs it sent. Its LocalLink sends a controller's ACL data from the controller's
current random address, so once Linux picks a new one to scan with, the board's controller finds no
connection for what the gateway sends and the link goes silent; `ConnectionLink` sends it from the
address the connection was made with, as the air does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from bumble import hci
from bumble.att import ATT_Error, ErrorCode
from bumble.controller import Controller
from bumble.core import PhysicalTransport
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from pinseal_vboard.board import VirtualBoard
from pinseal_vboard.radio import Radio, WriteTooLong

_LEGACY_SCAN_RSP = hci.HCI_LE_Advertising_Report_Event.EventType.SCAN_RSP
_EXT = hci.HCI_LE_Extended_Advertising_Report_Event.EventType
_EXTENDED_SCAN_RSP = _EXT.SCAN_RESPONSE
_USE_LEGACY_PDUS = (
    hci.HCI_LE_Set_Extended_Advertising_Parameters_Command.AdvertisingProperties.USE_LEGACY_ADVERTISING_PDUS
)
_FLAGS = (
    (0x0002, Characteristic.Properties.READ, Characteristic.READABLE),
    (0x0008, Characteristic.Properties.WRITE, Characteristic.WRITEABLE),
    (0x0004, Characteristic.Properties.WRITE_WITHOUT_RESPONSE, Characteristic.WRITEABLE),
    (0x0010, Characteristic.Properties.NOTIFY, 0),
)


class ConnectionLink(LocalLink):
    """bumble's emulated air, with LE data sent from the address its connection was made with."""

    def send_acl_data(
        self, sender_controller: Controller, destination_address: hci.Address, transport: Any, data: bytes
    ) -> None:
        connection = sender_controller.le_connections.get(destination_address)
        if transport != PhysicalTransport.LE or connection is None:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        receiver = self.find_le_controller(destination_address)
        if receiver is not None:
            source = connection.self_address
            asyncio.get_running_loop().call_soon(receiver.on_link_acl_data, source, transport, data)


class ScanResponseController(Controller):
    """An emulated controller whose scan reports carry the advertiser's scan response, and the legacy event
    types (ADV_IND, SCAN_RSP) for an advertiser that sends legacy PDUs, as a real controller's do."""

    def on_advertising_pdu(self, pdu: Any) -> None:
        advertiser = self._advertiser_at(pdu.advertiser_address)
        if advertiser is None:
            super().on_advertising_pdu(pdu)
            return
        scan_rsp, legacy = advertiser
        send = self.send_hci_packet

        def as_a_real_controller(packet: Any) -> None:
            reports = getattr(packet, "reports", None)
            if reports:
                packet = type(packet)([_as_sent(r, scan_rsp, legacy) for r in reports])
            send(packet)

        self.send_hci_packet = as_a_real_controller  # type: ignore[method-assign]
        try:
            super().on_advertising_pdu(pdu)
        finally:
            del self.send_hci_packet

    def _advertiser_at(self, address: hci.Address) -> tuple[bytes, bool] | None:
        """(scan response, sends legacy PDUs) of the advertiser at `address`: a legacy advertiser, or an
        advertising set (a host uses those when the controller offers extended advertising)."""
        for other in self.link.controllers if self.link is not None else ():
            if other is self:
                continue
            legacy_adv = getattr(other, "le_legacy_advertiser", None)
            if legacy_adv is not None and legacy_adv.enabled and legacy_adv.address == address:
                return bytes(legacy_adv.scan_response_data), True
            for adv in other.advertising_sets.values():
                if adv.enabled and adv.address == address:
                    properties = adv.parameters.advertising_event_properties if adv.parameters else 0
                    return bytes(adv.scan_response_data), bool(properties & _USE_LEGACY_PDUS)
        return None


def _as_sent(report: Any, scan_rsp: bytes, legacy: bool) -> Any:
    """A report as a real controller gives it: scan responses carry the scan response data; a legacy
    connectable advertisement is ADV_IND (connectable, scannable, legacy) and its scan response says so."""
    if not isinstance(report, hci.HCI_LE_Extended_Advertising_Report_Event.Report):
        return dataclasses.replace(report, data=scan_rsp) if _is_scan_response(report.event_type) else report
    is_scan_rsp = _is_scan_response(report.event_type)
    event_type = report.event_type
    if legacy:
        event_type = (
            _EXT.CONNECTABLE_ADVERTISING | _EXT.SCANNABLE_ADVERTISING | _EXT.LEGACY_ADVERTISING_PDU_USED
        )
        if is_scan_rsp:
            event_type |= _EXT.SCAN_RESPONSE
    return dataclasses.replace(report, event_type=event_type, data=scan_rsp if is_scan_rsp else report.data)


def _is_scan_response(event_type: int) -> bool:
    return event_type == _LEGACY_SCAN_RSP or (
        isinstance(event_type, _EXT) and bool(event_type & _EXTENDED_SCAN_RSP)
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
        self.link = link = ConnectionLink()
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

    async def _air_offer_mtu(self, mtu: int) -> None:
        if self.device is not None:  # bumble answers the central's exchange with the lower of the two
            self.device.gatt_server.max_mtu = mtu

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
