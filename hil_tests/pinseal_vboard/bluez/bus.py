"""A private system-like D-Bus with BlueZoo on it: what a BLE test needs where the kernel has no Bluetooth.

The machine's kernel has no Bluetooth (no `/dev/vhci`), so `bluetoothd` cannot run. BlueZoo (PyPI
`bluezoo`, GPL-2.0, a test tool only: it runs as its own process and nothing imports it) answers the same
D-Bus API (`org.bluez`: Adapter1, Device1, GattManager1, LEAdvertisingManager1) with emulated adapters
that see each other's advertisements. It runs on a `dbus-daemon` this module starts with a permissive
system-bus-like configuration, so nothing touches the host's system bus; clients find it through
`DBUS_SYSTEM_BUS_ADDRESS`, exactly as bleak finds the real one.

    with BluezBus(adapters=3) as bench:      # hci0 (the gateway's), hci1, hci2 (devices)
        os.environ.update(bench.environ)     # or pass bench.address to a D-Bus client

The context manager stops BlueZoo and the bus (SIGTERM, then SIGKILL after a grace period) and removes the
socket's folder, whatever the block raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

SCAN_INTERVAL_S = 1
"""How often BlueZoo reports the advertising adapters to a discovering one (its default, 10 s, is a
human's pace; a test's devices should be found in about a second)."""
START_TIMEOUT_S = 15.0
STOP_GRACE_S = 5.0
CALL_TIMEOUT_S = 10.0

# A system-bus-like configuration that lets every local user own any name and call anything: the bus is
# private to the test (a socket in its own temporary folder), so there is nobody to keep out.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class BenchMissing(RuntimeError):
    """dbus-daemon or BlueZoo is not installed: the message says how to install it."""


def adapter_address(index: int) -> str:
    """A fixed public address per adapter (its index in the last byte), so logs read the same each run."""
    return f"00:AA:01:00:00:{index:02X}"


def adapter_path(index: int) -> str:
    """BlueZ's object path of adapter `hciN`."""
    return f"/org/bluez/hci{index}"


