"""Power cuts on a virtual board running the outbox and counter from the repository's firmware.

A test main.py on the board's flash appends readings, seals bundles (16 readings) and acks the oldest in a
loop, printing each step once it returned; power is cut at seeded random moments, half of them tearing the
write in progress, and after each power-on the board prints what it recovered. The host checks: every
reading it saw committed is pending, in a live bundle or acked; bundles keep their bytes (hash) and chain;
the boot counter counts every boot; no seq is ever issued twice.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from pinseal_hil.outbox_power_cut import board_main
from pinseal_vboard import BoardOptions, VirtualBoard
from pinseal_vboard.board import install_firmware
from pinseal_vboard.vm import FIRMWARE_DIR

pytestmark = pytest.mark.vm

MAIN = board_main(sleep_ms=3)

BOOT = rb"BOOT (\{[^\r\n]*\})\r\n"


def test_power_cuts_at_random_points_lose_and_repeat_nothing(tmp_path: Path) -> None:
    rng = random.Random(77)
    flash = tmp_path / "flash"
    flash.mkdir()
    install_firmware(FIRMWARE_DIR / "pinseal", flash / "pinseal")  # the library, not the app's main.py
    (flash / "main.py").write_text(MAIN)
    committed: set[int] = set()
    bundles: dict[tuple[int, int], str] = {}
    acked_through = -1
    issued_max = -1
    boots = 0
    tears = 0
    torn_seen = 0
    t0 = time.monotonic()
    with VirtualBoard(BoardOptions(flash_dir=flash, firmware=None, hang_s=0)) as board:
        at = 0
        for cycle in range(16):  # 8 boots, more (bounded) until a cut has torn a record
            m = board.wait_for_output(BOOT, timeout_s=30, after=at)
            state = json.loads(m.group(1))
            # what the board printed before the cut: steps that certainly completed
            before = board.text(at)[: m.start() - at] if cycle else ""
            for line in before.splitlines():
                parts = line.split()
                if not parts:
                    continue
                if parts[0] == "R" and len(parts) == 2:
                    committed.add(int(parts[1]))
                elif parts[0] == "B" and len(parts) == 4:
                    bundles[(int(parts[1]), int(parts[2]))] = parts[3]
                elif parts[0] == "A" and len(parts) == 2:
                    acked_through = max(acked_through, int(parts[1]))
            boots += 1
            torn_seen += state["torn"]
            assert state["boot"] == boots, state
            assert state["dropped"] == 0 and state["corrupt"] == 0, state
            assert state["npending"] == len(state["pending"]), "a reading's bytes changed"
            # never a seq twice: the counter resumes above everything issued or stored
            stored = state["pending"] + [b[1] for b in state["bundles"]]
            issued_max = max([issued_max, *committed, *stored])
            assert state["next"] > issued_max, (state["next"], issued_max)
            live = set(state["pending"])
            prev_link = None
            for first, last, link, prev in state["bundles"]:
                live.update(range(first, last + 1))
                if (first, last) in bundles:
                    assert bundles[(first, last)] == link, "a bundle's bytes changed"
                else:  # sealed just before the cut, its print lost: newer than every bundle printed
                    assert all(first > b[1] for b in bundles), (first, bundles)
                    bundles[(first, last)] = link
                if prev_link is not None:
                    assert prev == prev_link, "broken chain"
                prev_link = link
            if state["bundles"]:
                assert state["chain"] == state["bundles"][-1][2]
            # acked: printed as such, or (the print lost to the cut) a bundle older than every live one,
            # which only an ack removes while nothing is evicted (dropped == 0 above)
            oldest_live = state["bundles"][0][0] if state["bundles"] else issued_max + 1
            acked = {
                q
                for (f, last) in bundles
                if last <= acked_through or last < oldest_live
                for q in range(f, last + 1)
            }
            assert all(last < oldest_live for (f, last) in bundles if last <= acked_through)
            missing = sorted(q for q in committed if q not in live and q not in acked)
            assert not missing, (missing[:10], state)
            # no duplicate: nothing both pending and in a bundle
            assert len(live) == len(state["pending"]) + sum(b[1] - b[0] + 1 for b in state["bundles"])
            if (cycle >= 7 and tears >= 2 and torn_seen >= 1) or cycle == 15:
                break
            at = board.mark()
            time.sleep(rng.uniform(0.3, 1.2))
            tear = rng.random() < 0.5
            tears += tear
            board.power_cut(tear=tear)
            board.power_on()
    assert tears >= 2 and torn_seen >= 1, (tears, torn_seen)  # a cut tore an outbox record, repaired
    assert len(committed) > 100 and len(bundles) > 5, (len(committed), len(bundles))
    assert time.monotonic() - t0 < 60
