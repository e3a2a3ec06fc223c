# The flash outbox's write amplification and heap, inside the MicroPython VM (run in board mode, --ram):
#   flash_write_amplification = bytes the outbox writes to flash (records, framing, head records, markers,
#                               repair copies) / bytes of the bundles acked, at N = 16 readings a bundle
# Readings are encoded as the app stores them (pinseal.reading) and bundles are really sealed (Ed25519), so
# the sizes are a board's. Acks come after every bundle but with a backlog of a few bundles at times (an
# outage), as the send loop would see. Prints one JSON line. Two modes, two VMs:
#
#   amp  [READINGS]        (plain VM) the amplification figures, real readings and seals
#   heap [BUNDLE_BYTES]    (board mode, --ram) the outbox's peak live heap: fill to capacity with bundles of
#                          that size (no acks, so it evicts), reopen (boot recovery), read every bundle back;
#                          imports only the outbox, so the figure is its own, not the signer's
import asyncio
import json
import os
import sys

from pinseal.outbox import Outbox

MODE = sys.argv[1] if len(sys.argv) > 1 else "amp"
ARG = int(sys.argv[2]) if len(sys.argv) > 2 else 0
N = 16
READINGS = ARG or 1024
CAPACITY = 64 * 1024
STATUS = (3912, -67, 86400, 0, 0)


def records(i):
    # the drivers' fixed-point integers: 0.01 degC, 0.01 %RH, Pa
    t = ("t", "Cel", (-2, 2150 + i % 50))
    return (t, ("h", "%RH", (-2, 4512 - i % 40)), ("p", "Pa", 101325 + i % 99))


def encode(boot, time_s, i):
    try:
        from pinseal import reading
    except ImportError:  # the app's reading encoding is not there: a SenML pack of the one reading
        from pinseal.wire.cbor import Encoder
        from pinseal.wire import senml

        enc = Encoder(64)
        senml.write_pack(enc, [(time_s, records(i))])
        return enc.value()
    return reading.encode(boot, time_s, 1, records(i))


def wipe(path):
    try:
        for name in os.listdir(path):
            os.remove(path + "/" + name)
    except OSError:
        pass


async def amplification(key, kid):
    from pinseal.counter import Counters
    from pinseal.wire import bundle

    wipe("/bench_ob")
    counters = Counters.open("/bench_counter.bin")
    ob = Outbox("/bench_ob", CAPACITY)
    bundle_bytes = 0
    reading_bytes = 0
    sealed = 0
    for i in range(READINGS):
        seq = counters.next_seq()
        data = encode(counters.boot, 1767225600 + 60 * i, i)
        reading_bytes += len(data)
        ob.add_reading(seq, data)
        if ob.pending_count() == N:
            pending = ob.pending_readings()
            readings = [(1767225600 + 60 * (i - N + 1 + k), records(i - N + 1 + k)) for k in range(N)]
            dropped = ob.dropped()
            status = (STATUS[0], STATUS[1], STATUS[2], dropped, STATUS[4])
            sealed_bytes = await bundle.seal(
                key, kid, counters.boot, pending[0][0], ob.chain_head(), status, 1, readings
            )
            ob.add_bundle(pending[0][0], pending[-1][0], sealed_bytes, dropped)
            bundle_bytes += len(sealed_bytes)
            sealed += 1
            # acks: usually at once, every 8th bundle after a backlog of 4 (a short outage)
            if sealed % 8 < 4:
                continue
            ob.ack(pending[-1][0])
        await asyncio.sleep_ms(0)
    # drain what is left, as the send loop would once the gateway is back
    for _first, last, _data in ob.pending_bundles():
        ob.ack(last)
    st = ob.stats()
    ob.close()
    return {
        "readings": READINGS,
        "readings_per_bundle": N,
        "bundles_acked": st["acked_bundles"],
        "bundle_bytes_acked": st["acked_bytes"],
        "mean_bundle_bytes": round(bundle_bytes / sealed, 1),
        "mean_reading_bytes": round(reading_bytes / READINGS, 1),
        "outbox_bytes_written": st["bytes_written"],
        "outbox_records_written": st["records_written"],
        "retired_segments": st["retired_segments"],
        "counter_writes": counters.writes,
        "flash_write_amplification": round(st["bytes_written"] / st["acked_bytes"], 3),
        "outbox_bytes_per_reading": round(st["bytes_written"] / READINGS, 1),
    }


async def heap(bundle_size):
    # the outbox's own heap: its index and one record at a time
    import vboard_ram

    wipe("/bench_heap")
    data = bytes(40)  # about a reading's size
    sample_bundle = bytes(i & 0xFF for i in range(bundle_size))

    async def fill_and_reopen():
        ob = Outbox("/bench_heap", CAPACITY)
        seq = 0
        for b in range(120):  # no acks: fills the capacity, evicts, keeps ~60 bundles indexed
            for _ in range(N):
                ob.add_reading(seq, data)
                seq += 1
            pending = ob.pending_readings()
            ob.add_bundle(pending[0][0], pending[-1][0], sample_bundle)
            await asyncio.sleep_ms(0)
        ob.close()
        ob = Outbox("/bench_heap", CAPACITY)  # boot recovery over a full outbox
        await asyncio.sleep_ms(0)
        n = 0
        for _first, _last, got in ob.pending_bundles():
            n += len(got)
            await asyncio.sleep_ms(0)
        ob.close()
        return n

    for _ in range(3):
        await asyncio.sleep_ms(0)
    base = vboard_ram.reset_peak()
    n = await asyncio.create_task(fill_and_reopen())
    return {
        "outbox_peak_heap_bytes": vboard_ram.peak() - base,
        "outbox_capacity_bytes": CAPACITY,
        "heap_bundle_bytes": bundle_size,
        "bytes_read_back": n,
    }


async def main():
    if MODE == "heap":
        print(json.dumps(await heap(ARG or 1000)))
        return
    from pinseal.crypto import ed25519
    from pinseal.identity import key_id

    key = await ed25519.SigningKey.from_seed_async(bytes(range(32)))
    print(json.dumps(await amplification(key, key_id(key.public_key))))


await asyncio.create_task(main())  # noqa: F704 (run_vm.mjs runs scripts with runPythonAsync)
