"""The outbox and counter under random operations and power cuts, run in the MicroPython VM.

Hypothesis makes batches of cases (operations, a power cut tearing a write at a random byte, a flipped
byte in a random segment); one VM runs a whole batch (cases in a JSON file, DRIVER below) and reports what
each operation committed and what each boot recovered; the host checks the invariants: no reading lost
unless counted as dropped, none twice, bundles byte-identical, seqs strictly increasing, the chain head the
last bundle's link. The bench's amplification figure and heap are checked against their targets here too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pinseal_vboard.vm import REPO, VMOptions, run_code, run_script

pytestmark = pytest.mark.vm

BENCH = REPO / "bench" / "firmware" / "outbox_bench.py"

# MicroPython. Each case runs in its own folder; `open` inside pinseal.outbox is replaced by one whose
# writes spend a byte budget: the write that exhausts it lands a prefix, then "the power goes" (PowerCut
# unwinds everything, nothing after it reaches the flash). A torn operation is then resolved by looking:
# after the next boot, did it take effect or not?
DRIVER = r"""
import hashlib, json, os
import pinseal.outbox as outbox_mod
from pinseal.outbox import Outbox

class PowerCut(Exception):
    pass

budget = [None]

class TearingFile:
    def __init__(self, f):
        self.f = f
    def write(self, data):
        b = budget[0]
        if b is not None:
            if len(data) > b:
                self.f.write(bytes(data)[:b])
                self.f.flush()
                budget[0] = None
                raise PowerCut()
            budget[0] = b - len(data)
        return self.f.write(data)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.f.close()

def tearing_open(path, mode="r"):
    return TearingFile(open(path, mode))

outbox_mod.open = tearing_open

def link(data):
    return hashlib.sha256(data).digest()[:16]

