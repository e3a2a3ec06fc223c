"""The BLE intake's rules without a radio: [ble] configuration errors, the per-device backoff, the
registry's prefix look-up, and how advertisement reports are judged (refused once, known by key id
prefix not address, a session's own disconnection not taken for an advertisement). The end-to-end
behaviour over BlueZoo is test_gateway_ble.py's."""

from __future__ import annotations

import asyncio
import logging

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway.config import BleSection, ConfigError, from_mapping
from pinseal_gateway.intake.ble import intake as intake_module
from pinseal_gateway.intake.ble import session as session_module
from pinseal_gateway.intake.ble.backoff import Backoff
from pinseal_gateway.intake.ble.candidates import Candidates
from pinseal_gateway.intake.ble.intake import BleIntake
from pinseal_gateway.intake.ble.session import Outcome, Session, SessionResult
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.registry import Registry, RegistryEntry
from pinseal_protocol import ble_link as bl
from pinseal_protocol import keys
from pinseal_protocol.ble_link import SERVICE_UUID


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"adapter": "bluetooth0"}, "ble.adapter"),
        ({"max_connections": 0}, "ble.max_connections must be 1 to 8"),
        ({"max_connections": 9}, "ble.max_connections must be 1 to 8"),
        ({"idle_timeout_s": 0}, "ble.idle_timeout_s must be positive"),
        ({"use_start_notify": "yes"}, "ble.use_start_notify must be true or false"),
        ({"colour": 1}, "unknown key ble.colour"),
    ],
)
def test_bad_ble_values_name_their_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping({"ble": raw})


def test_ble_is_off_by_default_and_takes_its_keys() -> None:
    assert from_mapping({}).ble == BleSection()
    assert not BleSection().enabled and not BleSection().use_start_notify
    config = from_mapping(
        {"ble": {"enabled": True, "adapter": "hci1", "max_connections": 3, "backoff_max_s": 5}}
    )
    assert (
        config.ble.adapter == "hci1" and config.ble.max_connections == 3 and config.ble.backoff_max_s == 5.0
    )


