"""A BLE peripheral on one BlueZ adapter: a GATT application and an LE advertisement over D-Bus.

It registers exactly as a device's application does on real BlueZ: its objects are exported on the
system bus (`org.bluez.GattService1`, `GattCharacteristic1`, `LEAdvertisement1`, and the object
manager that `GattManager1.RegisterApplication` reads), then `RegisterApplication` and
`RegisterAdvertisement` on the adapter. It uses `dbus-fast`, bleak's own D-Bus library, so the bench
needs nothing the gateway does not already install.

Notifications go through `AcquireNotify` (a SOCK_SEQPACKET pair, one datagram a notification, as
BlueZ's own notify socket): the characteristic says `NotifyAcquired`, so a central's `StartNotify` is
served by BlueZ(oo) reading that socket and a central's `AcquireNotify` gets the socket itself. Both
paths of bleak (`use_start_notify` true or false) therefore reach the same `notify`.

The peripheral only moves bytes and reports events; what the bytes mean is the caller's (a device
model such as `pinseal_devkit.ble_device`): `on_read`, `on_write`, `on_subscribe`, `on_connect` and
`on_disconnect` callbacks, `notify(data)`, `disconnect()`, `advertise(on)`.
"""

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusBytes,
    DBusDict,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt16,
)
from dbus_fast.errors import DBusError
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_method, dbus_property

from pinseal_protocol.ble_link import ad_structures
from pinseal_vboard.bluez.bus import adapter_path

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
DEFAULT_MTU = 23
"""LE's ATT MTU before an exchange: what the notify socket carries unless the peripheral says otherwise
(BlueZoo exchanges none; BlueZ on a radio offers 517 as it connects, see `mtu`)."""
CALL_TIMEOUT_S = 10.0

# D-Bus signatures for dbus-fast's method and property annotations (this module is evaluated eagerly, without
# `from __future__ import annotations`: dbus-fast reads these annotations at class creation).
StrList = Annotated[list[str], DBusSignature("as")]
NotifyFd = Annotated[list[Any], DBusSignature("hq")]

ReadHandler = Callable[[str, int], bytes]
"""(characteristic UUID, offset) -> the value from that offset (a long read comes in several)."""
WriteHandler = Callable[[str, bytes], Awaitable[None] | None]
"""(characteristic UUID, value): a write with response is answered when this returns."""
EventHandler = Callable[[str], Awaitable[None] | None]
"""Called with a characteristic UUID (subscribe) or the central's device path (connect, disconnect)."""


@dataclass(frozen=True)
class Characteristic:
    uuid: str
    flags: tuple[str, ...]
    """BlueZ's flag names: "read", "notify", "write" (with response), "write-without-response"."""


@dataclass(frozen=True)
class Advertisement:
    """What the adapter advertises: the service UUIDs and the service data (UUID -> bytes).

    BlueZ decides which goes in the advertisement and which in the scan response; BlueZoo reports both to
    a scanner alike. Manufacturer data is left out on purpose: BlueZoo types it `a{sv}` where BlueZ has
    `a{qv}`, and a client's `GetManagedObjects` then fails for every device (shared/notes/emulators.md).
    """

    service_uuids: tuple[str, ...]
    service_data: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_payloads(cls, adv: bytes, scan_rsp: bytes = b"") -> "Advertisement":
        """The advertisement a device's raw advertising and scan response payloads describe (what a board's
        stack hands its radio, e.g. MicroPython's `gap_advertise(adv_data, resp_data)`): service UUID
        lists (16- and 128-bit) and service data. Flags and names are BlueZ's to set; manufacturer data
        is refused (BlueZoo mistypes it, see above)."""
        uuids: list[str] = []
        data: dict[str, bytes] = {}
        for ad_type, value in ad_structures(adv) + ad_structures(scan_rsp):
            if ad_type in (0x02, 0x03):
                uuids += [_uuid16(value[i : i + 2]) for i in range(0, len(value) - 1, 2)]
            elif ad_type in (0x06, 0x07):
                uuids += [
                    str(uuid.UUID(bytes=value[i : i + 16][::-1])) for i in range(0, len(value) - 15, 16)
                ]
            elif ad_type == 0x16 and len(value) >= 2:
                data[_uuid16(value[:2])] = value[2:]
            elif ad_type == 0x21 and len(value) >= 16:
                data[str(uuid.UUID(bytes=value[:16][::-1]))] = value[16:]
            elif ad_type == 0xFF:
                raise ValueError("manufacturer data breaks BlueZoo's GetManagedObjects: use service data")
        return cls(tuple(uuids), data)


def _uuid16(value: bytes) -> str:
    """A 16-bit UUID (little-endian in AD structures) in the Bluetooth base UUID, as BlueZ writes it."""
    return f"0000{int.from_bytes(value, 'little'):04x}-0000-1000-8000-00805f9b34fb"


@dataclass
class Handlers:
    on_read: ReadHandler
    on_write: WriteHandler | None = None
    on_subscribe: EventHandler | None = None
    on_connect: EventHandler | None = None
    on_disconnect: EventHandler | None = None


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result


