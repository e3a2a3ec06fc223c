"""The deployed firmware on the QEMU board (qemu_mps2_an385): MicroPython's bare-metal port on an emulated
Cortex-M3, its own garbage collector and a 100 KB heap, flash a host file that survives SIGKILL (issue 16).

The board is provisioned once per module the way an owner does it (pinseal-provision's deploy and enroll:
.mpy files on littlefs, the key made on the device, registered with a real gateway registry); each test then
boots a copy of that flash. The image has no sensors, network or UART beyond the REPL, so the tests put
readings into the outbox themselves with the firmware's own reading codec and counters, and read what the
firmware sealed back over the REPL: the sealing, the outbox and the signature are the deployed firmware's.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_build import mpy
from pinseal_hil.outbox_power_cut import board_main
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import keys
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_provision import deploy, enroll, fleet, profiles
from pinseal_provision.device import Board
from pinseal_qemu import QemuBoard
from pinseal_qemu.image import REPO

BOARD = "qemu_mps2_an385"
MPREMOTE = REPO / ".venv" / "bin" / "mpremote"
GATEWAY_CLI = REPO / ".venv" / "bin" / "pinseal-gateway"
MPREMOTE_TIMEOUT_S = 60
KILLS = 20
# Seeded power cuts: a failure names the seed; PINSEAL_QEMU_KILL_SEED=<seed> replays the same cut times.
KILL_SEED = int(os.environ.get("PINSEAL_QEMU_KILL_SEED", "16"))

# What the board runs before a test's own code: the app built as main.py builds it (pinseal.startup), with
# no link (the board has none; nothing is sent), and readings stored as sample_once stores them, the records
# the test's. NoLink answers the transport interface (docs/firmware.md) and never connects.
APP = r"""
import asyncio, binascii, gc, json
from pinseal import forget, reading

class NoLink:
    connected = False
    resend_ms = 1000
    on_ack = None
    async def start(self):
        pass
    async def stop(self):
        pass

async def make_app():
    # as pinseal.entry.main does it: the setup-only modules are forgotten once the app exists (as .mpy files
    # their code is heap; a harness that kept them would squeeze the seal more than the firmware does)
    from pinseal import board, config, startup
    app = await startup.create_app(config.load(), board.load(), NoLink())
    del board, config, startup
    for name in ("pinseal.startup", "pinseal.board", "pinseal.config"):
        forget(name)
    gc.collect()
    return app

def show(bundles):
    # one line a bundle, collected first: with the app resident the heap is fragmented, and the hex of
    # every bundle at once wanted more contiguous blocks than it had (a MemoryError in the test's own code)
    for b in bundles:
        gc.collect()
        print("BUNDLE", binascii.hexlify(b[2]).decode())

def store(app, n):
    # as App.sample_once: the counter's next seq, the reading encoded with this boot, into the outbox
    for i in range(n):
        seq = app.counters.next_seq()
        records = (("t", "Cel", (-1, 200 + seq % 50)), ("n", None, seq))
        app.outbox.add_reading(seq, reading.encode(app.counters.boot, 100 + i, 0, records))
