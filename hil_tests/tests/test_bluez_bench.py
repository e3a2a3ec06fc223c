"""The BlueZ bench itself (pinseal_vboard.bluez): bleak's unmodified BlueZ backend, as the gateway uses it,
finds a peripheral registered on another BlueZoo adapter by its service, connects, reads a long value,
gets notifications in order both ways bleak subscribes (StartNotify, AcquireNotify), writes with
response, and connects again after the peripheral changed its address."""

import asyncio
from pathlib import Path

import pytest

from pinseal_vboard.bluez.bus import BenchMissing, BluezBus, adapter_address, readdress_adapter
from pinseal_vboard.bluez.peripheral import Advertisement, Characteristic, Handlers, Peripheral

SERVICE = "0000aaaa-0000-4000-8000-00000000aaaa"
READ = "0000aaa1-0000-4000-8000-00000000aaaa"
NOTIFY = "0000aaa2-0000-4000-8000-00000000aaaa"
WRITE = "0000aaa3-0000-4000-8000-00000000aaaa"
LONG_VALUE = bytes(range(200))


async def discover(expected: str):
    """The device at `expected`, from a scanner on hci0 whose callback is set before it starts (BlueZoo
    reports a device once, at once: `find_device_by_filter` subscribes after the start and can miss it)."""
    from bleak import BleakScanner

    found = asyncio.get_running_loop().create_future()

    def seen(d, adv) -> None:
        if SERVICE in adv.service_uuids and d.address == expected and not found.done():
            found.set_result(d)

    scanner = BleakScanner(seen, bluez={"adapter": "hci0"})
    await scanner.start()
    try:
        return await asyncio.wait_for(found, 10)
    finally:
        await scanner.stop()


def collect(into: list[bytes]):
    return lambda _char, data: into.append(bytes(data))


async def _cycle(bench: BluezBus, use_start_notify: bool) -> None:
    from bleak import BleakClient

    writes: list[bytes] = []
    events: list[str] = []
    peripheral = Peripheral(
        1,
        SERVICE,
        [
            Characteristic(READ, ("read",)),
            Characteristic(NOTIFY, ("notify",)),
            Characteristic(WRITE, ("write",)),
        ],
        Advertisement((SERVICE,), {SERVICE: b"\x01\x02"}),
        Handlers(
            on_read=lambda uuid, offset: LONG_VALUE[offset:],
            on_write=lambda uuid, value: writes.append(value),
            on_subscribe=lambda uuid: events.append("subscribe"),
            on_connect=lambda path: events.append("connect"),
            on_disconnect=lambda path: events.append("disconnect"),
        ),
        bus_address=bench.address,
    )
    await peripheral.start()
    try:
        for cycle in range(2):
            expected = adapter_address(1) if cycle == 0 else "00:AA:01:00:01:01"
            device = await discover(expected)
            async with BleakClient(device, timeout=10) as client:
                assert await client.read_gatt_char(READ) == LONG_VALUE
                got: list[bytes] = []
                await client.start_notify(NOTIFY, collect(got), bluez={"use_start_notify": use_start_notify})
                for i in range(100):
                    assert peripheral.notify(NOTIFY, bytes((i,)) * 20)
                await client.write_gatt_char(WRITE, b"w" * 160, response=True)
                for _ in range(200):  # bounded wait for the notifications in flight
                    if len(got) == 100:
                        break
                    await asyncio.sleep(0.02)
                assert got == [bytes((i,)) * 20 for i in range(100)]
            for _ in range(100):
                if "disconnect" in events:
                    break
                await asyncio.sleep(0.02)
            assert events == ["connect", "subscribe", "disconnect"]
            assert writes == [b"w" * 160]
            events.clear()
            writes.clear()
            if cycle == 1:
                break
            # BlueZoo cannot connect twice to one address (see readdress_adapter): a new address
            await peripheral.stop()
            await readdress_adapter(bench.address, 1, "00:AA:01:00:01:01")
            await peripheral.start()
        assert peripheral.connections == 2
    finally:
        await peripheral.stop()


@pytest.mark.parametrize("use_start_notify", [True, False], ids=["StartNotify", "AcquireNotify"])
def test_bleak_talks_to_a_bench_peripheral(tmp_path: Path, monkeypatch, use_start_notify: bool) -> None:
    with BluezBus(2, log_path=tmp_path / "bluezoo.log") as bench:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bench.address)
        asyncio.run(_cycle(bench, use_start_notify))


def test_a_missing_bluezoo_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(BenchMissing, match=r"dbus-daemon|BlueZoo"):
        BluezBus(2).start()


def test_an_advertisement_from_raw_payloads() -> None:
    """What a board's stack hands its radio becomes the LEAdvertisement1 properties BlueZ takes."""
    from pinseal_protocol import ble_link as bl

    kid = bytes(range(16))
    adv = Advertisement.from_payloads(bl.advertisement(), bl.scan_response(kid))
    assert adv == Advertisement((bl.SERVICE_UUID,), {bl.SERVICE_UUID: kid[:8]})
    battery = Advertisement.from_payloads(bytes.fromhex("0201060303 0f18") + bytes.fromhex("04160f1864"))
    assert battery.service_uuids == ("0000180f-0000-1000-8000-00805f9b34fb",)
    assert battery.service_data == {"0000180f-0000-1000-8000-00805f9b34fb": b"\x64"}
    with pytest.raises(ValueError, match="manufacturer data"):
        Advertisement.from_payloads(bytes.fromhex("05ff4c000215"))
