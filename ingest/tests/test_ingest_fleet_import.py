"""`devices import --fleet-key`: a device is registered because its fleet certificate (exported by
provisioning) is signed by the fleet key and names its key, not because it is on a list."""

import json
from pathlib import Path

import pytest
from ingest_fixtures import key, sim_device

from pinseal_ingest.cli import main
from pinseal_protocol import certificate, keys


def certified(fleet_n: int, device_n: int, *, for_key: bytes | None = None) -> dict:
    fleet = key(fleet_n)
    device = sim_device(device_n)
    cert = certificate.issue(
        fleet,
        keys.public_key_bytes(fleet),
        public_key=for_key or device.public,
        unique_id=b"\x01\x02",
        board="esp32_devkitc",
        firmware="0.1.0",
        micropython="1.28.0",
        issued_at=1_800_000_000,
    )
    return {"kid": device.kid_hex, "public_key": device.public_key_hex, "certificate": cert.hex()}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def test_only_devices_certified_by_the_fleet_are_imported(
    ingest_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_hex = keys.public_key_bytes(key(40)).hex()
    good = [certified(40, 50), certified(40, 51)]
    export = tmp_path / "export.json"
    for bad, why in [
        (certified(41, 52), "signed by fleet key"),  # another fleet
        (certified(40, 53, for_key=sim_device(54).public), "the certificate is for another key"),
        ({"public_key": sim_device(55).public_key_hex}, 'needs a "certificate"'),
        ({**certified(40, 56), "certificate": "00" * 40}, "certificate: not a valid certificate"),
    ]:
        export.write_text(json.dumps([*good, bad]))
        code, text = run(
            capsys, "devices", "import", str(export), "--fleet-key", fleet_hex, "--db", ingest_target
        )
        assert code == 2 and "entry 2:" in text and why in text, text
    stats = run(capsys, "stats", "--db", ingest_target)[1]
    assert json.loads(stats[stats.index("{") :])["devices"] == 0  # all or nothing, every time
    export.write_text(json.dumps(good))
    code, text = run(
        capsys, "devices", "import", str(export), "--fleet-key", fleet_hex, "--db", ingest_target
    )
    assert code == 0 and "2 devices added" in text
    bad_fleet = run(capsys, "devices", "import", str(export), "--fleet-key", "zz", "--db", ingest_target)
    assert bad_fleet[0] == 2 and "not a 32-byte Ed25519 public key" in bad_fleet[1]