def test_backoff_doubles_to_its_bound_and_progress_resets_it() -> None:
    backoff = Backoff(max_s=3.0)
    key = b"\x01" * 8
    assert backoff.due(key, 0.0)
    assert [backoff.failed(key, 0.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not backoff.due(key, 2.9) and backoff.due(key, 3.0)
    backoff.succeeded(key)
    assert backoff.due(key, 0.0) and backoff.failed(key, 0.0) == 0.5
    assert backoff.due(b"\x02" * 8, 0.0), "one device's failures hold back no other"


def kid_of(key: Ed25519PrivateKey) -> bytes:
    return keys.key_id(key.public_key())


class Follower:
    """The registry as the intake reads it (`RegistryFollower`'s attribute), without a database."""

    def __init__(self, entries: dict[bytes, tuple[Ed25519PrivateKey, bool]]) -> None:
        self.registry = Registry(
            {kid: RegistryEntry(k.public_key(), revoked) for kid, (k, revoked) in entries.items()}
        )

    async def refresh(self) -> bool:
        return False


class Inbox:
    def has_room(self) -> bool:
        return True

    def on_room(self, callback) -> None:
        pass

    def submit_nowait(self, message) -> None:
        raise AssertionError("nothing is submitted in these tests")


def report(address: str, prefix: bytes | None) -> tuple[BLEDevice, AdvertisementData]:
    service_data = {} if prefix is None else {SERVICE_UUID: prefix}
    adv = AdvertisementData(None, {}, service_data, [SERVICE_UUID], None, -60, ())
    return BLEDevice(address, None, {}), adv


def test_reports_are_judged_by_the_registry_and_refusals_logged_once(caplog) -> None:
    good, revoked, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    follower = Follower({kid_of(good): (good, False), kid_of(revoked): (revoked, True)})
    metrics = Metrics()
    intake = BleIntake(BleSection(enabled=True), Inbox(), follower, metrics)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO)
    for _ in range(3):
        intake._on_report(*report("00:00:00:00:00:02", kid_of(revoked)[:8]))
        intake._on_report(*report("00:00:00:00:00:03", kid_of(stranger)[:8]))
        intake._on_report(*report("00:00:00:00:00:04", b"\x01\x02"))  # a prefix of the wrong size
        intake._on_report(*report("00:00:00:00:00:05", None))  # the service, no key id: not ours
    intake._on_report(*report("00:00:00:00:00:01", kid_of(good)[:8]))
    assert intake.candidates.waiting(0.0) == [kid_of(good)[:8]]
    refusals = [r.getMessage() for r in caplog.records if "not connecting to" in r.getMessage()]
    assert len(refusals) == 3, refusals
    get = metrics.registry.get_sample_value
    assert get("pinseal_gateway_ble_refused_devices_total", {"reason": "revoked"}) == 1
    assert get("pinseal_gateway_ble_refused_devices_total", {"reason": "unregistered"}) == 1
    assert get("pinseal_gateway_ble_refused_devices_total", {"reason": "malformed"}) == 1


def test_a_prefixs_addresses_are_tried_in_the_order_they_were_reported() -> None:
    good = Ed25519PrivateKey.generate()
    prefix = kid_of(good)[:8]
    intake = BleIntake(BleSection(enabled=True), Inbox(), Follower({kid_of(good): (good, False)}), Metrics())  # type: ignore[arg-type]
    intake._on_report(*report("00:00:00:00:00:01", prefix))
    intake._on_report(*report("00:00:00:00:00:09", prefix))
    intake._on_report(*report("00:00:00:00:00:01", prefix))  # reported again: keeps its place
    assert intake.candidates.addresses(prefix) == ["00:00:00:00:00:01", "00:00:00:00:00:09"]
    first = intake.candidates.take(prefix)
    assert first.device.address == "00:00:00:00:00:01"
    # ...:01 was refused and comes back at a new address: it queues behind ...:09, which is not starved
    intake._on_report(*report("00:00:00:00:00:02", prefix))
    assert intake.candidates.take(prefix).device.address == "00:00:00:00:00:09"
    assert intake.candidates.take(prefix).device.address == "00:00:00:00:00:02"
    assert prefix not in intake.candidates
    # a session just ended on ...:09: BlueZ's report of that disconnection is no advertisement
    intake._ended[prefix] = ("00:00:00:00:00:09", intake_module.time.monotonic())
    intake._on_report(*report("00:00:00:00:00:09", prefix))
    assert prefix not in intake.candidates
    intake._on_report(*report("00:00:00:00:00:0A", prefix))  # the device advertising at a new address
    assert intake.candidates.addresses(prefix) == ["00:00:00:00:00:0A"]


def test_a_prefix_keeps_its_few_latest_addresses_and_fresh_ones_before_retries() -> None:
    candidates = Candidates(ttl_s=5.0)
    prefix = b"\x01" * 8
    for i in range(10):
        candidates.reported(prefix, BLEDevice(f"00:00:00:00:00:{i:02X}", None, {}), float(i))
    assert candidates.addresses(prefix) == [f"00:00:00:00:00:{i:02X}" for i in (6, 7, 8, 9)]
    failed = candidates.take(prefix)
    candidates.retry(prefix, failed)
    assert candidates.addresses(prefix)[-1] == failed.device.address
    candidates.drained(prefix)
    assert failed.device.address not in candidates.addresses(prefix)


def test_the_registry_finds_key_ids_by_prefix() -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    registry = Follower({kid_of(a): (a, False), kid_of(b): (b, True)}).registry
    assert registry.with_prefix(kid_of(a)[:8]) == {kid_of(a): False}
    assert registry.with_prefix(kid_of(b)[:8]) == {kid_of(b): True}
    assert registry.with_prefix(bytes(8)) == {}


def test_acks_wait_for_the_devices_next_session() -> None:
    """An ack whose session is gone is kept (a few per device) and goes first to the next session."""
    good = Ed25519PrivateKey.generate()
    intake = BleIntake(BleSection(enabled=True), Inbox(), Follower({kid_of(good): (good, False)}), Metrics())  # type: ignore[arg-type]
    intake.publish_acks([(kid_of(good), b"ack-%d" % i) for i in range(10)])

    device, _ = report("00:00:00:00:00:01", kid_of(good)[:8])
    session = Session(
        device,
        kid_of(good)[:8],
        BleSection(),
        Metrics(),
        intake._check_kid,
        intake._confirmed,
        intake._submit,
    )
    session.kid = kid_of(good)  # as the info read confirmed it
    intake._confirmed(session)
    got = [session.events.get_nowait() for _ in range(session.events.qsize())]
    assert got == [("ack", b"ack-%d" % i) for i in range(2, 10)]


def test_a_failed_device_is_retried_at_its_address_until_it_is_not_heard_of() -> None:
    good = Ed25519PrivateKey.generate()
    prefix = kid_of(good)[:8]
    config = BleSection(enabled=True, scan_watchdog_s=5.0)
    intake = BleIntake(config, Inbox(), Follower({kid_of(good): (good, False)}), Metrics())  # type: ignore[arg-type]
    intake._on_report(*report("00:00:00:00:00:01", prefix))
    candidate = intake.candidates.take(prefix)
    session = Session(
        candidate.device, prefix, config, Metrics(), intake._check_kid, intake._confirmed, intake._submit
    )
    intake._after(session, candidate, SessionResult(Outcome.FAILED, None, 0, "link lost"))
    assert intake.candidates.addresses(prefix) == ["00:00:00:00:00:01"]
    assert not intake.backoff.due(prefix, candidate.last_seen + 0.1)
    intake._dispatch(candidate.last_seen + 5.5)  # backoff over, but not reported for scan_watchdog_s
    assert prefix not in intake.candidates and not intake._sessions
    intake._after(session, candidate, SessionResult(Outcome.DRAINED, kid_of(good), 3))
    assert prefix not in intake.candidates, (
        "a drained device is not called back: it advertises when it has more"
    )


@pytest.mark.parametrize(
    ("bundles", "mid_transfer", "outcome"),
    [(2, False, Outcome.HUNG_UP), (2, True, Outcome.FAILED), (0, False, Outcome.FAILED)],
    ids=["between transfers", "mid-transfer", "before any bundle"],
)
def test_a_device_hanging_up_between_transfers_is_a_clean_end(
    bundles: int, mid_transfer: bool, outcome: Outcome
) -> None:
    """A board hangs up once it has sent everything: that is no failure to back off from; a link lost in
    the middle of a transfer, or before the first bundle, is."""
    good = Ed25519PrivateKey.generate()
    prefix = kid_of(good)[:8]
    config = BleSection(enabled=True)
    intake = BleIntake(config, Inbox(), Follower({kid_of(good): (good, False)}), Metrics())  # type: ignore[arg-type]
    intake._on_report(*report("00:00:00:00:00:01", prefix))
    candidate = intake.candidates.take(prefix)
    session = Session(
        candidate.device, prefix, config, Metrics(), intake._check_kid, intake._confirmed, intake._submit
    )
    session.bundles = bundles
    if mid_transfer:
        session._reassembler.feed(bl.parse_chunk(bytes((1, 0, 2)) + b"first of three"))
    session.post("lost")
    with pytest.raises(session_module._Ended) as ended:
        asyncio.run(session._receive())
    assert ended.value.outcome is outcome


class LateFollower(Follower):
    """A registry that is empty until its first refresh, which reads a database (it yields meanwhile)."""

    def __init__(self, entries: dict[bytes, tuple[Ed25519PrivateKey, bool]]) -> None:
        self.pending = Follower(entries).registry
        self.registry = Registry({})

    async def refresh(self) -> bool:
        await asyncio.sleep(0.05)
        self.registry = self.pending
        return True


def test_devices_advertising_as_the_gateway_starts_are_judged_by_the_loaded_registry() -> None:
    """A device reported once at start-up (BlueZ reports an unchanged advertisement once) must not be
    refused against a registry still loading: it would never be connected to."""
    good = Ed25519PrivateKey.generate()
    prefix = kid_of(good)[:8]
    intake = BleIntake(
        BleSection(enabled=True), Inbox(), LateFollower({kid_of(good): (good, False)}), Metrics()
    )  # type: ignore[arg-type]

    async def scan_once(stop: asyncio.Event) -> None:
        intake._on_report(*report("00:00:00:00:00:01", prefix))
        await stop.wait()

    intake.scanner.run = scan_once  # type: ignore[method-assign]

    async def run() -> None:
        task = asyncio.create_task(intake._run())
        await asyncio.sleep(0.2)
        intake._stop.set()
        await task

    asyncio.run(run())
    assert not intake._refused, intake._refused
    assert intake.candidates.addresses(prefix) == ["00:00:00:00:00:01"] or prefix in intake._sessions


def test_the_refusal_log_stays_bounded_under_ever_new_prefixes(caplog) -> None:
    """A radio advertising a new random prefix each time costs one log line each, and bounded memory."""
    intake = BleIntake(BleSection(enabled=True), Inbox(), Follower({}), Metrics())  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING)
    for i in range(intake_module.REFUSALS_REMEMBERED + 100):
        intake._on_report(*report("00:00:00:00:00:01", i.to_bytes(8, "big")))
    assert len(intake._refused) == intake_module.REFUSALS_REMEMBERED
    assert len(caplog.records) == intake_module.REFUSALS_REMEMBERED + 100
    assert intake.candidates.waiting(0.0) == []