def _bluezoo_command() -> list[str]:
    """BlueZoo's console script beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("bluezoo")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("bluezoo")
    if found is None:
        raise BenchMissing(
            "BlueZoo is not installed: `make setup` installs it (the dev extra pins bluezoo), or "
            "`.venv/bin/pip install bluezoo`"
        )
    return [found]


def _dbus_daemon() -> str:
    found = shutil.which("dbus-daemon")
    if found is None:
        raise BenchMissing(
            "dbus-daemon is not installed: `make setup` installs Debian's dbus-daemon (as root), or "
            "`apt-get install dbus-daemon`"
        )
    return found


class BluezBus:
    """A private D-Bus daemon and BlueZoo with `adapters` powered adapters hci0..hciN-1."""

    def __init__(
        self, adapters: int = 2, *, scan_interval_s: int = SCAN_INTERVAL_S, log_path: Path | None = None
    ) -> None:
        if adapters < 1:
            raise ValueError("a bench needs at least one adapter")
        self.adapters = adapters
        self.scan_interval_s = scan_interval_s
        self.log_path = log_path
        self._dir: Path | None = None
        self._bus: subprocess.Popen[bytes] | None = None
        self._zoo: subprocess.Popen[bytes] | None = None
        self.address = ""

    @property
    def environ(self) -> dict[str, str]:
        """What a D-Bus client (bleak, dbus-fast) needs to find this bus as its system bus."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.address}

    @property
    def bluezoo_pid(self) -> int:
        """BlueZoo's process id (a test may stop it with SIGSTOP to play a BlueZ that went quiet)."""
        assert self._zoo is not None, "start() first"
        return self._zoo.pid

    def start(self) -> BluezBus:
        daemon = _dbus_daemon()
        zoo = _bluezoo_command()
        self._dir = Path(tempfile.mkdtemp(prefix="pinseal-bluez-"))
        socket_path = self._dir / "system_bus_socket"
        config = self._dir / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=socket_path))
        self.address = f"unix:path={socket_path}"
        self._bus = subprocess.Popen(
            [daemon, f"--config-file={config}", "--nofork", "--nopidfile"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_for(lambda: socket_path.exists(), "dbus-daemon did not create its socket")
        log = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        args = [*zoo, "--auto-enable", f"--scan-interval={self.scan_interval_s}"]
        for i in range(self.adapters):
            args += ["-a", adapter_address(i)]
        try:
            self._zoo = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **self.environ},
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self._wait_for(self._bluez_ready, "BlueZoo did not take org.bluez on the private bus")
        return self

    def _bluez_ready(self) -> bool:
        """org.bluez answers with every adapter (checked with dbus-send, which every dbus install has)."""
        if self._zoo is not None and self._zoo.poll() is not None:
            raise RuntimeError(f"BlueZoo exited with status {self._zoo.returncode} (see {self.log_path})")
        result = subprocess.run(
            [
                "dbus-send",
                f"--bus={self.address}",
                "--print-reply",
                "--dest=org.bluez",
                adapter_path(self.adapters - 1),
                "org.freedesktop.DBus.Properties.Get",
                "string:org.bluez.Adapter1",
                "string:Powered",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.returncode == 0 and "true" in result.stdout

    def _wait_for(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{what} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """BlueZoo first (it may still be answering calls), then the bus; the socket folder last."""
        for proc in (self._zoo, self._bus):
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a test may have left it stopped
                proc.terminate()
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_GRACE_S)
        self._zoo = self._bus = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> BluezBus:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _bluez_calls(bus_address: str, calls: list[tuple[str, str, str, str, list[Any]]]) -> list[Any]:
    """Method calls to org.bluez (path, interface, member, signature, body) on one connection; their
    reply bodies. A D-Bus error is a RuntimeError naming the call."""
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        replies = []
        for path, interface, member, signature, body in calls:
            reply = await asyncio.wait_for(
                bus.call(
                    Message(
                        destination="org.bluez",
                        path=path,
                        interface=interface,
                        member=member,
                        signature=signature,
                        body=body,
                    )
                ),
                CALL_TIMEOUT_S,
            )
            if reply.message_type == MessageType.ERROR:
                raise RuntimeError(
                    f"{interface}.{member}{tuple(body)} on {path}: {reply.error_name} {reply.body}"
                )
            replies.append(reply.body)
        return replies
    finally:
        bus.disconnect()


async def readdress_adapter(bus_address: str, index: int, address: str) -> None:
    """Replace BlueZoo's adapter `hciN` by one with a new address (BlueZoo's own Manager1 API).

    BlueZoo 1.0.2 exports a connection's GATT objects on the central at paths built from the peripheral's
    address and never removes them, so a second connection to the same address fails (EEXIST from
    sd-bus). A device that changes its address between connections, as an LE device with a resolvable
    private address does, sidesteps that; so the bench's devices do, and the gateway must (and does)
    know a device by its key id, never by its address.
    """
    manager = ("/org/bluezoo", "org.bluezoo.Manager1")
    await _bluez_calls(
        bus_address,
        [(*manager, "RemoveAdapter", "y", [index]), (*manager, "AddAdapter", "ys", [index, address])],
    )


async def devices_of(bus_address: str, index: int) -> dict[str, bool]:
    """Device path -> connected, of every device adapter `hciN` knows: the devices it discovered, or, on
    a peripheral's adapter, the centrals that connected to it."""
    (body,) = await _bluez_calls(
        bus_address, [("/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", "", [])]
    )
    prefix = adapter_path(index) + "/dev_"
    return {
        path: bool(interfaces["org.bluez.Device1"]["Connected"].value)
        for path, interfaces in body[0].items()
        if path.startswith(prefix) and "/" not in path[len(prefix) :] and "org.bluez.Device1" in interfaces
    }


async def drop_connections(bus_address: str, index: int, rng: random.Random | None = None) -> list[str]:
    """Disconnect adapter `hciN`'s open connections from its side (a central whose link broke): the one
    `rng` picks, or all of them; their paths. The peer sees its link end as it would."""
    connected = sorted(path for path, on in (await devices_of(bus_address, index)).items() if on)
    chosen = [rng.choice(connected)] if rng is not None and connected else connected
    if chosen:
        await _bluez_calls(
            bus_address, [(path, "org.bluez.Device1", "Disconnect", "", []) for path in chosen]
        )
    return chosen


async def stop_discovery(bus_address: str, index: int) -> None:
    """Stop discovery on `hciN` behind its user's back: BlueZ gone quiet, as a scanner watchdog must catch."""
    await _bluez_calls(bus_address, [(adapter_path(index), "org.bluez.Adapter1", "StopDiscovery", "", [])])
