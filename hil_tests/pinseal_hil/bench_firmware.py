"""`make bench-firmware`: sealing bundles in the MicroPython VM, against a naive RFC 8032 signer.

Two VMs run hil_tests/bench/seal_bench.py: one plain (timings: ours and the naive signer interleaved on the
same bytes in the same VM, so the ratio survives a noisy machine), one with the board RAM model on (heap at
the signer's yield points). The merged figures go to build/bench/firmware.json and a section of
docs/benchmarks.md, with the command and the machine that produced them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pinseal_hil.benchreport import publish, stamp
from pinseal_hil.vm import BOARD_RAM_BYTES, REPO, VMOptions, run_script

BENCH_DIR = REPO / "hil_tests" / "bench"
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
            f"{result['sig_structure_bytes']}-byte Sig_structure signed by hil_tests/bench/naive_ed25519.py "
            "(RFC 8032 as §5.1 reads: key derived each time, double-and-add, no tables, straightforward "
            "SHA-512) in the same VM; `speedup` = naive / ours.",
            f"- `per_reading_ms_at_16`: a 16-reading seal ({result['seal_16_ms']} ms, "
            f"{result['bytes_sixteen_readings']} bytes) divided by 16.",
            f"- `peak_heap_bytes`: highest live heap (collected at each return to JS) at the signer's yield "
            f"points during a one-reading seal, minus the live heap before it, board RAM model "
            f"{result['board_ram_bytes']:,} bytes; at 16 readings: {result['peak_heap_bytes_at_16']:,}. "
            "`table_bytes`: live bytes the signing key and its comb table hold.",
            "- `max_slice_ms`: the longest stretch of signer computation between two yields within one "
            "signature, host clock (`performance.now()`), median over the signatures; the worst single slice "
            f"of all runs was {result['worst_slice_ms']} ms (other processes on this shared host preempt "
            "the VM).",
            f"<!-- bench:{SECTION}:end -->",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "firmware.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)

    timing = run_mode("timing", args.reps, VMOptions(timeout_s=900))
    heap = run_mode("heap", args.reps, VMOptions.board(BOARD_RAM_BYTES, timeout_s=900))
    result = stamp({**timing, **heap, "micropython_vm": MICROPYTHON_VM}, node=True)
    result["targets_met"] = {metric: bool(check(result)) for metric, _, check in TARGETS}
    publish(result, args.out, args.doc, SECTION, render_section(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