def test_devices_that_appeared_during_a_discovery_restart_are_reported() -> None:
    """The instant a restart has no scanner listening: BlueZ's devices before and after are compared."""
    from pinseal_gateway.intake.ble.scanner import appeared, as_report

    def props(address: str, *, connected: bool = False, uuids: tuple[str, ...] = (SERVICE_UUID,)) -> dict:
        return {
            "Address": address,
            "UUIDs": list(uuids),
            "ServiceData": {SERVICE_UUID: b"\x01" * 8},
            "Connected": connected,
            "RSSI": -50,
        }

    before = {"/org/bluez/hci0/dev_A": props("00:00:00:00:00:0A")}
    after = {
        **before,
        "/org/bluez/hci0/dev_B": props("00:00:00:00:00:0B"),
        "/org/bluez/hci0/dev_C": props("00:00:00:00:00:0C", connected=True),
        "/org/bluez/hci0/dev_D": props("00:00:00:00:00:0D", uuids=("0000180f-0000-1000-8000-00805f9b34fb",)),
    }
    new = appeared(before, after)
    assert [path for path, _ in new] == ["/org/bluez/hci0/dev_B"]
    device, adv = as_report(*new[0])
    assert device.address == "00:00:00:00:00:0B" and device.details["path"] == "/org/bluez/hci0/dev_B"
    assert adv.service_data == {SERVICE_UUID: b"\x01" * 8} and adv.rssi == -50
