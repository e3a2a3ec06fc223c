"""`make bench-firmware`: sealing bundles in the MicroPython VM, against a naive RFC 8032 signer.

Two VMs run bench/firmware/seal_bench.py: one plain (timings: ours and the naive signer interleaved on the
same bytes in the same VM, so the ratio survives a noisy machine), one with the board RAM model on (heap at
the signer's yield points). pinseal_bench.firmware_app runs the whole application on virtual boards against
the real local stack (peak heap, readings/s at N = 1 and 16) and the outbox's flash write amplification.
The merged figures go to build/bench/firmware.json and a section of docs/benchmarks.md, with the command and
the machine that produced them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pinseal_bench import firmware_app as bench_app
from pinseal_bench.report import publish, stamp
from pinseal_vboard.vm import BOARD_RAM_BYTES, REPO, VMOptions, run_script

BENCH_DIR = REPO / "bench" / "firmware"
SEAL_BENCH = BENCH_DIR / "seal_bench.py"
COMMAND = "make bench-firmware"
SECTION = "firmware"
MICROPYTHON_VM = "@micropython/micropython-webassembly-pyscript 1.29.0-6"

# (metric, target, comparison) as the foundation issue sets them; None = reported, no target.
TARGETS: list[tuple[str, str, Any]] = [
    ("speedup", ">= 3", lambda r: r["speedup"] >= 3),
    ("per_reading_ms_at_16", "<= sign_ms / 5", lambda r: r["per_reading_ms_at_16"] <= r["sign_ms"] / 5),
    ("peak_heap_bytes", "<= 20,000", lambda r: r["peak_heap_bytes"] <= 20_000),
    ("table_bytes", "<= 16,000", lambda r: r["table_bytes"] <= 16_000),
    ("max_slice_ms", "<= 1", lambda r: r["max_slice_ms"] <= 1),
    ("bytes_one_reading", "<= 200", lambda r: r["bytes_one_reading"] <= 200),
    ("bytes_per_extra_reading", "<= 56", lambda r: r["bytes_per_extra_reading"] <= 56),
    # the whole application (pinseal_bench.firmware_app)
    ("firmware_peak_heap_bytes", "<= 60,000", lambda r: r["firmware_peak_heap_bytes"] <= 60_000),
    # issue 13: a stock image (no ROMFS), .mpy files on the filesystem
    (
        "firmware_peak_heap_bytes_mpy_esp32",
        "<= 85,000",
        lambda r: r["firmware_peak_heap_bytes_mpy_esp32"] <= 85_000,
    ),
    ("flash_write_amplification", "<= 2.5", lambda r: r["flash_write_amplification"] <= 2.5),
]
# reported, no target
REPORTED = [
    "sign_ms_comb1",
    "speedup_comb1",
    "sign_ms_comb2",
    "speedup_comb2",
    "readings_per_s_n1",
    "readings_per_s_n16",
    "readings_per_s_ratio_n16_n1",
    "outbox_bytes_per_reading",
]


def run_mode(mode: str, reps: int, options: VMOptions) -> dict[str, Any]:
    options.mounts = (*options.mounts, (BENCH_DIR, "/bench"))
    options.sys_path = ("/bench",)
    result = run_script(SEAL_BENCH, options, [mode, str(reps)])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"seal_bench {mode} failed (exit {result.returncode}):\n{result.output}")
    return json.loads(lines[-1])


def render_section(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = []
    for metric, target, check in TARGETS:
        rows.append(f"| `{metric}` | {result[metric]} | {target} | {'yes' if check(result) else '**no**'} |")
    rows += [f"| `{metric}` | {result[metric]} | - | - |" for metric in REPORTED]
    return "\n".join(
        [
            f"<!-- bench:{SECTION}:start -->",
            "## Firmware: sealing bundles in the MicroPython VM",
            "",
            f"Command: `{COMMAND}` ({result['measured_at']}). Machine: {m['cpu']}, {m['cores']} cores, "
            f"{m['os']}, Node {m['node']}, {result['micropython_vm']}. "
            f"Medians of {result['reps']} interleaved runs.",
            "",
            "| metric | measured | target | met |",
            "|---|---|---|---|",
            *rows,
            "",
            f"- `sign_ms` {result['sign_ms']} ms: sealing a one-reading bundle (t/h/p) with the firmware's "
            f"yielding signer; `naive_sign_ms` {result['naive_sign_ms']} ms: the same "
            f"{result['sig_structure_bytes']}-byte Sig_structure signed by bench/firmware/naive_ed25519.py "
            "(RFC 8032 as §5.1 reads: key derived each time, double-and-add, no tables, straightforward "
            "SHA-512) in the same VM; `speedup` = naive / ours.",
            f"- Comb sizes (profile `ram.comb_subcombs`; the table loaded from flash costs 1.5, 3 or 6 KB of "
            f"heap): the same one-reading seal with 4 sub-combs {result['sign_ms_comb4']} ms "
            f"({result['speedup_comb4']}x the naive signer), 2 {result['sign_ms_comb2']} ms "
            f"({result['speedup_comb2']}x), 1 {result['sign_ms_comb1']} ms ({result['speedup_comb1']}x; "
            "esp32_devkitc on a stock image), in the same runs (the least of three seals a round, the median "
            "over the rounds). From ROMFS the whole table costs no heap and every board uses 4.",
            f"- `per_reading_ms_at_16`: a 16-reading seal ({result['seal_16_ms']} ms, "
            f"{result['bytes_sixteen_readings']} bytes) divided by 16.",
            f"- `peak_heap_bytes`: highest live heap (collected at each return to JS) at the signer's yield "
            f"points during a one-reading seal, minus the live heap before it, board RAM model "
            f"{result['board_ram_bytes']:,} bytes; at 16 readings: {result['peak_heap_bytes_at_16']:,}. "
            "`table_bytes`: live bytes the signing key and its comb table hold (the table is a constant: "
            "0 B from ROMFS; this counts it loaded from flash).",
            "- `max_slice_ms`: the longest stretch of signer computation between two yields within one "
            "signature, host clock (`performance.now()`), median over the signatures; the worst single slice "
            f"of all runs was {result['worst_slice_ms']} ms (other processes on this shared host preempt "
            "the VM).",
            *app_notes(result),
            f"<!-- bench:{SECTION}:end -->",
        ]
    )


def _steps(run: dict[str, Any]) -> str:
    return ", ".join(f"{s['offered_per_s']} -> {s['readings_per_s']}" for s in run["steps"])


def app_notes(r: dict[str, Any]) -> list[str]:
    """What the application figures are and what limits them (pinseal_bench.firmware_app)."""
    runs = r["app_runs"]
    heap, mpy, pico, n1, n16 = (
        runs["heap_esp32_romfs"],
        runs["heap_esp32_mpy"],
        runs["heap_pico2w_flash"],
        runs["rate_n1"],
        runs["rate_n16"],
    )
    imports = r["firmware_import_heap_bytes"]
    amp = r["outbox_amp"]
    return [
        "",
        "The whole application (`pinseal_bench.firmware_app`): the unmodified firmware on a virtual board, "
        "enrolled and registered with a local Mosquitto + gateway + network ingest; sampling.interval_s 1 "
        "with the board clock sped up (speed S offers S readings per host second), bundling.max_wait_s a "
        "day (full bundles only). Rates are host seconds on this shared machine, in the WebAssembly VM, not "
        "a real ESP32's: compare them with each other, not with hardware; memory figures and the "
        "amplification do not depend on the machine.",
        "",
        f"- `firmware_peak_heap_bytes`: highest live heap since boot on `esp32_devkitc` "
        f"({heap['board_ram_bytes']:,} B RAM), firmware in ROMFS (as shipped), N = 16, "
        f"{heap['steps'][0]['offered_per_s']} readings/s offered for {heap['steps'][0]['readings_per_s']} "
        f"stored/s, {heap['bundles_stored']} bundles sealed, sent and acked; RAM model (`vboard_ram.peak()`: "
        "live bytes after the collection at each return to JS, above the baseline taken once the emulation's "
        "shims are loaded), read at the REPL after Ctrl-C ends the app. "
        f"Live at the REPL afterwards: {heap['live_heap_bytes_at_repl']:,}; resets {heap['board_resets']}, "
        f"MemoryErrors {heap['memory_errors']}. Of it, importing the firmware's modules alone keeps "
        f"{imports['esp32_devkitc_romfs']:,} B live (ROMFS: bytecode in place, but module dicts, classes and "
        "functions on the heap).",
        "- `firmware_peak_heap_bytes_mpy_esp32`: the same run on a stock image (no ROMFS: the packages as "
        ".mpy files on the filesystem, their code in the heap), the hard ceiling at RAM + 16 KiB: "
        f"{mpy['peak_heap_bytes']:,} B, {mpy['bundles_stored']} bundles, live at the REPL afterwards "
        f"{mpy['live_heap_bytes_at_repl']:,}; resets {mpy['board_resets']}, MemoryErrors "
        f"{mpy['memory_errors']}, early collections {mpy['ram_rescues']}. Issue 13 took it from 101,424 B "
        "(4 x RAM ceiling) to this.",
        f"- For comparison, firmware as .py on flash (`pico2_w`, {pico['board_ram_bytes']:,} B RAM), same "
        f"run: `firmware_peak_heap_bytes_flash_pico2_w` {pico['peak_heap_bytes']:,} B; its modules "
        f"alone {imports['pico2_w_flash']:,} B.",
        "- `readings_per_s_n1` / `_n16`: readings the gateway committed (`bundles.n_readings` in "
        "gateway.sqlite; it acks after the commit) per host second (the readings of the bundles received in "
        "a step after its first, over the time from its first to its last), with the offered rate stepped up "
        "by 1.4x "
        f"until the stored rate fell below {bench_app.SATURATED:.0%} of it (offered -> stored per step: "
        f"N = 1: {_steps(n1)}; N = 16: {_steps(n16)}); the figure is the best step without a reset "
        f"(saturated: N = 1 {n1['saturated']}, N = 16 {n16['saturated']}; resets {n1['board_resets']} / "
        f"{n16['board_resets']}). N = 1 is bound by stop-and-wait: one bundle in flight, each waiting for "
        "publish -> gateway verify + commit + signed ack -> the board verifying the ack (Ed25519) before the "
        "next goes; N = 16 carries 16 readings per round trip, so the board's CPU (sampling, flash writes, "
        "sealing, ack verification) and the sampling loop's slip become the limit. Noisy on a shared "
        "2-core host: other agents' processes share it.",
        f"- `flash_write_amplification`: bench/firmware/outbox_bench.py `amp` (plain VM): the real outbox, "
        f"{amp['readings']} readings as the app encodes them ({amp['mean_reading_bytes']} B each), sealed "
        f"16 at a time ({amp['mean_bundle_bytes']} B per bundle), acks after each bundle with a backlog of 4 "
        f"every 8th: {amp['outbox_bytes_written']:,} B written to flash (records, framing, head records, "
        f"markers, repair copies) / {amp['bundle_bytes_acked']:,} B of acked bundles; "
        f"`outbox_bytes_per_reading` = written / readings.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "firmware.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--app-step-s", type=float, default=20.0, help="host seconds per application step")
    args = parser.parse_args(argv)

    timing = run_mode("timing", args.reps, VMOptions(timeout_s=900))
    heap = run_mode("heap", args.reps, VMOptions.board(BOARD_RAM_BYTES, timeout_s=900))
    app = bench_app.measure(step_s=args.app_step_s)
    result = stamp({**timing, **heap, **app, "micropython_vm": MICROPYTHON_VM}, node=True)
    result["targets_met"] = {metric: bool(check(result)) for metric, _, check in TARGETS}
    publish(result, args.out, args.doc, SECTION, render_section(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
