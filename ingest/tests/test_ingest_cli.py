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
from ingest_fixtures import Device, Gateway, key

from pinseal_ingest.cli import main
from pinseal_protocol import keys


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.sqlite")
    gateway, devices = Gateway(key(1)), [Device(key(n)) for n in (2, 3, 4)]
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

    assert run_cli(capsys, "devices", "add", devices[0].public_hex, "--db", db)[0] == 0
    export = tmp_path / "devices.json"
    export.write_text(
        json.dumps(
            [
                {"public_key": devices[0].public_hex, "label": "kitchen"},
                {"public_key": devices[1].public_hex, "kid": "ignored", "expected_interval_s": 60},
                {"public_key": devices[2].public_hex, "revoked_at": 1_700_000_000.0},
            ]
        )
    )
    assert run_cli(capsys, "devices", "import", str(export), "--db", db)[1] == (
        "2 devices added, 1 already registered\n"
    )
    listing = run_cli(capsys, "devices", "list", "--db", db)[1].splitlines()
    assert len(listing) == 3 and sum("revoked" in line for line in listing) == 1

    export.write_text(json.dumps([{"public_key": Device(key(5)).public_hex}, {"label": "no key"}]))
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
    gateway, device = Gateway(key(1)), Device(key(2))
    run_cli(capsys, "gateways", "add", gateway.public_hex, "--db", db)
    run_cli(capsys, "devices", "add", device.public_hex, "--db", db)
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
