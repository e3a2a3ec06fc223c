"""The firmware on an emulated Raspberry Pi Pico: MicroPython v1.28.0's RP2 port in rp2040js (#16).

The committed RPI_PICO image runs cycle-counted at 125 MHz (hil_tests/rp2040/board.mjs), the REPL on USB CDC,
the serial transport on UART0 (GP0/GP1), the profile's BME280 and SHT3x at register level on I2C0 (GP4/GP5),
the flash a host file. Nothing here is a stand-in for pinseal code: `pinseal-provision deploy` puts the
firmware on over the REPL exactly as on a Pico on a desk, and a real gateway and network ingest take what the
board seals.

One deploy per module (a blank flash, then the tool); each test boots a copy of that flash, so the tests are
independent and the deployed flash surviving a new Node process is itself checked every time. rp2040js runs a
few times slower than a Pico here, so `make test` takes RFC 8032 vectors 1-3 and one end-to-end run; the full
Wycheproof set runs under `long`. Every step has its own timeout.
"""

from __future__ import annotations

import ast
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pinseal_devkit.devices import device_config
from pinseal_devkit.stack import Stack, tool, wait_until
from pinseal_protocol.bundle import verify_bundle
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_provision.device import Board
from pinseal_rp2040 import Rp2040Board, Rp2040Options
from pinseal_vboard.vm import FIRMWARE_TESTS_DIR, VECTORS_DIR

DEPLOY_TIMEOUT_S = 300
VECTOR_TIMEOUT_S = 240  # seconds without output while the board signs and verifies
WYCHEPROOF = VECTORS_DIR / "third_party" / "wycheproof" / "ed25519_test.json"
# What the emulated chips measure in the end-to-end run (docs/virtual-board.md, "Sensors").
SENSORS = {"bme280": {"t": 23.5, "p": 100800, "h": 41}, "sht3x": {"t": 21.25, "h": 57}}


