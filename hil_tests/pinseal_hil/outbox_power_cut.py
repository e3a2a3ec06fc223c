"""The board side of the outbox power-cut tests, one program for every target (the virtual board,
test_outbox_vboard.py; QEMU, test_qemu_board.py): so the same accounting is held on each.

As main.py it opens the real outbox and counters, prints their state at boot ("BOOT {json}": pending
readings, bundles with their chain links, dropped, torn and corrupt records), then writes readings forever,
seals 16 at a time into a bundle (its data carrying the chain head) and acks the oldest bundle when more than
2 wait, printing each step once it returned; the host cuts the power at seeded moments and checks that
every step printed before a cut is found at the next boot, and nothing else."""

from __future__ import annotations

BOARD_MAIN = r"""
import asyncio, hashlib, json
from pinseal.counter import Counters
from pinseal.outbox import Outbox

def link(b):
    return hashlib.sha256(b).digest()[:16].hex()

ob = Outbox("/outbox", 65536)
c = Counters.open("/counter.bin", 8, floor_seq=ob.max_seq() + 1)
print("BOOT " + json.dumps({
    "boot": c.boot,
    "next": c.peek(),
    "pending": [s for s, d in ob.pending_readings() if d == b"v%d" % s],
    "npending": ob.pending_count(),
    "bundles": [[a, b, link(x), x[:16].hex()] for a, b, x in ob.pending_bundles()],
    "chain": ob.chain_head().hex(),
    "dropped": ob.dropped(),
    "torn": ob.torn,
    "corrupt": ob.corrupt,
}))

async def main():
    while True:
        seq = c.next_seq()
        ob.add_reading(seq, b"v%d" % seq)
        print("R", seq)
        if ob.pending_count() >= 16:
            p = ob.pending_readings()
            data = ob.chain_head() + (b"%d-%d;" % (p[0][0], p[-1][0])) * 30
            ob.add_bundle(p[0][0], p[-1][0], data, ob.dropped())
            print("B", p[0][0], p[-1][0], link(data))
        if ob.bundle_count() > 2:
            first, last, _ = ob.oldest_bundle()
            ob.ack(last)
            print("A", last)
        await asyncio.sleep_ms(SLEEP_MS)

asyncio.run(main())
"""


def board_main(sleep_ms: int) -> str:
    """The program, pausing `sleep_ms` between readings (the cadence the target's cuts are seeded against)."""
    return BOARD_MAIN.replace("SLEEP_MS", str(sleep_ms))
