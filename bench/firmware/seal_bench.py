# Sealing bundles inside the MicroPython VM, for `make bench-firmware` (pinseal_bench.firmware).
# Prints one JSON line. Two modes, run as two VMs by the host wrapper:
#
#   timing  (plain VM)  seal a one-reading bundle with the firmware's yielding signer vs the naive
#                       RFC 8032 signer on the same Sig_structure bytes, interleaved; 16-reading seals;
#                       the longest slice of signer computation between two yields (host clock); the
#                       one-reading seal again with each comb size (profile ram.comb_subcombs: 1, 2, 4).
#   heap    (board RAM model on, --ram): live heap at every yield point of a seal, collected there,
#                       against the live heap before it; bytes the key and the comb table hold (the
#                       table as loaded from flash: from ROMFS it takes none).
#
# argv: MODE [REPS]
import asyncio
import gc
import json
import sys

import hostclock
from benchutil import median
from pinseal.crypto import ed25519
from pinseal.identity import key_id
from pinseal.wire import bundle, cose

MODE = sys.argv[1]
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 15
WARMUP = 3
SEED = bytes(range(32))
now = hostclock.now_ms


def reading(i):
    # The drivers' fixed-point integers: 0.01 degC, 0.01 %RH, Pa; one reading per minute.
    t = 1767225600 + 60 * i
    return (t, (("t", "Cel", (-2, 2150 + i)), ("h", "%RH", (-2, 4512 - i)), ("p", "Pa", 101325 + i)))


READINGS_1 = [reading(0)]
READINGS_16 = [reading(i) for i in range(16)]
STATUS = (3912, -67, 86400, 0, 0)
PREV = bytes(range(16))


async def seal(key, kid, readings):
    return await bundle.seal(key, kid, 3, 1000, PREV, STATUS, 1, readings)


async def settle():
    """Return to JS so that the VM really collects (it does only then), before each timed run."""
    gc.collect()
    await asyncio.sleep_ms(1)


def slices_of(gen):
    """Durations (ms) of the stretches of computation between the generator's yields."""
    slices = []
    t = now()
    try:
        while True:
            next(gen)
            slices.append(now() - t)
            t = now()
    except StopIteration:
        slices.append(now() - t)
    return slices


async def timing(key, kid):
    import naive_ed25519 as naive  # only here: its code would count against the board's RAM in heap mode

    one = await seal(key, kid, READINGS_1)
    sixteen = await seal(key, kid, READINGS_16)
    # The exact bytes the device signs for the one-reading bundle: both signers get them.
    body = bundle.payload(3, 1000, PREV, STATUS, 1, READINGS_1)
    to_sign = cose.sig_structure(cose.protected_kid(kid), body)
    assert naive.sign(SEED, to_sign) == one[-64:], "naive and firmware signatures differ"

    ours, theirs, ours16, max_slices = [], [], [], []
    by_comb = {1: [], 2: [], 4: []}
    for i in range(WARMUP + REPS):
        await settle()
        t = now()
        naive.sign(SEED, to_sign)
        t_naive = now() - t
        await settle()
        t = now()
        await seal(key, kid, READINGS_1)
        t_ours = now() - t
        await settle()
        t = now()
        await seal(key, kid, READINGS_16)
        t_16 = now() - t
        await settle()
        longest = max(slices_of(key.sign_steps(to_sign)))
        comb_ms = {}
        sizes = list(by_comb)
        for j in range(len(sizes)):  # the order turns each round: no size always runs after a load
            subs = sizes[(i + j) % len(sizes)]
            ed25519.use_comb(subs)
            await seal(key, kid, READINGS_1)  # loads this size's table, outside the timing
            best = None
            for _ in range(3):  # the least of three: one seal is ~5 ms, shorter than a host hiccup
                await settle()
                t = now()
                await seal(key, kid, READINGS_1)
                t = now() - t
                best = t if best is None or t < best else best
            comb_ms[subs] = best
        ed25519.use_comb(4)
        await seal(key, kid, READINGS_1)  # the full table loaded again before the next round's timings
        if i >= WARMUP:
            theirs.append(t_naive)
            ours.append(t_ours)
            ours16.append(t_16)
            max_slices.append(longest)
            for subs, ms in comb_ms.items():
                by_comb[subs].append(ms)
    sign_ms = median(ours)
    comb = {}
    for subs, times in by_comb.items():
        comb["sign_ms_comb%d" % subs] = round(median(times), 3)
        comb["speedup_comb%d" % subs] = round(median(theirs) / median(times), 2)
    result = {
        "sign_ms": round(sign_ms, 3),
        "naive_sign_ms": round(median(theirs), 3),
        "speedup": round(median(theirs) / sign_ms, 2),
        "seal_16_ms": round(median(ours16), 3),
        "per_reading_ms_at_16": round(median(ours16) / 16, 3),
        # The longest slice of one signature, median over the signatures: what the code does. The worst
        # single slice over all runs is reported too; on a shared 2-core host it mostly measures the host.
        "max_slice_ms": round(median(max_slices), 3),
        "worst_slice_ms": round(max(max_slices), 3),
        "sig_structure_bytes": len(to_sign),
        "bytes_one_reading": len(one),
        "bytes_per_extra_reading": round((len(sixteen) - len(one)) / 15, 2),
        "bytes_sixteen_readings": len(sixteen),
        "reps": REPS,
    }
    result.update(comb)
    return result


async def heap(key_seed):
    import vboard_ram

    from pinseal.crypto import comb_table, comb_table_2, comb_table_4

    TABLE = comb_table.TABLE + comb_table_2.TABLE + comb_table_4.TABLE  # all 4 sub-combs, as from ROMFS

    await settle()
    before = vboard_ram.live()
    key = await ed25519.SigningKey.from_seed_async(key_seed)
    kid = key_id(key.public_key)
    await settle()
    key_bytes = vboard_ram.live() - before
    # The comb table is a constant: no heap from ROMFS; loaded from flash it is one bytes object on the
    # heap, measured here as such a copy.
    before = vboard_ram.live()
    table = bytearray(TABLE)  # a copy (bytes(TABLE) would be TABLE itself)
    await settle()
    table_bytes = vboard_ram.live() - before
    del table
    peaks = []
    for _ in range(REPS):
        await settle()
        base = vboard_ram.reset_peak()
        await asyncio.create_task(seal(key, kid, READINGS_1))
        peaks.append(vboard_ram.peak() - base)
    peaks16 = []
    for _ in range(3):
        await settle()
        base = vboard_ram.reset_peak()
        await asyncio.create_task(seal(key, kid, READINGS_16))
        peaks16.append(vboard_ram.peak() - base)
    return {
        "board_ram_bytes": vboard_ram.ram(),
        "peak_heap_bytes": max(peaks),
        "median_peak_heap_bytes": median(peaks),
        "peak_heap_bytes_at_16": max(peaks16),
        "table_bytes": key_bytes + table_bytes,
        "steps_measured": vboard_ram.steps(),
    }


async def main():
    if MODE == "timing":
        key = await ed25519.SigningKey.from_seed_async(SEED)
        result = await timing(key, key_id(key.public_key))
    elif MODE == "heap":
        result = await heap(SEED)
    else:
        raise SystemExit("mode is timing or heap")
    print(json.dumps(result))


await asyncio.create_task(main())  # noqa: F704 (run_vm.mjs runs scripts with runPythonAsync)
