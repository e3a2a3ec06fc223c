"""The whole firmware application on a virtual board against the real local stack: heap, throughput, flash.

Part of `make bench-firmware` (pinseal_bench.firmware calls `measure()`;
`python -m pinseal_bench.firmware_app` runs it alone and prints the JSON).
The figures the firmware issues ask for:

- `firmware_peak_heap_bytes`: the board's highest live heap since boot (the RAM model's `vboard_ram.peak()`,
  which counts live bytes above the baseline taken after the emulation's own shims load) on `esp32_devkitc`
  (100,000 B), firmware in ROMFS as pinseal ships it, N = 16, after the app has sealed, sent and had acked
  several bundles. Read over the serial REPL: the clock is put back to host speed, Ctrl-C ends the app's
  `asyncio.run` (the peak stays), and `import vboard_ram; print(vboard_ram.peak())` is typed at `>>> `.
  The same figure with the firmware as .py files on flash (pico2_w, 360,000 B) is reported for comparison.
- `firmware_peak_heap_bytes_mpy_esp32`: the same on `esp32_devkitc` with the package as .mpy files on the
  filesystem (a stock image, `pinseal-provision deploy --no-romfs`), the RAM model's limit raised to 200,000 B
  so that the figure is the peak itself (issue 13's target: <= 85,000 B).
- `readings_per_s_n1`, `readings_per_s_n16`: readings a board samples, seals, sends and gets acked, counted in
  the gateway's store (sum of `bundles.n_readings`, i.e. committed, which is when the gateway acks) over a
  fixed host-time window after a warm-up, sampling.interval_s 1 with the board clock sped up so that sampling
  offers more readings than the board can seal and have acked.
- `flash_write_amplification`: bench/firmware/outbox_bench.py `amp` (the real outbox, real readings and
  seals, N = 16) in the plain VM.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinseal_devkit.devices import start_device
from pinseal_devkit.stack import Stack, wait_until
from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard, load_profile
from pinseal_vboard.bluez.bus import BluezBus
from pinseal_vboard.radio_bluez import BluezRadio
from pinseal_vboard.vm import REPO, VMOptions, run_script

BENCH_DIR = REPO / "bench" / "firmware"
OUTBOX_BENCH = BENCH_DIR / "outbox_bench.py"
WORKDIR = REPO / "build" / "bench" / "app"
# bundling.max_wait_s: a day of board time, so that only full bundles are sealed during the run
MAX_WAIT_S = 86400
# the application and what pinseal.startup.create_app imports (counter, outbox, sampler and its drivers,
# the MQTT transport)
IMPORT_LINE = (
    b"import asyncio, vboard_ram, pinseal.app, pinseal.counter, pinseal.outbox, pinseal.sampler, "
    b"pinseal.transport.mqtt, pinseal.sensors.bme280, pinseal.sensors.sht3x, pinseal.sensors.battery"
)
# --only's FILES: (in ROMFS, as .mpy on the filesystem)
FILE_KINDS = {
    "romfs": (True, False),
    "1": (True, False),
    "mpy": (False, True),
    "py": (False, False),
    "0": (False, False),
}
RAM_LINE = rb"VBRAM (\{[^\r\n]*\})\r?\n"


@dataclass
class RunSpec:
    """One board running the application against its own stack.

    speeds: board clock / host clock, one step each. sampling.interval_s is 1, so a speed S offers S readings
    per host second. A heap run has one step; a throughput run steps the speed up until the board no longer
    keeps up (stored < SATURATED x offered), or resets.
    """

    name: str
    board: str = "esp32_devkitc"
    romfs: bool = True
    mpy: bool = False  # without ROMFS: package modules as .mpy files (deploy --no-romfs), else .py
    readings_per_bundle: int = 16
    speeds: tuple[float, ...] = (10.0,)
    settle_s: float = 3.0  # host seconds after a speed change before counting
    step_s: float = 20.0  # host seconds of counting at each speed
    first_bundle_timeout_s: float = 120.0
    ram_bytes: int | None = (
        None  # the RAM model's limit (None: the profile's), e.g. more to see an unfitting peak
    )
    ram_ceiling_bytes: int | None = None  # the RAM model's hard ceiling (None: 4 x RAM)
    transport: str = "mqtt"  # "ble": the board's only link is BLE, through BlueZoo to the gateway's bleak


# A step whose stored rate is below this fraction of the offered rate saturated the board.
SATURATED = 0.85


def ramp(start: float, factor: float, steps: int) -> tuple[float, ...]:
    return tuple(round(start * factor**i, 1) for i in range(steps))


def _gateway_totals(db_path: Path, kid: bytes) -> tuple[int, int]:
    """(bundles, readings) the gateway has committed for this device."""
    with sqlite3.connect(db_path, timeout=10) as db:
        row = db.execute(
            "SELECT count(*), coalesce(sum(n_readings), 0) FROM bundles WHERE kid = ?", (kid,)
        ).fetchone()
    return int(row[0]), int(row[1])


def _window_rate(db_path: Path, kid: bytes, t0: float, t1: float) -> float | None:
    """Readings/s from the bundles the gateway received between host times t0 and t1: the readings of all but
    the first over the time from the first to the last (not quantised to whole bundles); None: < 3 bundles."""
    with sqlite3.connect(db_path, timeout=10) as db:
        rows = db.execute(
            "SELECT received_at, n_readings FROM bundles WHERE kid = ? AND received_at BETWEEN ? AND ? "
            "ORDER BY received_at",
            (kid, t0, t1),
        ).fetchall()
    if len(rows) < 3 or rows[-1][0] <= rows[0][0]:
        return None
    return sum(n for _, n in rows[1:]) / (rows[-1][0] - rows[0][0])


def _rejections(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return dict(db.execute("SELECT reason, count(*) FROM rejections GROUP BY reason").fetchall())


def read_board_ram(vb: VirtualBoard, timeout_s: float = 30.0) -> dict[str, Any]:
    """Stop the application (Ctrl-C) and read the RAM model's figures, and which firmware modules the run
    kept loaded, at the REPL."""
    vb.clock(speed=1.0)  # the watchdog the app started keeps running at board speed: give us time
    at = vb.mark()
    vb.write(b"\x03")
    vb.wait_for_output(rb">>> ", timeout_s, after=at)
    at = vb.mark()
    vb.write(
        b"import vboard_ram, json, sys; print('VBRAM', json.dumps({'peak': vboard_ram.peak(), "
        b"'live': vboard_ram.live(), 'ram': vboard_ram.ram(), 'over': vboard_ram.over_count(), "
        b"'rescues': vboard_ram.rescues(), "
        b"'modules': sorted(m for m in sys.modules if m[:7] == 'pinseal')}))\r"
    )
    m = vb.wait_for_output(RAM_LINE, timeout_s, after=at)
    return json.loads(m.group(1))


def run_app(spec: RunSpec, root: Path) -> dict[str, Any]:
    """Boot the firmware on a fresh board and stack, count what the gateway commits, read the board's heap."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    stack = Stack(root / "stack", batch_interval_s=1)
    bus = radio = None
    link: dict[str, Any] = {}
    if spec.transport == "ble":
        bus = BluezBus(2, log_path=root / "bluezoo.log").start()
        stack.extra_config = {"ble": {"enabled": True, "idle_timeout_s": 5.0, "backoff_max_s": 2.0}}
        stack.gateway_env = dict(bus.environ)
        link = {"link": {"transports": ["ble"]}, "wifi": {"ssid": ""}}
    stack.prepare()
    host = BoardHost()
    vb = None
    try:
        vb, info = start_device(
            host,
            stack,
            root / "flash",
            board=spec.board,
            romfs=spec.romfs,
            mpy=spec.mpy,
            ram_bytes=spec.ram_bytes,
            ram_ceiling_bytes=spec.ram_ceiling_bytes,
            sampling={"interval_s": 1},
            bundling={"readings": spec.readings_per_bundle, "max_wait_s": MAX_WAIT_S},
            **link,
        )
        if bus is not None:
            radio = BluezRadio(vb, bus.address, 1)
        kid = bytes.fromhex(info["key_id"])
        db_path = stack.workdir / "gateway" / "gateway.sqlite"
        stack.start()
        vb.clock(speed=spec.speeds[0])
        vb.reset()
        boots = vb.boots
        boot_mark = vb.mark()
        vb.wait_for_output(b"pinseal: device ", 60, after=boot_mark)
        if not wait_until(lambda: _gateway_totals(db_path, kid)[0] > 0, spec.first_bundle_timeout_s, 0.2):
            raise RuntimeError(
                f"{spec.name}: no bundle reached the gateway; board output:\n{vb.text()[-2000:]}"
            )
        steps = []
        for speed in spec.speeds:
            vb.clock(speed=speed)
            time.sleep(spec.settle_s)
            b0, r0 = _gateway_totals(db_path, kid)
            t0, wall0 = time.monotonic(), time.time()
            time.sleep(spec.step_s)
            b1, r1 = _gateway_totals(db_path, kid)
            elapsed = time.monotonic() - t0
            rate = _window_rate(db_path, kid, wall0, time.time())
            if rate is None:  # too few bundles: whole bundles stored over the window
                rate = (r1 - r0) / elapsed
            step = {
                "offered_per_s": speed,
                "readings_per_s": round(rate, 2),
                "bundles_per_s": round((b1 - b0) / elapsed, 2),
                "resets": vb.boots - boots,
            }
            steps.append(step)
            if step["resets"] or rate < SATURATED * speed:
                break
        ram = read_board_ram(vb)
        output = vb.text(boot_mark)
        (root / "serial.log").write_text(output)
        totals = _gateway_totals(db_path, kid)
        clean = [s for s in steps if not s["resets"]]
        return {
            "board": spec.board,
            "board_ram_bytes": spec.ram_bytes or load_profile(spec.board)["ram"]["free_heap_bytes"],
            "firmware_in_romfs": spec.romfs,
            "firmware_as_mpy": spec.mpy,
            "readings_per_bundle": spec.readings_per_bundle,
            "steps": steps,
            # the best rate of a step without a reset; saturated: the board, not sampling, was the limit
            "readings_per_s": max((s["readings_per_s"] for s in clean), default=0.0),
            "saturated": any(s["readings_per_s"] < SATURATED * s["offered_per_s"] for s in clean),
            "bundles_stored": totals[0],
            "readings_stored": totals[1],
            "peak_heap_bytes": ram["peak"],
            "live_heap_bytes_at_repl": ram["live"],
            "ram_over_count": ram["over"],
            "ram_rescues": ram["rescues"],
            "firmware_modules_loaded": ram["modules"],
            "board_resets": vb.boots - boots,
            "memory_errors": output.count("MemoryError"),
            "rejections": _rejections(db_path),
            "transport": spec.transport,
        }
    finally:
        if radio is not None:
            radio.close()
        if vb is not None:
            vb.stop()
        host.close()
        stack.stop()
        if bus is not None:
            bus.stop()


