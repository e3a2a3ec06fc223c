# Sealing and ack verification on a real MicroPython port (make bench-silicon, pinseal_bench.silicon):
# QEMU's MPS2-AN385 under -icount shift=0 (time.ticks_us() = instructions / 1000) or rp2040js (ticks_us =
# a real Pico's microseconds at 125 MHz). Both signers run in one session on the same bytes: the firmware's
# pure-Python one (pinseal.crypto.ed25519) and, where the image has it, the native module's
# (pinseal.crypto.ed25519_native); on request the naive RFC 8032 signer too. The gateway's ack comes from the
# host's codec (bench_args.json beside this file), verified by pinseal.wire.ack as the firmware verifies it.
#
# Modes (bench_args.json "mode"):
#   timing  prints "BENCH <name> <ticks_us>" per measurement (the median of "reps" runs), then "BENCH done"
#   heap    runs "rounds" one-reading seals, each followed by an ack verification, with the chosen path
#           ("path": pure or native), then prints "BENCH heap_ok <rounds>" (MemoryError ends it early:
#           "BENCH heap_memoryerror <round>")
import asyncio
import gc
import json
import time

from benchutil import median
from pinseal.crypto import backend
from pinseal.identity import key_id
from pinseal.wire import ack, bundle

with open("bench_args.json") as f:  # mpremote mount makes the staged folder the working directory
    ARGS = json.load(f)
SEED = bytes(range(32))
PREV = bytes(range(16))
STATUS = (3912, -67, 86400, 0, 0)


def reading(i):
    # The drivers' fixed-point integers, as seal_bench.py (the VM benchmark) seals them.
    t = 1767225600 + 60 * i
    return (t, (("t", "Cel", (-2, 2150 + i)), ("h", "%RH", (-2, 4512 - i)), ("p", "Pa", 101325 + i)))


READINGS_1 = [reading(0)]
READINGS_16 = [reading(i) for i in range(16)]


def implementations():
    from pinseal.crypto import ed25519 as pure

    found = {"pure": pure}
    try:
        from pinseal.crypto import ed25519_native as native

        found["native"] = native
    except ImportError:
        pass
    return found


def use(impl):
    """Route the firmware's crypto (cose.verify imports backend when it runs) to one implementation."""
    backend.SigningKey = impl.SigningKey
    backend.verify = impl.verify
    backend.verify_async = impl.verify_async
    impl.use_comb(ARGS.get("comb_subcombs", 4))  # the board profile's table size (its RAM decides)


async def ticks_of(fn, *args):
    gc.collect()
    t0 = time.ticks_us()
    await fn(*args)
    return time.ticks_diff(time.ticks_us(), t0)


async def timing():
    reps = ARGS.get("reps", 3)
    gw_pk = bytes.fromhex(ARGS["gateway_public_key"])
    gw_kid = key_id(gw_pk)
    acks = [bytes.fromhex(a) for a in ARGS["acks"]]
    for name, impl in implementations().items():
        use(impl)
        key = await impl.SigningKey.from_seed_async(SEED)
        kid = key_id(key.public_key)
        assert kid.hex() == ARGS["device_key_id"], "device key id differs from the host's"
        for label, readings in (("seal1", READINGS_1), ("seal16", READINGS_16)):
            runs = []
            for _ in range(reps):
                runs.append(await ticks_of(bundle.seal, key, kid, 3, 1000, PREV, STATUS, 1, readings))
            print("BENCH", name + "_" + label, median(runs))
        runs = []
        for i in range(reps):
            runs.append(await ticks_of(ack.verify, acks[i % len(acks)], gw_pk, kid, gw_kid))
        print("BENCH", name + "_verify", median(runs))
        del key
        gc.collect()
    if ARGS.get("naive"):
        import naive_ed25519 as naive  # the straightforward RFC 8032 signer the VM benchmark compares with

        body = bundle.payload(3, 1000, PREV, STATUS, 1, READINGS_1)
        from pinseal.wire import cose

        to_sign = cose.sig_structure(cose.protected_kid(bytes.fromhex(ARGS["device_key_id"])), body)
        gc.collect()
        t0 = time.ticks_us()
        naive.sign(SEED, to_sign)
        print("BENCH naive_sign", time.ticks_diff(time.ticks_us(), t0))
    print("BENCH done")


async def heap():
    impl = implementations()[ARGS["path"]]
    use(impl)
    gw_pk = bytes.fromhex(ARGS["gateway_public_key"])
    gw_kid = key_id(gw_pk)
    acks = [bytes.fromhex(a) for a in ARGS["acks"]]
    done = 0
    try:
        key = await impl.SigningKey.from_seed_async(SEED)
        kid = key_id(key.public_key)
        for i in range(ARGS["rounds"]):
            await bundle.seal(key, kid, 3, 1000 + i, PREV, STATUS, 1, READINGS_1)
            await ack.verify(acks[i % len(acks)], gw_pk, kid, gw_kid)
            done += 1
    except MemoryError:
        print("BENCH heap_memoryerror", done)
        return
    print("BENCH heap_ok", done)


asyncio.run(timing() if ARGS["mode"] == "timing" else heap())