"""


@dataclass
class Provisioned:
    flash: Path  # a provisioned board's flash; tests boot copies of it
    public_key: bytes  # as the gateway registered it
    kid: bytes


def mpremote_run(serial: str, script: Path) -> str:
    """Run a test script on the board as the firmware's own code runs: compiled on the host with mpy-cross
    (the profile's -O level), copied to the flash and imported. Sent as source (`mpremote run`), its
    compilation on the device would fragment the 100 KB heap the test is about."""
    name = f"t_{script.stem}"
    compiled = script.with_name(name + ".mpy")
    mpy.compile_file(script, compiled, name + ".py", opt=mpy.opt_level(profiles.load_profile(BOARD)))
    # two sessions: each starts with a soft reset, so the script gets a heap the copy did not touch
    for command in (["fs", "cp", str(compiled), f":{name}.mpy"], ["exec", f"import {name}"]):
        result = subprocess.run(
            [str(MPREMOTE), "connect", serial, *command],
            capture_output=True,
            text=True,
            timeout=MPREMOTE_TIMEOUT_S,
        )
        assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def bundles_in(out: str) -> list[str]:
    """The hex of each `BUNDLE <hex>` line, in order."""
    return [line.split()[1] for line in out.splitlines() if line.startswith("BUNDLE ")]


def answer(out: str, tag: str) -> dict:
    """The board's one `TAG {json}` line."""
    lines = [line for line in out.splitlines() if line.startswith(tag + " ")]
    assert len(lines) == 1, out
    return json.loads(lines[0][len(tag) + 1 :])


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    tmp = tmp_path_factory.mktemp("qemu-provisioned")
    gateway_config = tmp / "gateway.toml"
    subprocess.run(
        [str(GATEWAY_CLI), "init", "--config", str(gateway_config), "--data-dir", str(tmp / "gateway")],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    fleet_key = tmp / "fleet.key"
    fleet.create(fleet_key)
    opts = enroll.EnrollOptions(
        fleet_key=fleet_key, gateway_config=gateway_config, label="qemu", state_dir=tmp / "state"
    )
    profile = profiles.load_profile(BOARD)
    flash = tmp / "flash.img"
    # read_timeout_s: raw-paste waits that long for the board's flow-control byte; a littlefs compaction
    # through semihosting on a loaded 2-core host can stall the guest past the default 0.5 s
    with QemuBoard(flash) as qemu, Board(qemu.serial_path, read_timeout_s=3.0) as b:
        deploy.check_micropython(b, profile)
        deploy.deploy(b, deploy.build(profile))
        report = enroll.enroll(b, opts)
    assert report.self_test == "passed"
    registry = json.loads(
        subprocess.run(
            [str(GATEWAY_CLI), "devices", "export", "--config", str(gateway_config)],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    )  # fmt: skip
    entry = {d["kid"]: d for d in registry}[report.key_id]
    yield Provisioned(flash, bytes.fromhex(entry["public_key"]), bytes.fromhex(report.key_id))


@pytest.fixture
def flash(provisioned: Provisioned, tmp_path: Path) -> Path:
    copy = tmp_path / "flash.img"
    shutil.copyfile(provisioned.flash, copy)
    return copy


def verified(hex_bundle: str, provisioned: Provisioned) -> pbundle.Bundle:
    return pbundle.verify_bundle(bytes.fromhex(hex_bundle), keys.load_public_key(provisioned.public_key))


# -- (a) a bundle sealed on the Cortex-M3, verified by the host codec -----------------------------------

SEAL = (
    APP
    + r"""
async def main():
    app = await make_app()
    store(app, 20)
    sealed = await app.seal_pending(force=True)  # 16 readings (bundling.readings), then the 4 left
    show(app.outbox.pending_bundles())
    print("SEALED " + json.dumps({"n": sealed, "pending": app.outbox.pending_count()}))

asyncio.run(main())
"""
)

READ_BACK = r"""
import binascii
from pinseal.outbox import Outbox
for b in Outbox().pending_bundles():
    print("BUNDLE", binascii.hexlify(b[2]).decode())
"""


def test_bundles_sealed_on_the_board_verify_with_its_registered_key(
    provisioned: Provisioned, flash: Path, tmp_path: Path
) -> None:
    script = tmp_path / "seal.py"
    script.write_text(SEAL)
    with QemuBoard(flash) as qemu:
        assert qemu.serial_path is not None
        out = mpremote_run(qemu.serial_path, script)
        got, hexes = answer(out, "SEALED"), bundles_in(out)
        qemu.kill()  # a power cut: the bundles must come back from the flash byte for byte
    assert got["n"] == 2 and got["pending"] == 0, got
    first, second = (verified(h, provisioned) for h in hexes)
    for b in (first, second):
        assert b.kid == provisioned.kid
        assert b.time_source == 0  # no clock on this board: seconds since boot
    assert (first.n_readings, second.n_readings) == (16, 4)
    assert second.seq == first.last_seq + 1 and second.prev == first.link  # the chain
    seqs = sorted({row[2] for b in (first, second) for row in b.rows})
    assert seqs == list(range(first.seq, first.seq + 20))
    for row in first.rows + second.rows:
        _hash, _kid, seq, _t, name, unit, value, _err = row
        assert (name, unit, value) in (("t", "Cel", str(DecimalFraction(-1, 200 + seq % 50))),
                                       ("n", None, str(seq)))  # fmt: skip

    script.write_text(READ_BACK)
    with QemuBoard(flash) as qemu:
        assert qemu.serial_path is not None
        assert bundles_in(mpremote_run(qemu.serial_path, script)) == hexes


# -- (b) the outbox through 20 seeded SIGKILLs of QEMU mid-write ---------------------------------------

# The loop of test_outbox_vboard.py (pinseal_hil.outbox_power_cut), on the real port. Its console
# is a file QEMU writes as the board prints (QemuBoard console_file), so after the cut the host has exactly
# what the board printed before it: a pty reader lags behind, and what it had not read dies with QEMU.
KILL_MAIN = board_main(sleep_ms=2)
BOOT = re.compile(rb"BOOT (\{[^\r\n]*\})\r\n")
BOOT_TIMEOUT_S = 30


def wait_for_boot(console: Path, why: str) -> re.Match[bytes]:
    """The BOOT line of this power-on, from the console file QEMU writes."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        found = BOOT.search(console.read_bytes())
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{why}: no BOOT line in {BOOT_TIMEOUT_S} s: {console.read_bytes()[-600:]!r}"
            )
        time.sleep(0.02)


@dataclass
class Ledger:
    """What the host saw the board complete before each cut."""

    committed: set[int]
    bundles: dict[tuple[int, int], str]
    acked_through: int = -1
    issued_max: int = -1

    def take(self, printed: str) -> None:
        """The steps a boot printed whole: a line the cut tore ("R 25" of "R 2534") is not a step."""
        for line in printed.split("\n")[:-1]:
            parts = line.split()
            if parts[:1] == ["R"] and len(parts) == 2:
                self.committed.add(int(parts[1]))
            elif parts[:1] == ["B"] and len(parts) == 4:
                self.bundles[(int(parts[1]), int(parts[2]))] = parts[3]
            elif parts[:1] == ["A"] and len(parts) == 2:
                self.acked_through = max(self.acked_through, int(parts[1]))

    def check(self, state: dict, boots: int, why: str) -> None:
        """Exact accounting after a power-on (test_outbox_vboard.py's rules)."""
        assert state["boot"] == boots, (why, state)
        assert state["dropped"] == 0 and state["corrupt"] == 0, (why, state)
        assert state["npending"] == len(state["pending"]), (why, "a reading's bytes changed")
        stored = state["pending"] + [b[1] for b in state["bundles"]]
        self.issued_max = max([self.issued_max, *self.committed, *stored])
        assert state["next"] > self.issued_max, (why, "a seq could be issued twice", state["next"])
        live = set(state["pending"])
        prev_link = None
        for first, last, link, prev in state["bundles"]:
            live.update(range(first, last + 1))
            if (first, last) in self.bundles:
                assert self.bundles[(first, last)] == link, (why, "a bundle's bytes changed", first, last)
            else:  # sealed just before the cut, its print lost: newer than every bundle printed
                assert all(first > b[1] for b in self.bundles), (why, first, self.bundles)
                self.bundles[(first, last)] = link
            if prev_link is not None:
                assert prev == prev_link, (why, "broken chain")
            prev_link = link
        if state["bundles"]:
            assert state["chain"] == state["bundles"][-1][2], why
        oldest_live = state["bundles"][0][0] if state["bundles"] else self.issued_max + 1
        assert all(last < oldest_live for (_f, last) in self.bundles if last <= self.acked_through), why
        acked = {
            q
            for (f, last) in self.bundles
            if last <= self.acked_through or last < oldest_live
            for q in range(f, last + 1)
        }
        missing = sorted(q for q in self.committed if q not in live and q not in acked)
        assert not missing, (why, "committed readings lost", missing[:10], state)
        # never duplicated: nothing both pending and in a bundle, no bundle overlapping another
        assert len(live) == len(state["pending"]) + sum(b[1] - b[0] + 1 for b in state["bundles"]), why


def test_outbox_survives_20_seeded_sigkills_with_exact_accounting(flash: Path, tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text(KILL_MAIN)
    with QemuBoard(flash) as qemu:  # the provisioned board, its firmware's main.py replaced by the loop
        assert qemu.serial_path is not None
        cp = subprocess.run(
            [str(MPREMOTE), "connect", qemu.serial_path, "fs", "cp", str(main), ":main.py"],
            capture_output=True, text=True, timeout=MPREMOTE_TIMEOUT_S,
        )  # fmt: skip
        assert cp.returncode == 0, cp.stderr
    rng = random.Random(KILL_SEED)
    ledger = Ledger(set(), {})
    t0 = time.monotonic()
    previous = ""
    first_boot = 0
    for cycle in range(KILLS + 1):
        why = f"seed {KILL_SEED} (PINSEAL_QEMU_KILL_SEED), after cut {cycle}"
        console = tmp_path / f"console-{cycle}.txt"
        qemu = QemuBoard(flash, console_file=console)
        qemu.start()
        try:
            found = wait_for_boot(console, why)
            ledger.take(previous)
            # shown by pytest when the test fails: each power-on's state and the end of the boot before
            print(f"{why}: before the cut ...{previous[-300:]!r}\n  power-on: {found.group(1).decode()}")
            state = json.loads(found.group(1))
            first_boot = state["boot"] if cycle == 0 else first_boot
            ledger.check(state, first_boot + cycle, why)  # the boot counter counts every power-on
            if cycle == KILLS:
                break
            time.sleep(rng.uniform(0.15, 0.9))
            qemu.kill()  # mid-write: the loop writes to flash every few milliseconds
            previous = console.read_bytes()[found.end() :].decode(errors="replace")
        finally:
            qemu.stop()
    assert len(ledger.committed) > 150 and len(ledger.bundles) > 8, (KILL_SEED, ledger)
    assert time.monotonic() - t0 < 120


# -- (c) heap exhaustion on the real 100 KB bare-metal heap --------------------------------------------

# The firmware's documented behaviour when the heap runs out (pinseal.crypto: "except MemoryError: raise"):
# a verification that cannot allocate raises MemoryError, never answers False (which would refuse a good
# ack); a seal that cannot allocate raises and leaves the outbox as it was (its readings pending, no bundle,
# the crypto lock free), and once memory is back the same readings seal into a bundle that verifies.
SQUEEZE = (
    APP
    + r"""
from pinseal.crypto import backend

hog = []

def exhaust():
    try:
        while True:
            hog.append(bytearray(64))
    except MemoryError:
        pass

async def main():
    app = await make_app()
    store(app, 16)
    gc.collect()
    free_app = gc.mem_free()  # what the running app leaves of the heap
    pk, msg, sig = PK, MSG, SIG
    exhaust()
    try:
        v = backend.verify(pk, msg, sig)
    except MemoryError:
        v = "MemoryError"
    hog.clear()
    gc.collect()
    v_ok = backend.verify(pk, msg, sig)
    v_bad = backend.verify(pk, msg + b"!", sig)
    exhaust()
    try:
        await app.seal_pending(force=True)
        s = "sealed"
    except MemoryError:
        s = "MemoryError"
    hog.clear()
    gc.collect()
    after = [app.outbox.pending_count(), app.outbox.bundle_count(), app._crypto.locked()]
    n = await app.seal_pending(force=True)
    show(app.outbox.pending_bundles())
    print("SQUEEZE " + json.dumps({"free_app": free_app, "verify_squeezed": v, "verify_ok": v_ok,
        "verify_bad": v_bad, "seal_squeezed": s, "after": after, "sealed": n,
        "pending": app.outbox.pending_count(), "native": backend.NATIVE}))

asyncio.run(main())
"""
)


def test_heap_exhaustion_raises_memoryerror_and_loses_nothing(
    provisioned: Provisioned, flash: Path, tmp_path: Path
) -> None:
    gateway_like = Ed25519PrivateKey.generate()
    msg = b"an ack's Sig_structure, as long as one" * 4
    sig = gateway_like.sign(msg)
    pk = gateway_like.public_key().public_bytes_raw()
    script = tmp_path / "squeeze.py"
    script.write_text(SQUEEZE.replace("PK, MSG, SIG", f"{pk!r}, {msg!r}, {sig!r}"))
    with QemuBoard(flash) as qemu:
        assert qemu.serial_path is not None
        out = mpremote_run(qemu.serial_path, script)
        got, hexes = answer(out, "SQUEEZE"), bundles_in(out)
    # never False for a good signature: the pure signer's big integers need heap, so it raises; the image's
    # native module (when the image has it) verifies in C without the GC heap, so it still answers True
    assert got["verify_squeezed"] == (True if got["native"] else "MemoryError"), got
    assert got["verify_ok"] is True and got["verify_bad"] is False, got
    assert got["seal_squeezed"] == "MemoryError", got
    assert got["after"] == [16, 0, False], got  # nothing sealed, nothing lost, the lock released
    assert got["sealed"] == 1 and got["pending"] == 0, got
    (sealed,) = (verified(h, provisioned) for h in hexes)
    assert sealed.n_readings == 16
    # the app, its 16 readings and the outbox's index leave a third of the heap on the bare-metal port
    assert got["free_app"] > 25_000, got


# -- a board with nothing to read ---------------------------------------------------------------------

NOTHING = (
    APP
    + r"""
async def main():
    app = await make_app()
    taken = []
    for _ in range(3):  # no await in a comprehension on MicroPython
        taken.append(await app.sample_once())
    before = app.outbox.pending_count()
    sealed = await app.seal_pending(force=True)  # raised ValueError("reading: no records") before the fix
    store(app, 2)
    sealed += await app.seal_pending(force=True)
    show(app.outbox.pending_bundles())
    print("NOTHING " + json.dumps({"taken": taken, "pending": before, "sealed": sealed}))

asyncio.run(main())
"""
)


def test_a_board_without_sensors_stores_no_empty_readings(
    provisioned: Provisioned, flash: Path, tmp_path: Path
) -> None:
    """This profile has no sensor and no battery, as a board has without /board.json: the sampler reads
    nothing. Such a reading was stored anyway, with no record, and the seal refused it (a reading needs a
    record in SenML) at every boot from then on, so the app never sealed again. Now nothing is stored,
    and readings stored later seal."""
    script = tmp_path / "nothing.py"
    script.write_text(NOTHING)
    with QemuBoard(flash) as qemu:
        assert qemu.serial_path is not None
        out = mpremote_run(qemu.serial_path, script)
    got = answer(out, "NOTHING")
    assert got == {"taken": [None, None, None], "pending": 0, "sealed": 1}, out
    (sealed,) = (verified(h, provisioned) for h in bundles_in(out))
    assert sealed.n_readings == 2


# -- the firmware's own main.py on the real heap ---------------------------------------------------------

APP_BUILT = re.compile(rb"pinseal: device [0-9a-f]{32} boot \d+ reset cause \d+\r\n")
BOOT_END = re.compile(rb"Traceback \(most recent call last\):.*?\r\n(\w+Error: [^\r\n]*)\r\n", re.S)


def test_enrolled_firmware_builds_its_app_on_the_real_heap(flash: Path, tmp_path: Path) -> None:
    """Power on the enrolled board and let main.py run as on a real board (safe-mode window, config, key,
    outbox, counters, sampler, the configured MQTT transport). The image has no machine.WDT, so the run
    must end there, after the app is built: an `AttributeError` naming WDT.

    Found on QEMU (issue 16): as .mpy files on the 100 KB bare-metal heap the app does not always fit. In
    some runs building it ends in a MemoryError (importing pinseal.transport.mqtt, ~640 B) although the
    VM's RAM model, which counts live bytes and not fragmentation, peaks at 84 KB for this deployment. That
    outcome is reported as an expected failure (XFAIL in the summary, with the traceback's last line), so
    it stays visible until the firmware fits; any other ending (a hang, another error) fails the test."""
    console = tmp_path / "console.txt"
    with QemuBoard(flash, console_file=console):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not BOOT_END.search(console.read_bytes()):
            time.sleep(0.1)
    printed = console.read_bytes()
    end = BOOT_END.search(printed)
    assert end is not None, printed[-800:]
    error = end.group(1).decode()
    if error.startswith("MemoryError") and b"create_app" in printed and not APP_BUILT.search(printed):
        pytest.xfail(f"the app did not fit the real 100 KB heap this run: {error} (docs/hil.md)")
    assert APP_BUILT.search(printed), printed[-800:].decode(errors="replace")
    assert "WDT" in error, error