def outbox_amplification(readings: int = 1024) -> dict[str, Any]:
    """outbox_bench.py amp (plain VM): the real outbox's bytes written / bytes of acked bundles, N = 16."""
    options = VMOptions(timeout_s=900)
    options.mounts = (*options.mounts, (BENCH_DIR, "/bench"))
    options.sys_path = ("/bench",)
    result = run_script(OUTBOX_BENCH, options, ["amp", str(readings)])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"outbox_bench amp failed (exit {result.returncode}):\n{result.output}")
    return json.loads(lines[-1])


def import_heap(board: str, romfs: bool, root: Path) -> int:
    """Live heap once the firmware's modules are imported (IMPORT_LINE, at the REPL of a board with no
    config), above the emulation's baseline: what the code costs before the application allocates anything."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    options = BoardOptions(board=board, flash_dir=root / "flash", firmware_in_romfs=romfs)
    with VirtualBoard(options) as vb:
        vb.wait_for_output(b">>> ")
        # each asyncio.run typed at the REPL returns to JS: the model collects and measures live bytes
        for line in (IMPORT_LINE, *[b"asyncio.run(asyncio.sleep_ms(0))"] * 2):
            at = vb.mark()
            vb.write(line + b"\r")
            vb.wait_for_output(rb"\n>>> ", 60, after=at)
        at = vb.mark()
        vb.write(b"print('VBRAM', '{\"live\": %d}' % vboard_ram.live())\r")
        m = vb.wait_for_output(RAM_LINE, 60, after=at)
        return int(json.loads(m.group(1))["live"])


def measure(step_s: float = 20.0, amp_readings: int = 1024, workdir: Path = WORKDIR) -> dict[str, Any]:
    """Every figure of this benchmark, ready to merge into build/bench/firmware.json."""
    short = max(4.0, step_s / 2)
    specs = (
        # heap: N = 16 at 10 readings/s (the board keeps up), several bundles sealed, sent and acked
        RunSpec("heap_esp32_romfs", readings_per_bundle=16, speeds=(10.0,), step_s=step_s),
        # the same on a stock image: .mpy files on the filesystem (deploy --no-romfs), at the board's
        # 100,000 B with the hard ceiling 16 KiB above it (as the issue 13 test in make test runs it)
        RunSpec(
            "heap_esp32_mpy",
            romfs=False,
            mpy=True,
            speeds=(10.0,),
            step_s=step_s,
            ram_ceiling_bytes=load_profile("esp32_devkitc")["ram"]["free_heap_bytes"] + 16 * 1024,
        ),
        RunSpec(
            "heap_pico2w_flash", "pico2_w", romfs=False, readings_per_bundle=16, speeds=(10.0,), step_s=step_s
        ),
        # throughput: offered readings/s stepped up until the board saturates
        RunSpec("rate_n1", readings_per_bundle=1, speeds=ramp(2.0, 1.4, 10), step_s=short),
        RunSpec("rate_n16", readings_per_bundle=16, speeds=ramp(8.0, 1.4, 10), step_s=step_s),
    )
    runs = {spec.name: run_app(spec, workdir / spec.name) for spec in specs}
    imports = {
        "esp32_devkitc_romfs": import_heap("esp32_devkitc", True, workdir / "import_romfs"),
        "pico2_w_flash": import_heap("pico2_w", False, workdir / "import_flash"),
    }
    amp = outbox_amplification(amp_readings)
    n1, n16 = runs["rate_n1"]["readings_per_s"], runs["rate_n16"]["readings_per_s"]
    return {
        "firmware_peak_heap_bytes": runs["heap_esp32_romfs"]["peak_heap_bytes"],
        "firmware_peak_heap_bytes_mpy_esp32": runs["heap_esp32_mpy"]["peak_heap_bytes"],
        "firmware_peak_heap_bytes_flash_pico2_w": runs["heap_pico2w_flash"]["peak_heap_bytes"],
        "firmware_import_heap_bytes": imports,
        "readings_per_s_n1": n1,
        "readings_per_s_n16": n16,
        "readings_per_s_ratio_n16_n1": round(n16 / n1, 2) if n1 else None,
        "flash_write_amplification": amp["flash_write_amplification"],
        "outbox_bytes_per_reading": amp["outbox_bytes_per_reading"],
        "outbox_amp": amp,
        "app_runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--step-s", type=float, default=20.0)
    parser.add_argument("--amp-readings", type=int, default=1024)
    parser.add_argument("--ram", type=int, help="with --only: the RAM model's limit instead of the profile's")
    parser.add_argument(
        "--ceiling", type=int, help="with --only: the RAM model's hard ceiling in bytes (default 4 x RAM)"
    )
    parser.add_argument(
        "--only",
        help="one run: NAME:BOARD:FILES:N:SPEED[,SPEED...], FILES romfs (or 1), mpy, or py (or 0)",
    )
    args = parser.parse_args(argv)
    if args.only:
        fields = args.only.split(":")
        if len(fields) != 5:
            parser.error(f"--only: NAME:BOARD:FILES:N:SPEED[,SPEED...], not {args.only!r}")
        name, board, files, n, speeds = fields
        if files not in FILE_KINDS:
            parser.error(f"--only: FILES must be one of {', '.join(FILE_KINDS)}, not {files!r}")
        romfs, as_mpy = FILE_KINDS[files]
        speed_steps = tuple(float(x) for x in speeds.split(","))
        spec = RunSpec(
            name,
            board,
            romfs,
            as_mpy,
            int(n),
            speed_steps,
            step_s=args.step_s,
            ram_bytes=args.ram,
            ram_ceiling_bytes=args.ceiling,
        )
        print(json.dumps(run_app(spec, WORKDIR / name), indent=2))
        return 0
    print(json.dumps(measure(args.step_s, args.amp_readings), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