def bundle_bytes(first, last, size):
    seed = hashlib.sha256(b"%d:%d" % (first, last)).digest()
    return (seed * (size // 32 + 1))[:size]

def reading(seq):
    return b"r%d" % seq + bytes(seq % 7)

def state(ob):
    return {
        "pending": [[s, hashlib.sha256(d).digest()[:4].hex()] for s, d in ob.pending_readings()],
        "bundles": [[a, b, link(x).hex()] for a, b, x in ob.pending_bundles()],
        "chain": ob.chain_head().hex(),
        "dropped": ob.dropped(),
        "max_seq": ob.max_seq(),
    }

def run_case(n, case):
    d = "/case%d" % n
    ev = []
    ob = Outbox(d, case["cap"])
    ev.append(["boot", state(ob)])
    seq = 0
    tear = case["tear"]
    for i, op in enumerate(case["ops"]):
        if tear is not None and tear[0] == i:
            budget[0] = tear[1]
        kind = op[0]
        before = state(ob)
        attempt = None
        try:
            if kind == "r":
                for _ in range(op[1]):
                    attempt = ["r", seq, hashlib.sha256(reading(seq)).digest()[:4].hex()]
                    ob.add_reading(seq, reading(seq))
                    ev.append(attempt)
                    attempt = None
                    seq += 1 + (seq % 5 == 4 and op[2])  # sometimes a skipped seq
            elif kind == "b":
                p = ob.pending_readings(op[1])
                if p:
                    data = bundle_bytes(p[0][0], p[-1][0], op[2])
                    rep = ob.dropped()
                    attempt = ["b", p[0][0], p[-1][0], link(data).hex(), rep]
                    ob.add_bundle(p[0][0], p[-1][0], data, rep)
                    ev.append(attempt)
                    attempt = None
            elif kind == "a":
                bs = before["bundles"]
                if bs:
                    s = bs[op[1] % len(bs)][1]
                    attempt = ["a", s]
                    ob.ack(s)
                    ev.append(attempt)
                    attempt = None
            elif kind == "o":
                ob.close()
                ob = Outbox(d, case["cap"])
                ev.append(["boot", state(ob)])
        except PowerCut:
            ob = Outbox(d, case["cap"])  # power on
            after = state(ob)
            if attempt is not None:
                done = False
                if attempt[0] == "r":
                    done = after["max_seq"] >= attempt[1]
                elif attempt[0] == "b":
                    done = after["chain"] == attempt[3]
                elif attempt[0] == "a":
                    done = not any(b[1] <= attempt[1] for b in after["bundles"])
                if done:
                    ev.append(attempt)
            ev.append(["cut", i])
            ev.append(["boot", after])
            seq = max(seq, after["max_seq"] + 1)
    budget[0] = None
    if case["flip"] is not None:
        ob.close()
        names = sorted(os.listdir(d), key=lambda n: int(n.split(".")[0]))
        data = b""
        if names:
            name = d + "/" + names[case["flip"][0] % len(names)]
            with open(name, "rb") as f:
                data = bytearray(f.read())
        if data:
            data[case["flip"][1] % len(data)] ^= case["flip"][2]
            with open(name, "wb") as f:
                f.write(data)
        ob = Outbox(d, case["cap"])
        first = state(ob)
        ob.close()
        ob = Outbox(d, case["cap"])
        ev.append(["flipped", first, state(ob)])
    else:
        ev.append(["end", state(ob)])
    ob.close()
    return ev

with open("/cases/cases.json") as f:
    cases = json.load(f)
for n, case in enumerate(cases):
    print("CASE " + json.dumps(run_case(n, case)))
"""

op = st.one_of(
    st.tuples(st.just("r"), st.integers(1, 20), st.integers(0, 3)),
    st.tuples(st.just("b"), st.integers(1, 16), st.integers(40, 1800)),
    st.tuples(st.just("a"), st.integers(0, 5)),
    st.tuples(st.just("o")),
)


@st.composite
def case(draw: st.DrawFn) -> dict[str, Any]:
    ops = draw(st.lists(op, min_size=1, max_size=40))
    tear = draw(st.none() | st.tuples(st.integers(0, len(ops) - 1), st.integers(0, 3000)))
    flip = draw(st.none() | st.tuples(st.integers(0, 9), st.integers(0, 1 << 16), st.integers(1, 255)))
    cap = draw(st.sampled_from([3 * 2304, 4 * 2304, 65536]))
    return {"ops": [list(o) for o in ops], "tear": tear, "flip": flip, "cap": cap}


def run_batch(cases: list[dict[str, Any]], tmp: Path) -> list[list[Any]]:
    (tmp / "cases.json").write_text(json.dumps(cases))
    options = VMOptions(timeout_s=240)
    options.mounts = (*options.mounts, (tmp, "/cases"))
    result = run_code(DRIVER, options)
    assert result.returncode == 0, result.output[-3000:]
    runs = [json.loads(line[5:]) for line in result.stdout.splitlines() if line.startswith("CASE ")]
    assert len(runs) == len(cases), result.output[-3000:]
    return runs


def check_state(s: dict[str, Any], readings: dict[int, str], bundles: dict[tuple[int, int], str]) -> None:
    pend = [p[0] for p in s["pending"]]
    assert pend == sorted(set(pend)), s
    for seq, h in s["pending"]:
        assert readings.get(seq) == h, (seq, s)
    last = -1
    for first, end, h in s["bundles"]:
        assert first > last and end >= first, s
        last = end
        assert bundles.get((first, end)) == h, ("bundle bytes differ", first, end, s)
    if pend and s["bundles"]:
        assert pend[0] > s["bundles"][-1][1], s


def check_run(case: dict[str, Any], events: list[list[Any]]) -> None:
    readings: dict[int, str] = {}
    bundles: dict[tuple[int, int], str] = {}
    acked_through = -1
    reported = 0
    chain = "00" * 16
    last_seq = -1
    for ev in events:
        kind = ev[0]
        if kind == "r":
            assert ev[1] > last_seq, ("seq not increasing", ev)
            last_seq = ev[1]
            readings[ev[1]] = ev[2]
        elif kind == "b":
            bundles[(ev[1], ev[2])] = ev[3]
            chain = ev[3]
            reported += ev[4]
        elif kind == "a":
            acked_through = max(acked_through, ev[1])
        elif kind in ("boot", "end"):
            s = ev[1]
            check_state(s, readings, bundles)
            assert s["chain"] == chain, (s, chain)
            assert s["max_seq"] >= last_seq
            # every reading committed is pending, in a live bundle, acked, or counted as dropped
            live = {p[0] for p in s["pending"]}
            for first, end, _ in s["bundles"]:
                live.update(range(first, end + 1))
            acked = {
                q
                for (first, end) in bundles
                if end <= acked_through
                for q in range(first, end + 1)
                if q in readings
            }
            missing = [q for q in readings if q not in live and q not in acked]
            counted = reported + s["dropped"]
            # (a reading evicted while the bundle that holds it is appended is counted although the bundle
            # keeps it: the count may exceed what is missing, never fall short of it)
            assert len(missing) <= counted, (len(missing), counted, s)
            if case["cap"] == 65536:
                assert not missing and counted == 0, (missing, s)
        elif kind == "flipped":
            first, again = ev[1], ev[2]
            assert first == again, "recovery of a damaged log is not stable across boots"
            check_state(first, readings, bundles)


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: a VM pass per try; the
    # failing batch and each case's events are printed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(case(), min_size=25, max_size=25))
def test_random_operations_power_cuts_and_flipped_bytes(
    tmp_path_factory: pytest.TempPathFactory, cases: list[dict[str, Any]]
) -> None:
    tmp = tmp_path_factory.mktemp("outbox_cases")
    for c, events in zip(cases, run_batch(cases, tmp), strict=True):
        check_run(c, events)


def test_seeded_long_runs_with_a_power_cut_each(tmp_path: Path) -> None:
    """Longer runs than Hypothesis makes by itself: 30 cases of 80 operations, each torn once at a random
    byte, most in an outbox small enough to evict; the run must show cuts, evictions and flips happening."""
    rng = random.Random(20240611)
    cases = []
    for _ in range(30):
        ops: list[list[Any]] = []
        for _ in range(80):
            r = rng.random()
            if r < 0.45:
                ops.append(["r", rng.randint(1, 16), rng.randint(0, 2)])
            elif r < 0.75:
                ops.append(["b", rng.randint(4, 16), rng.randint(200, 1800)])
            elif r < 0.93:
                ops.append(["a", rng.randint(0, 3)] if rng.random() < 0.5 else ["o"])
            else:
                ops.append(["o"])
        cases.append(
            {
                "ops": ops,
                "tear": [rng.randrange(len(ops)), rng.randint(0, 2000)],
                "flip": [rng.randint(0, 9), rng.randint(0, 1 << 16), rng.randint(1, 255)]
                if rng.random() < 0.3
                else None,
                "cap": rng.choice([3 * 2304, 4 * 2304, 65536]),
            }
        )
    runs = run_batch(cases, tmp_path)
    for c, events in zip(cases, runs, strict=True):
        check_run(c, events)
    cuts = sum(1 for r in runs for e in r if e[0] == "cut")
    evicting = sum(1 for r in runs if any(e[0] in ("boot", "end") and e[1]["dropped"] for e in r))
    flipped = sum(1 for r in runs for e in r if e[0] == "flipped")
    assert cuts >= 15 and evicting >= 5 and flipped >= 5, (cuts, evicting, flipped)


def test_bench_amplification_and_heap_meet_their_targets() -> None:
    result = run_script(BENCH, VMOptions(timeout_s=300), ["amp", "512"])
    assert result.returncode == 0, result.output
    amp = json.loads(result.stdout.strip().splitlines()[-1])
    assert amp["readings_per_bundle"] == 16 and amp["bundles_acked"] == 32
    assert amp["flash_write_amplification"] <= 2.5, amp
    result = run_script(BENCH, VMOptions.board(timeout_s=300), ["heap", str(int(amp["mean_bundle_bytes"]))])
    assert result.returncode == 0, result.output
    heap = json.loads(result.stdout.strip().splitlines()[-1])
    assert heap["outbox_peak_heap_bytes"] < 8000, heap
