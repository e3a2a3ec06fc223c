"""`make bench-fleet`: how many virtual boards this machine runs at once, what each costs, how fast they boot.

Boards are started in steps into one board host (one Node process, a worker thread per board) with the
repository's firmware on their flash and a main.py that samples the board's BME280 and SHT3x through the
firmware's real drivers every SAMPLE_MS (the emulated chips answer at register level) and prints each
sample. At each step: boot time from "start" to the first sample, resident memory of every process serving
the fleet (the Node host and this Python process, which holds the ptys) divided by the number of boards,
and the lateness of the boards' sampling schedule: a step counts as running when every board printed its
next sample within LATE_LIMIT_S of when it was due, so "runs" means "keeps its schedule", not merely "was
started". (The application firmware of a later issue replaces this main.py.)
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pinseal_bench.report import publish, stamp
from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard, board_profile_path
from pinseal_vboard.vm import FIRMWARE_DIR, REPO

COMMAND = "make bench-fleet"
SECTION = "fleet"
RSS_TARGET_MB = 60
BOARDS_TARGET = 50
SAMPLE_MS = 2000
# A fleet step counts as running when every board's next sample comes at most this late.
LATE_LIMIT_S = 1.0

SENSING_MAIN = """\
import asyncio, json, time
from pinseal.sensors import open_i2c, bme280, sht3x

async def main():
    with open("/board.json") as f:
        profile = json.load(f)
    i2c = open_i2c(profile["i2c"])
    env, rh = bme280.BME280(i2c), sht3x.SHT3x(i2c)
    n = 0
    print("sensing")
    while True:
        due = time.ticks_add(time.ticks_ms(), SAMPLE_MS)
        t, p, h = await env.read()
        t2, h2 = await rh.read()
        n += 1
        print("sample", n, t, p >> 8, t2)
        await asyncio.sleep_ms(max(0, time.ticks_diff(due, time.ticks_ms())))

asyncio.run(main())
""".replace("SAMPLE_MS", str(SAMPLE_MS))


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def schedule_lateness(boards: list[VirtualBoard], samples: int = 3) -> float:
    """Watch every board for `samples` periods: the worst gap between samples beyond SAMPLE_MS (s)."""
    seen: list[list[float]] = [[] for _ in boards]
    counts = [b.text().count("sample ") for b in boards]
    deadline = time.monotonic() + (samples + 1) * SAMPLE_MS / 1000 + 5
    while time.monotonic() < deadline and min(len(s) for s in seen) < samples:
        now = time.monotonic()
        for i, b in enumerate(boards):
            c = b.text().count("sample ")
            if c > counts[i]:
                seen[i].extend([now] * (c - counts[i]))
                counts[i] = c
        time.sleep(0.02)
    worst = 0.0
    for stamps in seen:
        if len(stamps) < samples:
            return float("inf")
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        worst = max(worst, max(gaps) - SAMPLE_MS / 1000)
    return worst


def run(steps: list[int], board: str, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"board": board, "steps": []}
    boards: list[VirtualBoard] = []
    # the firmware's packages (in each board's ROMFS, as provisioning deploys them) with the sensing main.py
    firmware = root / "firmware"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(FIRMWARE_DIR / "pinseal", firmware / "pinseal", ignore=ignore)
    (firmware / "main.py").write_text(SENSING_MAIN)
    with BoardHost() as host:
        for target in steps:
            boot_s = []
            while len(boards) < target:
                flash = root / f"b{len(boards)}" / "flash"
                flash.mkdir(parents=True)
                (flash / "board.json").write_text(board_profile_path(board).read_text())
                b = VirtualBoard(
                    BoardOptions(board=board, flash_dir=flash, firmware=firmware, firmware_in_romfs=True),
                    host=host,
                )
                t0 = time.monotonic()
                b.start(timeout_s=120)
                b.wait_for_output(b"sample 1 ", timeout_s=120)
                boot_s.append(time.monotonic() - t0)
                boards.append(b)
            time.sleep(1.0)  # let the boots' garbage settle before reading memory
            lateness = schedule_lateness(boards)
            total_rss = host.rss_bytes() + rss_bytes()
            step = {
                "boards": len(boards),
                "boot_to_sample_s_median": round(statistics.median(boot_s), 3),
                "boot_to_sample_s_max": round(max(boot_s), 3),
                "rss_total_mb": round(total_rss / 1e6, 1),
                "rss_per_board_mb": round(total_rss / 1e6 / len(boards), 2),
                "late_s_max": round(lateness, 3),
                "on_schedule": lateness <= LATE_LIMIT_S,
            }
            result["steps"].append(step)
            print(step, file=sys.stderr, flush=True)
            if not step["on_schedule"]:
                break
        for b in boards:
            b.stop()
    running = [s for s in result["steps"] if s["on_schedule"]]
    top = max(running, key=lambda s: s["boards"]) if running else result["steps"][-1]
    result["boards_running"] = top["boards"] if running else 0
    result["rss_per_board_mb"] = top["rss_per_board_mb"]
    result["boot_to_sample_s_median"] = result["steps"][0]["boot_to_sample_s_median"]
    return result


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Virtual board fleet",
        "",
        f"Command: `{COMMAND}` ({result['measured_at']}). Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['os']}, Python {m['python']}, Node {m.get('node', '?')}. Board profile `{result['board']}`, "
        "the repository's "
        "firmware on each flash and a main.py sampling BME280 + SHT3x through the firmware's drivers every "
        f"{SAMPLE_MS} ms; all boards in one board host (a Node worker thread each).",
        "",
        "| metric | measured | target | met |",
        "|---|---|---|---|",
        f"| boards running at once (every one keeping its {SAMPLE_MS} ms schedule within {LATE_LIMIT_S:g} s) "
        f"| {result['boards_running']} | >= {BOARDS_TARGET} | "
        f"{'yes' if result['boards_running'] >= BOARDS_TARGET else '**no**'} |",
        f"| RSS per board, MB (all processes serving the fleet / boards) | {result['rss_per_board_mb']} "
        f"| <= {RSS_TARGET_MB} | {'yes' if result['rss_per_board_mb'] <= RSS_TARGET_MB else '**no**'} |",
        f"| boot to first sample, s (median, first step) | {result['boot_to_sample_s_median']} | - | - |",
        "",
        "| boards | boot median s | boot max s | RSS total MB | RSS per board MB | worst lateness s |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["steps"]:
        lines.append(
            f"| {s['boards']} | {s['boot_to_sample_s_median']} | {s['boot_to_sample_s_max']} "
            f"| {s['rss_total_mb']} | {s['rss_per_board_mb']} | {s['late_s_max']} |"
        )
    lines += [
        "",
        "Boot (VM start, flash copy-in, boot.py, main.py up to its first sample) is measured while the "
        "boards already started keep running, so later steps boot slower.",
        f"<!-- bench:{SECTION}:end -->",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="1,10,25,50,75,100", help="fleet sizes to reach, in order")
    parser.add_argument("--board", default="esp32_devkitc")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "fleet.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    with tempfile.TemporaryDirectory(prefix="pinseal-fleet-") as tmp:
        result = stamp(run(steps, args.board, Path(tmp)), node=True)
    result["command"] = COMMAND
    publish(result, args.out, args.doc, SECTION, report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