class _AdvertisementObject(ServiceInterface):
    def __init__(self, adv: Advertisement) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.adv = adv

    @dbus_method()
    def Release(self) -> None:
        log.debug("advertisement released")

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> StrList:
        return list(self.adv.service_uuids)

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> DBusDict:
        return {uuid: Variant("ay", data) for uuid, data in self.adv.service_data.items()}

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:
        return True  # BlueZoo reports an advertisement to scanners only when it says so


class _ServiceObject(ServiceInterface):
    def __init__(self, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> DBusBool:
        return True


class _CharacteristicObject(ServiceInterface):
    def __init__(self, peripheral: "Peripheral", spec: Characteristic, service_path: str) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.peripheral = peripheral
        self.spec = spec
        self.service_path = service_path
        self.notify_socket: socket.socket | None = None
        self._their_socket: socket.socket | None = None
        self._handle = 0

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:
        offset = options["offset"].value if "offset" in options else 0
        self.peripheral._seen_device(options)
        return self.peripheral.handlers.on_read(self.spec.uuid, offset)

    @dbus_method()
    async def WriteValue(self, value: DBusBytes, options: DBusDict) -> None:
        self.peripheral._seen_device(options)
        if self.peripheral.handlers.on_write is None:
            raise DBusError("org.bluez.Error.NotSupported", "not writable")
        await _maybe_await(self.peripheral.handlers.on_write(self.spec.uuid, bytes(value)))

    @dbus_method()
    async def AcquireNotify(self, options: DBusDict) -> NotifyFd:
        self.peripheral._seen_device(options)
        self._close_notify()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.notify_socket = ours
        if self.peripheral.handlers.on_subscribe is not None:
            await _maybe_await(self.peripheral.handlers.on_subscribe(self.spec.uuid))
        # The receiver gets its own duplicate of `theirs` when the reply is sent; ours is closed with the
        # subscription (not now: the reply is written after this returns).
        self._their_socket = theirs
        return [theirs.fileno(), self.peripheral.mtu]

    @dbus_method()
    def StartNotify(self) -> None:
        raise DBusError("org.bluez.Error.NotSupported", "notifications are acquired (AcquireNotify)")

    @dbus_method()
    def StopNotify(self) -> None:
        self._close_notify()

    @dbus_method()
    def Confirm(self) -> None:
        pass

    def _close_notify(self) -> None:
        sock, self.notify_socket = self.notify_socket, None
        if sock is not None:
            sock.close()
        theirs, self._their_socket = self._their_socket, None
        if theirs is not None:
            theirs.close()

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self.spec.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> DBusObjectPath:
        return self.service_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> StrList:
        return list(self.spec.flags)

    @dbus_property(access=PropertyAccess.READ)
    def NotifyAcquired(self) -> DBusBool:
        return self.notify_socket is not None

    @dbus_property()
    def Handle(self) -> DBusUInt16:
        return self._handle

    @Handle.setter  # type: ignore[no-redef]
    def Handle(self, value: DBusUInt16) -> None:
        self._handle = value


class Peripheral:
    """One GATT service with its characteristics and one advertisement, on adapter `hciN`."""

    def __init__(
        self,
        adapter: int,
        service_uuid: str,
        characteristics: list[Characteristic],
        advertisement: Advertisement,
        handlers: Handlers,
        *,
        bus_address: str,
        name: str = "pinseal",
        mtu: int = DEFAULT_MTU,
    ) -> None:
        self.adapter = adapter
        self.mtu = mtu
        """The link's ATT MTU, handed to the central with its notify socket (BlueZ hands the exchanged
        one): a notification may be up to this long. The owner sets it when it models an exchange."""
        self.adapter_path = adapter_path(adapter)
        self.service_uuid = service_uuid
        self.handlers = handlers
        self.bus_address = bus_address
        self.advertisement = advertisement
        self.base = f"/org/pinseal/{name}{adapter}"
        self.app_path = f"{self.base}/app"
        self.adv_path = f"{self.base}/adv"
        service_path = f"{self.app_path}/service0"
        self._service = _ServiceObject(service_uuid)
        self._service_path = service_path
        self._chars = {
            spec.uuid: (f"{service_path}/char{i}", _CharacteristicObject(self, spec, service_path))
            for i, spec in enumerate(characteristics)
        }
        self._adv: _AdvertisementObject | None = None
        self._bus: MessageBus | None = None
        self._advertising = False
        self._tasks: set[asyncio.Future[None]] = set()
        self.central: str | None = None
        """The central's Device1 path on this adapter while connected (BlueZ passes it in each call)."""
        self.connections = 0
        """How many connections were made to this peripheral (a test asserts 0 for refused devices)."""

    async def start(self, *, advertise: bool = True) -> None:
        """Connect to the bus, export the objects, register the application; advertise unless told not to."""
        bus = MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
        self._bus = await bus.connect()
        self._bus.export(self._service_path, self._service)
        for path, obj in self._chars.values():
            self._bus.export(path, obj)
        self._bus.add_message_handler(self._on_signal)
        await self._call_ok(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[
                    f"type='signal',sender='{BLUEZ}',interface='org.freedesktop.DBus.Properties',"
                    f"member='PropertiesChanged',path_namespace='{self.adapter_path}'"
                ],
            )
        )
        await self._adapter_call(
            "org.bluez.GattManager1", "RegisterApplication", "oa{sv}", [self.app_path, {}]
        )
        if advertise:
            await self.advertise(True)

    async def advertise(self, on: bool, advertisement: Advertisement | None = None) -> None:
        """Start or stop advertising (optionally with new content); idempotent."""
        assert self._bus is not None, "start() first"
        if advertisement is not None and advertisement != self.advertisement:
            if self._advertising:
                await self.advertise(False)
            self.advertisement = advertisement
        if on == self._advertising:
            return
        if on:
            self._adv = _AdvertisementObject(self.advertisement)
            self._bus.export(self.adv_path, self._adv)
            await self._adapter_call(
                "org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", "oa{sv}", [self.adv_path, {}]
            )
        else:
            with contextlib.suppress(DBusError):
                await self._adapter_call(
                    "org.bluez.LEAdvertisingManager1", "UnregisterAdvertisement", "o", [self.adv_path]
                )
            self._bus.unexport(self.adv_path)
            self._adv = None
        self._advertising = on

    def notify(self, char_uuid: str, data: bytes) -> bool:
        """Send one notification; False when nobody is subscribed (or the socket is gone)."""
        obj = self._chars[char_uuid][1]
        sock = obj.notify_socket
        if sock is None:
            return False
        try:
            sock.send(data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            obj._close_notify()
            return False
        return True

    def subscribed(self, char_uuid: str) -> bool:
        return self._chars[char_uuid][1].notify_socket is not None

    async def disconnect(self) -> None:
        """End the connection from this side (a device that resets, or walks out of range)."""
        central = self.central
        if central is None:
            return
        with contextlib.suppress(DBusError, TimeoutError):
            await self._call_ok(
                Message(destination=BLUEZ, path=central, interface="org.bluez.Device1", member="Disconnect")
            )
        await self._lost(central)

    async def stop(self) -> None:
        """Stop advertising, unregister, and leave the bus (BlueZ drops whatever the peripheral had)."""
        if self._bus is None:
            return
        with contextlib.suppress(Exception):
            await self.advertise(False)
        with contextlib.suppress(Exception):
            await self._adapter_call("org.bluez.GattManager1", "UnregisterApplication", "o", [self.app_path])
        for _, obj in self._chars.values():
            obj._close_notify()
        self._bus.disconnect()
        self._bus = None
        self._advertising = False
        self.central = None

    # -- internals ---------------------------------------------------------------------------------

    def _seen_device(self, options: dict[str, Any]) -> None:
        """BlueZ names the central in every call's options (a connection's first call may come first)."""
        device = options.get("device")
        path = device.value if isinstance(device, Variant) else None
        if path is not None and path != self.central:
            self._connected(path)

    def _connected(self, path: str) -> None:
        self.central = path
        self.connections += 1
        if self.handlers.on_connect is not None:
            self._spawn(_maybe_await(self.handlers.on_connect(path)))

    async def _lost(self, central: str) -> None:
        if self.central != central:
            return
        self.central = None
        for _, obj in self._chars.values():
            obj._close_notify()
        if self.handlers.on_disconnect is not None:
            await _maybe_await(self.handlers.on_disconnect(central))

    def _on_signal(self, msg: Message) -> None:
        """Device1.Connected of a central on this adapter: a connection opens or ends, whether or not the
        central made a GATT call in it (one that connects and goes must still be seen to go)."""
        if msg.message_type != MessageType.SIGNAL or msg.member != "PropertiesChanged":
            return
        path = msg.path or ""
        if (
            not path.startswith(f"{self.adapter_path}/dev_")
            or not msg.body
            or msg.body[0] != "org.bluez.Device1"
        ):
            return
        connected = msg.body[1].get("Connected")
        if connected is None:
            return
        if connected.value and self.central is None:
            self._connected(path)
        elif not connected.value and path == self.central:
            self._spawn(self._lost(path))

    def _spawn(self, coro: Awaitable[None]) -> None:
        """Run an event handler beside the D-Bus dispatch (kept referenced until it ends)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _adapter_call(self, interface: str, member: str, signature: str, body: list[Any]) -> Message:
        return await self._call_ok(
            Message(
                destination=BLUEZ,
                path=self.adapter_path,
                interface=interface,
                member=member,
                signature=signature,
                body=body,
            )
        )

    async def _call_ok(self, msg: Message) -> Message:
        assert self._bus is not None
        reply = await asyncio.wait_for(self._bus.call(msg), CALL_TIMEOUT_S)
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name or "error", str(reply.body[0] if reply.body else ""))
        return reply
