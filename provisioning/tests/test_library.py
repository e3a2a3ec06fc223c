"""Host-only parts: fleet key file rules, certificate encoding and checks, config rules, ports, batch."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cbor2
import pytest

from pinseal_protocol import certificate as cert
from pinseal_protocol import keys
from pinseal_provision import batch, devconfig, fleet, ports
from pinseal_provision.cli import main as cli_main
from pinseal_provision.enroll import EnrollOptions, bundle_interval_s
from pinseal_provision.errors import BadInput, BoardTimeout, FleetKeyMissing, PortNotFound


def test_fleet_key_is_0600_and_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys" / "fleet.key"
    assert cli_main(["fleet", "init", "--fleet-key", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    before = path.read_bytes()
    assert cli_main(["fleet", "init", "--fleet-key", str(path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and path.read_bytes() == before
    os.chmod(path, 0o644)
    with pytest.raises(FleetKeyMissing, match="readable by others"):
        fleet.load(path)
    with pytest.raises(FleetKeyMissing) as missing:
        fleet.load(tmp_path / "nope.key")
    assert "fleet init" in missing.value.hint


def test_certificate_round_trip_deterministic_and_tamper_evident(tmp_path: Path) -> None:
    key = fleet.create(tmp_path / "fleet.key")
    device_pk = keys.public_key_bytes(keys.load_private_key(bytes(range(32))))
    fields = dict(
        public_key=device_pk, unique_id=b"\x01\x02", board="pico_w", firmware="0.1.0", micropython="1.29.0"
    )
    one = cert.issue(key, key.public_key, issued_at=1_800_000_000, **fields)
    assert one == cert.issue(key, key.public_key, issued_at=1_800_000_000, **fields)  # deterministic
    assert cbor2.loads(one).tag == 18
    got = cert.verify(one, key.public_key)
    assert got.key_id == keys.key_id(device_pk) and got.board == "pico_w" and got.fleet_key_id == key.key_id
    other = fleet.create(tmp_path / "other.key")
    with pytest.raises(cert.CertificateError, match="signed by fleet key"):
        cert.verify(one, other.public_key)
    tampered = bytearray(one)
    tampered[-70] ^= 1
    with pytest.raises(cert.CertificateError):
        cert.verify(bytes(tampered), key.public_key)


def test_config_rules_are_the_firmware_s() -> None:
    defaults = devconfig.firmware_defaults()
    assert defaults["sampling"]["interval_s"] == 60 and "mqtt" in defaults
    good = {"mqtt": {"host": "h", "password": "p"}, "gateway": {"public_key": "00" * 32}}
    devconfig.check(good)
    for bad in (
        {**good, "mqt": {}},
        {**good, "sampling": {"interval_s": 0}},
        {**good, "bundling": {"readings": 33}},
        {**good, "gateway": {"public_key": "zz"}},
        {**good, "mqtt": {"host": "h", "password": "p", "port": "1883"}},
    ):
        with pytest.raises(BadInput):
            devconfig.check(bad)
    assert devconfig.parse_assignment("mqtt.tls=on") == ("mqtt", "tls", True)
    assert devconfig.parse_assignment("sampling.interval_s=30") == ("sampling", "interval_s", 30)
    with pytest.raises(BadInput):
        devconfig.parse_assignment("sampling.interval_s=soon")


def test_the_gateway_expects_a_bundle_per_bundle_interval_not_per_reading() -> None:
    """A board sampling every 60 s and sending 16 readings a bundle is heard from every 16 minutes: the
    registered interval was 60 s, so the gateway called healthy boards silent between bundles."""

    def opts(interval: int, readings: int, max_wait: int) -> EnrollOptions:
        return EnrollOptions(
            None, None, interval_s=interval, bundle_readings=readings, bundle_max_wait_s=max_wait
        )

    assert bundle_interval_s(opts(60, 16, 3600)) == 960  # full bundles
    assert bundle_interval_s(opts(60, 16, 900)) == 960  # the wait ends with the 16th reading
    assert bundle_interval_s(opts(60, 32, 900)) == 960  # the wait ends first: 15 min + one interval
    assert bundle_interval_s(opts(1, 1, 900)) == 1


def test_batch_labels_one_per_port_or_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["batch", "--board", "esp32_devkitc", "--ports", "/dev/nonexistent-a", "/dev/nonexistent-b"]
    assert cli_main([*argv, "--labels", "board1", "--steps", "deploy"]) == 2
    err = capsys.readouterr().err
    assert "1 labels for 2 ports" in err and "one label per port" in err


def test_ports_paths_urls_and_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ports.resolve("rfc2217://localhost:4000") == "rfc2217://localhost:4000"
    with pytest.raises(PortNotFound):
        ports.resolve("/dev/ttyUSB99")

    class Info:
        def __init__(self, device: str, vid: int, pid: int) -> None:
            self.device, self.vid, self.pid, self.description = device, vid, pid, "usb"

    fake = [
        Info("/dev/ttyUSB0", 0x10C4, 0xEA60),
        Info("/dev/ttyACM0", 0x2E8A, 0x0005),
        Info("/dev/ttyS0", 0, 0),
    ]
    monkeypatch.setattr(ports.serial.tools.list_ports, "comports", lambda: fake)
    found = {p.device: p for p in ports.detect()}
    assert "esp32_devkitc" in found["/dev/ttyUSB0"].boards
    assert set(found["/dev/ttyACM0"].boards) == {"pico", "pico_w", "pico2_w"}
    assert ports.resolve(None, "esp32_devkitc") == "/dev/ttyUSB0"
    with pytest.raises(BadInput, match="several"):
        ports.resolve(None)
    monkeypatch.setattr(
        ports.serial.tools.list_ports, "comports", lambda: [Info("/dev/ttyACM1", 0x2E8A, 0x0003)]
    )
    with pytest.raises(Exception, match="bootloader"):
        ports.resolve(None, "pico_w")


def test_batch_reports_every_board_and_one_failure_does_not_stop_the_rest() -> None:
    def job(port: str) -> dict[str, str]:
        if port == "b":
            raise BoardTimeout("b: silent")
        if port == "c":
            raise RuntimeError("bug")
        return {"port": port}

    for parallel in (1, 3):
        results = batch.run_batch(["a", "b", "c", "d"], job, parallel=parallel)
        assert [r.ok for r in results] == [True, False, False, True]
        assert results[1].hint and "RuntimeError" in results[2].error


def test_registry_refuses_a_small_order_device_key(tmp_path: Path) -> None:
    """A board reporting an all-zero public key is refused before anything is registered anywhere."""
    from pinseal_provision.registry import Ingest

    ingest = Ingest(tmp_path / "ingest.sqlite")
    with pytest.raises(BadInput, match="small-order"):
        ingest.add(bytes(32), "shed")
    assert not (tmp_path / "ingest.sqlite").exists()  # refused before the ingest tool ran


def test_firmware_defaults_parse_once_and_hand_each_caller_its_own_copy():
    """`batch` enrolls boards in threads; CPython 3.11's AST converter is not safe to run in two threads
    at once (gh-106905: one board of a batch failed with 'AST constructor recursion depth mismatch'), so
    the table is parsed once under a lock and every caller gets a copy it may change."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        tables = list(pool.map(lambda _: devconfig.firmware_defaults(), range(64)))
    assert all(t == tables[0] for t in tables)
    tables[0]["mqtt"]["port"] = -1
    assert devconfig.firmware_defaults()["mqtt"]["port"] != -1
