"""Discovery on one adapter, filtered by the pinseal service, with a watchdog for a BlueZ that went quiet.

BlueZ sometimes stops reporting advertisements while discovery still looks on (an adapter reset, a stuck
controller, bluetoothd restarted; Home Assistant's habluetooth keeps a watchdog for this). Here: when no
advertisement has come for `scan_watchdog_s` while devices are expected (the intake says when: it has
seen registered devices and no session is open), discovery is stopped and started again, with one log
line and the `ble_watchdog_restarts` metric. Every D-Bus call is bounded in time, so a BlueZ that does not
answer at all costs a log line and a later retry, never a stuck gateway.

A restart has an instant with no scanner listening (bleak drops its callback before it stops discovery).
A device BlueZ adds in that instant would be reported only when its properties change again, so the
restart compares BlueZ's devices on the adapter before and after (`GetManagedObjects`, BlueZ's public
API) and reports those that appeared meanwhile with the pinseal service, as if just seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import BusType, Message, MessageType, unpack_variants
from dbus_fast.aio import MessageBus

from pinseal_gateway.metrics import Metrics
from pinseal_protocol.ble_link import SERVICE_UUID

log = logging.getLogger(__name__)

DBUS_CALL_TIMEOUT_S = 10.0
"""Starting or stopping discovery: BlueZ answers in milliseconds, or it is stuck."""

Report = Callable[[BLEDevice, AdvertisementData], None]
DeviceProps = dict[str, Any]
"""A BlueZ Device1 object's properties, unpacked (what bleak keeps per device)."""


def appeared(before: dict[str, DeviceProps], after: dict[str, DeviceProps]) -> list[tuple[str, DeviceProps]]:
    """Devices in `after` and not in `before` that offer the pinseal service and are not connected."""
    return [
        (path, props)
        for path, props in sorted(after.items())
        if path not in before and SERVICE_UUID in props.get("UUIDs", []) and not props.get("Connected")
    ]


def as_report(path: str, props: DeviceProps) -> tuple[BLEDevice, AdvertisementData]:
    """A BlueZ device's properties as bleak's BlueZ scanner would have reported them."""
    adv = AdvertisementData(
        local_name=props.get("Name"),
        manufacturer_data={k: bytes(v) for k, v in props.get("ManufacturerData", {}).items()},
        service_data={k: bytes(v) for k, v in props.get("ServiceData", {}).items()},
        service_uuids=list(props.get("UUIDs", [])),
        tx_power=props.get("TxPower"),
        rssi=props.get("RSSI", -127),
        platform_data=(path, props),
    )
    return BLEDevice(props["Address"], props.get("Name"), {"path": path, "props": props}), adv


class Scanner:
    """Runs discovery until stopped; calls `on_report` for every advertisement of the pinseal service."""

    def __init__(
        self,
        adapter: str,
        on_report: Report,
        watchdog_s: float,
        expected: Callable[[], float | None],
        metrics: Metrics,
    ) -> None:
        self.adapter = adapter
        self.on_report = on_report
        self.watchdog_s = watchdog_s
        self.expected = expected
        """None when no advertisement is expected now; else the monotonic time since which one is."""
        self.metrics = metrics
        self.last_report = time.monotonic()
        self._scanner: BleakScanner | None = None
        self._silent_streak = 0

    def _report(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self.last_report = time.monotonic()
        self._silent_streak = 0
        self.on_report(device, adv)

    async def run(self, stop: asyncio.Event) -> None:
        """Start discovery (retrying while BlueZ is not there), watch it, stop it when `stop` is set."""
        check_every = min(1.0, self.watchdog_s / 4)
        try:
            while not stop.is_set():
                if self._scanner is None:
                    await self._start()
                elif self._silent():
                    await self._restart()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), check_every)
        finally:
            await self._stop_scanner()

    def _silent(self) -> bool:
        since = self.expected()
        if since is None:
            return False
        return time.monotonic() - max(self.last_report, since) >= self.watchdog_s

    async def _start(self) -> None:
        scanner = BleakScanner(self._report, service_uuids=[SERVICE_UUID], bluez={"adapter": self.adapter})
        try:
            await asyncio.wait_for(scanner.start(), DBUS_CALL_TIMEOUT_S)
        except Exception as exc:  # BleakError, D-Bus errors, a BlueZ that does not answer
            log.warning(
                "BLE discovery on %s did not start: %s; retrying", self.adapter, exc or type(exc).__name__
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(scanner.stop(), DBUS_CALL_TIMEOUT_S)
            await asyncio.sleep(1.0)
            return
        self._scanner = scanner
        self.last_report = time.monotonic()  # the watchdog counts from a working start
        log.info("BLE discovery on %s for service %s", self.adapter, SERVICE_UUID)

    async def _restart(self) -> None:
        self._silent_streak += 1
        self.metrics.ble_watchdog_restarts.inc()
        say = log.warning if self._silent_streak == 1 else log.debug
        say(
            "BLE watchdog: no advertisement on %s for %.0f s while devices are expected; restarting "
            "discovery (BlueZ may have stopped reporting)",
            self.adapter,
            self.watchdog_s,
        )
        before = await self._known_devices()
        await self._stop_scanner()
        await self._start()
        if before is None or self._scanner is None:
            return
        after = await self._known_devices()
        for path, props in appeared(before, after or {}):
            log.info(
                "BLE: %s appeared while discovery restarted; taking it as reported", props.get("Address")
            )
            self._report(*as_report(path, props))

    async def _known_devices(self) -> dict[str, DeviceProps] | None:
        """The adapter's Device1 objects in BlueZ now (None when BlueZ does not answer in time)."""
        prefix = f"/org/bluez/{self.adapter}/dev_"
        bus: MessageBus | None = None
        try:
            async with asyncio.timeout(DBUS_CALL_TIMEOUT_S):
                bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
                reply = await bus.call(
                    Message(
                        destination="org.bluez",
                        path="/",
                        interface="org.freedesktop.DBus.ObjectManager",
                        member="GetManagedObjects",
                    )
                )
        except Exception as exc:  # no bus, no BlueZ, or one that does not answer
            log.debug("BLE: BlueZ's devices could not be listed: %s", exc or type(exc).__name__)
            return None
        finally:
            if bus is not None:
                bus.disconnect()
        if reply.message_type == MessageType.ERROR:
            return None
        return {
            path: unpack_variants(interfaces["org.bluez.Device1"])
            for path, interfaces in reply.body[0].items()
            if path.startswith(prefix)
            and "/" not in path[len(prefix) :]
            and "org.bluez.Device1" in interfaces
        }

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            await asyncio.wait_for(scanner.stop(), DBUS_CALL_TIMEOUT_S)
        except Exception as exc:
            log.warning(
                "BLE discovery on %s did not stop cleanly: %s", self.adapter, exc or type(exc).__name__
            )
