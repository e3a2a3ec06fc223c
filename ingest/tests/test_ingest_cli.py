"""`pinseal-ingest`: registry commands in-process, `run` as a real process stopped with SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ingest_fixtures import Gateway, key, sim_device

from pinseal_ingest.cli import main
from pinseal_protocol import keys


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.sqlite")
    gateway, devices = Gateway(key(1)), [sim_device(n) for n in (2, 3, 4)]
    gw_kid = keys.key_id(bytes.fromhex(gateway.public_hex)).hex()

    assert run_cli(capsys, "gateways", "add", gateway.public_hex, "--label", "attic", "--db", db)[1] == (
        f"{gw_kid} added\n"
    )
    assert "already registered" in run_cli(capsys, "gateways", "add", gateway.public_hex, "--db", db)[1]
    code, out, _ = run_cli(capsys, "gateways", "list", "--db", db)
    assert code == 0 and gw_kid in out and "active" in out and "attic" in out
    assert run_cli(capsys, "gateways", "revoke", gw_kid, "--db", db)[0] == 0
    assert "revoked" in run_cli(capsys, "gateways", "list", "--db", db)[1]
    assert run_cli(capsys, "gateways", "revoke", "00" * 16, "--db", db)[0] == 1
    assert run_cli(capsys, "gateways", "add", "nothex", "--db", db)[0] == 2

    assert run_cli(capsys, "devices", "add", devices[0].public_key_hex, "--db", db)[0] == 0
    export = tmp_path / "devices.json"
    export.write_text(
        json.dumps(
            [
                {"public_key": devices[0].public_key_hex, "label": "kitchen"},
                {"public_key": devices[1].public_key_hex, "kid": "ignored", "expected_interval_s": 60},
                {"public_key": devices[2].public_key_hex, "revoked_at": 1_700_000_000.0},
            ]
        )
    )
    assert run_cli(capsys, "devices", "import", str(export), "--db", db)[1] == (
        "2 devices added, 1 already registered\n"
    )
    listing = run_cli(capsys, "devices", "list", "--db", db)[1].splitlines()
    assert len(listing) == 3 and sum("revoked" in line for line in listing) == 1

    export.write_text(json.dumps([{"public_key": sim_device(5).public_key_hex}, {"label": "no key"}]))
    assert run_cli(capsys, "devices", "import", str(export), "--db", db)[0] == 2  # all or nothing
    stats = json.loads(run_cli(capsys, "stats", "--db", db)[1])
    assert stats["devices"] == 2 and stats["devices_revoked"] == 1 and stats["gateways_revoked"] == 1
    assert stats["batches"] == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_serves_until_sigterm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "run.sqlite")
    gateway, device = Gateway(key(1)), sim_device(2)
    run_cli(capsys, "gateways", "add", gateway.public_hex, "--db", db)
    run_cli(capsys, "devices", "add", device.public_key_hex, "--db", db)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pinseal_ingest.cli", "run", "--db", db, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as resp:
                    assert json.load(resp) == {"status": "ok"}
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "ingest did not come up"
                time.sleep(0.05)
        made = gateway.make([device.seal()])
        request = urllib.request.Request(
            f"{base}/v1/batches",
            data=made.body,
            headers={"Content-Type": "application/cbor", "Idempotency-Key": made.hash_hex},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.load(resp)["status"] == "stored"
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "shutting down" in output
    assert json.loads(run_cli(capsys, "stats", "--db", db)[1])["batches"] == 1


SMALL_ORDER_KEYS = [  # libsodium's blocklist / Wycheproof small-order public keys
    "00" * 32,
    "01" + "00" * 31,
    "ec" + "ff" * 30 + "7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
]


@pytest.mark.parametrize("table", ["gateways", "devices"])
def test_small_order_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str) -> None:
    db = str(tmp_path / "keys.sqlite")
    for public_hex in SMALL_ORDER_KEYS:
        code, _, err = run_cli(capsys, table, "add", public_hex, "--db", db)
        assert code == 2 and "small-order" in err
    if table == "devices":
        export = tmp_path / "devices.json"
        export.write_text(
            json.dumps([{"public_key": sim_device(5).public_key_hex}, {"public_key": "00" * 32}])
        )
        code, _, err = run_cli(capsys, "devices", "import", str(export), "--db", db)
        assert code == 2 and "small-order" in err
    assert run_cli(capsys, table, "list", "--db", db)[1] == ""


def test_labels_with_control_characters_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "labels.sqlite")
    device = sim_device(6)
    forged = "x\n" + "ab" * 16 + "  " + "cd" * 32 + "  2026-01-01T00:00:00Z  active"
    for label in (forged, "a\x1b[2Jb", "x\u202ey"):
        code, _, err = run_cli(capsys, "devices", "add", device.public_key_hex, "--label", label, "--db", db)
        assert code == 2 and "control character" in err
    export = tmp_path / "devices.json"
    export.write_text(json.dumps([{"public_key": device.public_key_hex, "label": forged}]))
    code, _, err = run_cli(capsys, "devices", "import", str(export), "--db", db)
    assert code == 2 and "control character" in err
    assert run_cli(capsys, "devices", "list", "--db", db)[1] == ""


def test_list_escapes_a_stored_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A label stored before the check is shown escaped, on one line."""
    import sqlite3

    db = tmp_path / "labels.sqlite"
    device = sim_device(7)
    assert run_cli(capsys, "devices", "add", device.public_key_hex, "--db", str(db))[0] == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE devices SET label = ?", ("shed\nforged",))
    code, out, _ = run_cli(capsys, "devices", "list", "--db", str(db))
    assert code == 0 and len(out.splitlines()) == 1 and out.rstrip().endswith("shed\\nforged")
    code, out, _ = run_cli(capsys, "devices", "list", "--json", "--db", str(db))
    (listed,) = json.loads(out)  # JSON carries the label as stored: its escaping is JSON's
    assert code == 0 and listed["label"] == "shed\nforged" and listed["kid"] == device.kid_hex


@pytest.mark.parametrize(
    "command", [["stats"], ["devices", "list"], ["gateways", "list"], ["devices", "revoke", "ab" * 16]]
)
def test_read_only_commands_never_create_a_database(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `stats` run in the wrong folder created ./pinseal-ingest.sqlite and reported zeros."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PINSEAL_INGEST_DB", raising=False)
    code, out, err = run_cli(capsys, *command)
    assert code == 2 and out == ""
    assert f"no ingest database at {tmp_path / 'pinseal-ingest.sqlite'}" in err
    assert "--db not given, $PINSEAL_INGEST_DB not set" in err
    monkeypatch.setenv("PINSEAL_INGEST_DB", str(tmp_path / "elsewhere.sqlite"))
    code, _, err = run_cli(capsys, *command)
    assert code == 2 and f"{tmp_path / 'elsewhere.sqlite'} (from $PINSEAL_INGEST_DB)" in err
    code, _, err = run_cli(capsys, *command, "--db", str(tmp_path / "given.sqlite"))
    assert code == 2 and "(from --db)" in err
    assert list(tmp_path.iterdir()) == []
