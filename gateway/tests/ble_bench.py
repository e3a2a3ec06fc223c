"""The BLE tests' bench: BlueZoo with the gateway's adapter (hci0) and one adapter per simulated device,
and the devices' own event loop in a thread (the gateway runs in its own, as in the other tests)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pinseal_devkit.ble_device import BleDevice, Faults
from pinseal_devkit.simdevice import SimDevice
from pinseal_vboard.bluez.bus import BluezBus

T = TypeVar("T")


def bench_available() -> None:
    """Skip (naming what is missing) where `make setup` has not installed the bench's tools."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon missing: `make setup` installs it (Debian's dbus-daemon)")
    if shutil.which("bluezoo") is None and not (Path(sys.executable).parent / "bluezoo").exists():
        pytest.skip("BlueZoo missing: `make setup` installs it (the dev extra)")


class BleBench:
    """`with BleBench(tmp, devices=3) as bench:` adapters hci0 (the gateway) and hci1..hci3 (devices)."""

    def __init__(self, tmp: Path, devices: int) -> None:
        self.bus = BluezBus(devices + 1, log_path=tmp / "bluezoo.log")
        self.devices: list[BleDevice] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ble-devices", daemon=True)

    @property
    def address(self) -> str:
        return self.bus.address

    def __enter__(self) -> BleBench:
        self.bus.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for device in self.devices:
                self.run(device.stop(), timeout=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.bus.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coro` on the devices' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the devices' loop (their state belongs to it)."""

        async def call() -> T:
            return fn()

        return self.run(call())

    def device(self, sim: SimDevice, gateway_public: Any, *, faults: Faults | None = None) -> BleDevice:
        """A simulated device on the next adapter, started (not advertising until it seals)."""
        sim.gateway_public_key = gateway_public
        device = BleDevice(sim, self.address, len(self.devices) + 1, faults=faults)

        async def make() -> BleDevice:
            await device.start()
            return device

        self.devices.append(self.run(make()))
        return device


def wait_until(what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `done` (bounded by `timeout`); an AssertionError naming `what` if it never holds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
