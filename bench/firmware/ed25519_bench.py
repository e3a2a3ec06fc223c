# Ed25519 signing inside the MicroPython VM: pinseal.crypto.ed25519 (the yielding signer the firmware
# uses) against the naive RFC 8032 baseline (naive_ed25519.py), on the same message in the same VM.
# Prints one JSON line.
#
#   node hil_tests/vboard/run_vm.mjs --mount firmware:/ --mount bench/firmware:/bench --path /bench \
#       bench/firmware/ed25519_bench.py [MSG_BYTES [REPS]]
#
# The machine is shared and noisy, so every figure is a median over REPS runs, the runs of the
# contenders are interleaved, and garbage is collected (by returning to JS) before each run so that no
# contender pays for another's heap. Slices are the stretches of computation between two yields of
# the signer, the time the asyncio loop would wait for it; live heap figures are taken with the heap
# collected at each yield point.
import asyncio
import gc
import json
import sys

import hostclock
from benchutil import median
import naive_ed25519 as naive
from pinseal.crypto import ed25519

now = hostclock.now_ms
MSG_BYTES = int(sys.argv[1]) if len(sys.argv) > 1 else 180
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 15
WARMUP = 3
SEED = bytes(range(32))
MSG = bytes((i * 7 + 3) & 255 for i in range(MSG_BYTES))


async def collected_alloc(rounds=3):
    """Live heap bytes: the least of a few collections, as a stale root can keep garbage for one."""
    least = None
    for _ in range(rounds):
        gc.collect()
        await asyncio.sleep_ms(1)  # the VM collects only when control returns to JS
        n = gc.mem_alloc()
        least = n if least is None or n < least else least
    return least


async def sign_timed(key, msg):
    """Drive sign_steps as sign_async does; return (signature, slice durations in ms)."""
    gen = key.sign_steps(msg)
    slices = []
    t = now()
    try:
        while True:
            next(gen)
            slices.append(now() - t)
            await asyncio.sleep_ms(0)
            t = now()
    except StopIteration as e:
        slices.append(now() - t)
        return e.value, slices


async def sign_live_heap(key, msg, base):
    """Largest live heap above base at any yield point of one signature (collecting at each)."""
    gen = key.sign_steps(msg)
    peak = 0
    try:
        while True:
            next(gen)
            peak = max(peak, await collected_alloc(2) - base)
    except StopIteration:
        pass
    return peak


async def main():
    from pinseal.crypto import comb_table, comb_table_2, comb_table_4

    TABLE = comb_table.TABLE + comb_table_2.TABLE + comb_table_4.TABLE  # all 4 sub-combs, as from ROMFS

    base = await collected_alloc()
    table = bytearray(TABLE)  # what the constant table costs on the heap loaded from flash (0 from ROMFS)
    table_bytes = await collected_alloc() - base
    del table

    key = ed25519.SigningKey(SEED)
    expected = naive.sign(SEED, MSG)
    assert key.sign(MSG) == expected
    assert naive.secret_to_public(SEED) == key.public_key

    ours_async, ours_sync, theirs, max_slices, n_slices = [], [], [], [], []
    for i in range(WARMUP + REPS):
        await collected_alloc(1)
        t = now()
        sig = naive.sign(SEED, MSG)
        t_naive = now() - t
        assert sig == expected

        await collected_alloc(1)
        t = now()
        sig = await key.sign_async(MSG)
        t_async = now() - t
        assert sig == expected

        await collected_alloc(1)
        t = now()
        sig = key.sign(MSG)
        t_sync = now() - t
        assert sig == expected

        await collected_alloc(1)
        sig, slices = await sign_timed(key, MSG)
        assert sig == expected
        if i >= WARMUP:
            theirs.append(t_naive)
            ours_async.append(t_async)
            ours_sync.append(t_sync)
            max_slices.append(max(slices))
            n_slices.append(len(slices))

    peaks = []
    for _ in range(3):
        base = await collected_alloc()
        peaks.append(await sign_live_heap(key, MSG, base))
    live_peak = median(peaks)

    await collected_alloc()
    t = now()
    ok = ed25519.verify(key.public_key, MSG, expected)
    verify_ms = now() - t
    assert ok

    print(
        json.dumps(
            {
                "msg_bytes": MSG_BYTES,
                "reps": REPS,
                "naive_sign_ms": round(median(theirs), 3),
                "ours_sign_async_ms": round(median(ours_async), 3),
                "ours_sign_sync_ms": round(median(ours_sync), 3),
                "speedup": round(median(theirs) / median(ours_async), 2),
                "speedup_sync": round(median(theirs) / median(ours_sync), 2),
                "max_slice_ms": round(max(max_slices), 3),
                "median_max_slice_ms": round(median(max_slices), 3),
                "slices_per_sign": median(n_slices),
                "table_bytes": table_bytes,
                "live_heap_peak_at_yields_bytes": live_peak,  # median of 3 signatures
                "verify_ms": round(verify_ms, 2),
            }
        )
    )


# As a task, like the firmware's: a top-level await returns to JS at every sleep_ms(0) (~1.3 ms each),
# inside a task the VM's asyncio loop resumes the next ready task directly.
await asyncio.create_task(main())  # noqa: F704 (run_vm.mjs runs scripts with runPythonAsync)