def rfc8032_vectors(count: int) -> list[tuple[str, str, str, str, str]]:
    """The first `count` RFC 8032 section 7.1 vectors from the VM tests' table (one copy of them)."""
    tree = ast.parse((FIRMWARE_TESTS_DIR / "test_ed25519.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "RFC8032" for t in node.targets):
            assert isinstance(node.value, ast.List)
            return [ast.literal_eval(item) for item in node.value.elts[:count]]
    raise AssertionError("no RFC8032 table in test_ed25519.py")


@dataclass
class Deployed:
    flash: Path
    report: str
    seconds: float
    sim_seconds: float


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """A blank Pico, then `pinseal-provision deploy --board pico` over its USB CDC REPL."""
    flash = tmp_path_factory.mktemp("pico") / "flash.img"
    with Rp2040Board(Rp2040Options(flash=flash)) as board:
        before = board.stats()
        started = time.monotonic()
        proc = subprocess.run(
            [tool("pinseal-provision"), "deploy", "--board", "pico", "--port", board.serial_path],
            capture_output=True,
            text=True,
            timeout=DEPLOY_TIMEOUT_S,
        )
        seconds = time.monotonic() - started
        after = board.stats()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sim = after["sim_s"] - before["sim_s"]
    print(f"deploy on rp2040js: {seconds:.1f} s host, {sim:.2f} s of Pico time")
    return Deployed(flash, proc.stdout, seconds, sim)


@pytest.fixture
def pico(deployed: Deployed, tmp_path: Path) -> Iterator[Rp2040Board]:
    """A Pico booted from a copy of the deployed flash (a new Node process: the flash file is all it has)."""
    flash = tmp_path / "flash.img"
    shutil.copyfile(deployed.flash, flash)
    sensors = tmp_path / "sensors.json"
    sensors.write_text(json.dumps(SENSORS))
    board = Rp2040Board(Rp2040Options(flash=flash, sensors=sensors)).start()
    try:
        yield board
    finally:
        board.stop()


def test_deploy_puts_every_file_on_and_a_redeploy_after_a_restart_copies_nothing(
    deployed: Deployed, pico: Rp2040Board
) -> None:
    assert "47 file(s) copied" in deployed.report or "file(s) copied, 0 unchanged" in deployed.report
    proc = subprocess.run(
        [tool("pinseal-provision"), "deploy", "--board", "pico", "--port", pico.serial_path],
        capture_output=True,
        text=True,
        timeout=DEPLOY_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "0 file(s) copied" in proc.stdout, proc.stdout  # what the first deploy wrote is on the flash file


VECTOR_SCRIPT = """
import json, time, sys
try:
    import _pinseal_ed25519
    native = True
except ImportError:
    native = False
from pinseal.crypto import backend
if {path!r} == "native" and not native:
    print("PINSEAL", json.dumps({{"native": False}}))
else:
    if {path!r} == "native":
        from pinseal.crypto import ed25519_native as mod
    else:
        from pinseal.crypto import ed25519 as mod
    h = bytes.fromhex
    wrong = []
    t = time.ticks_ms()
    for name, sk, pk, msg, sig in {vectors!r}:
        key = mod.SigningKey(h(sk))
        if key.public_key != h(pk):
            wrong.append(name + ": public key")
        if key.sign(h(msg)) != h(sig):
            wrong.append(name + ": signature")
        if not mod.verify(h(pk), h(msg), h(sig)):
            wrong.append(name + ": verify")
        if mod.verify(h(pk), h(msg) + b"\\x00", h(sig)):
            wrong.append(name + ": verify of another message")
    ms = time.ticks_diff(time.ticks_ms(), t)
    print("PINSEAL", json.dumps({{"native": native, "backend_native": backend.NATIVE, "wrong": wrong,
                                 "ms": ms, "platform": sys.platform}}))
"""


def run_vectors(pico: Rp2040Board, path: str, vectors: list[Any]) -> dict[str, Any]:
    with Board(pico.serial_path, timeout_s=VECTOR_TIMEOUT_S) as board:
        return board.call(VECTOR_SCRIPT.format(path=path, vectors=vectors), timeout_s=VECTOR_TIMEOUT_S)


@pytest.mark.parametrize("path", ["pure", "native"])
def test_rfc8032_vectors_1_to_3_on_the_emulated_rp2040(pico: Rp2040Board, path: str) -> None:
    """Public key, signature and verification of RFC 8032 TEST 1-3 by the firmware's Ed25519 on the RP2040:
    the pure-Python signer always, the native module when the image has `_pinseal_ed25519`."""
    started = time.monotonic()
    result = run_vectors(pico, path, rfc8032_vectors(3))
    if path == "native" and not result["native"]:
        pytest.skip("the committed RP2 image has no _pinseal_ed25519 (built without firmware/native)")
    assert result["platform"] == "rp2"
    assert result["backend_native"] == result["native"]  # the firmware's selector takes what the image has
    assert result["wrong"] == [], result
    host_s = time.monotonic() - started
    print(f"RFC 8032 1-3 ({path}) on rp2040js: {result['ms']} ms of Pico time, {host_s:.1f} s")


@pytest.mark.long
@pytest.mark.parametrize("path", ["pure", "native"])
def test_wycheproof_all_on_the_emulated_rp2040(pico: Rp2040Board, path: str) -> None:
    """Every Wycheproof Ed25519 verification test on the RP2040 (~1 s of Pico time each on the pure path)."""
    doc = json.loads(WYCHEPROOF.read_text())
    cases = [
        (t["tcId"], g["publicKey"]["pk"], t["msg"], t["sig"], t["result"] == "valid")
        for g in doc["testGroups"]
        for t in g["tests"]
    ]
    assert len(cases) == doc["numberOfTests"]
    wrong: list[int] = []
    with Board(pico.serial_path, timeout_s=VECTOR_TIMEOUT_S) as board:
        has_native = board.call(
            "import json\ntry:\n import _pinseal_ed25519\n n=True\nexcept ImportError:\n n=False\n"
            "print('PINSEAL', json.dumps({'native': n}))"
        )["native"]
        if path == "native" and not has_native:
            pytest.skip("the committed RP2 image has no _pinseal_ed25519 (built without firmware/native)")
        module = "ed25519_native" if path == "native" else "ed25519"
        board.exec(f"from pinseal.crypto import {module} as mod\nh = bytes.fromhex")
        for i in range(0, len(cases), 8):
            chunk = cases[i : i + 8]
            out = board.call(
                "import json\n"
                f"print('PINSEAL', json.dumps({{'got': [mod.verify(h(pk), h(m), h(s)) for _, pk, m, s, _ in "
                f"{chunk!r}]}}))",
                timeout_s=VECTOR_TIMEOUT_S,
            )
            wrong += [c[0] for c, got in zip(chunk, out["got"], strict=True) if got != c[4]]
    assert wrong == [], wrong


def as_number(value: Any) -> float:
    if isinstance(value, DecimalFraction):
        return value.mantissa * 10.0**value.exponent
    return float(value)


def test_a_sensor_value_sealed_on_the_rp2040_reaches_the_ingest_over_serial(
    pico: Rp2040Board, tmp_path: Path
) -> None:
    """The BME280's temperature register -> read and sealed by the firmware on the RP2040 -> frames on UART0
    -> the gateway's [serial] intake verifies, stores and acks (the board verifies the ack) -> the gateway's
    batch at the network ingest, where the bundle is verified again and the reading's value is checked."""
    started = time.monotonic()
    stack = Stack(tmp_path / "stack", batch_interval_s=1)
    stack.prepare()
    stack.serial_ports = [pico.uart_path]
    try:
        with Board(pico.serial_path, timeout_s=120) as board:
            info = board.call("import asyncio; from pinseal import enroll; asyncio.run(enroll.create_key())")
            password = stack.register_device(info["public_key"], "pico", 2)
            config = device_config(
                stack,
                password,
                link={"transports": ["serial"]},
                wifi={"ssid": ""},
                sampling={"interval_s": 2},
                bundling={"readings": 1, "max_wait_s": 5},
            )
            board.write_file("/config.json", json.dumps(config).encode())
            stack.start()
            mark = pico.mark()
            board.restart_firmware()  # Ctrl-D: boot.py and main.py, as after power-on
        pico.wait_for_output(rb"pinseal: gateway ack verified", timeout_s=240, after=mark)
        ingest = sqlite3.connect(stack.ingest_db, timeout=10)

        def proven() -> list[tuple[bytes]]:
            return ingest.execute(
                "SELECT b.raw FROM bundles b JOIN leaves l ON l.bundle_hash = b.hash "
                "JOIN batches t ON t.hash = l.batch_hash WHERE b.kid = ?",
                (bytes.fromhex(info["key_id"]),),
            ).fetchall()

        assert wait_until(lambda: bool(proven()), 60, 0.5), (stack.logs / "gateway.log").read_text()[-2000:]
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(info["public_key"]))
        bundle = verify_bundle(proven()[0][0], key)
        records = {r.name: r for reading in bundle.readings for r in reading.records}
        assert abs(as_number(records["t"].value) - SENSORS["bme280"]["t"]) < 0.02, records
        assert abs(as_number(records["t:sht3x"].value) - SENSORS["sht3x"]["t"]) < 0.02, records
        with sqlite3.connect(stack.workdir / "gateway" / "gateway.sqlite", timeout=10) as db:
            assert db.execute("SELECT count(*) FROM rejections").fetchone()[0] == 0
        host_s = time.monotonic() - started
        print(f"end to end on rp2040js: {host_s:.1f} s, {pico.stats()['sim_s']:.1f} s of Pico time")
    finally:
        stack.stop()
