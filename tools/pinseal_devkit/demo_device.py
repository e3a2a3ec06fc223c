# The device side of `make run` (until the firmware application exists): the firmware's own modules
# create a key from the board's random source, seal readings into bundles and print each bundle as a
# JSON line for the host to verify. Runs inside the MicroPython VM.
#
#   argv: COUNT (bundles, 0 = forever) PER_BUNDLE (readings per signature) INTERVAL_MS
import asyncio
import json
import os
import sys
import time

import hostclock
from pinseal.crypto.ed25519 import SigningKey
from pinseal.identity import key_id
from pinseal.wire import bundle

COUNT = int(sys.argv[1])
PER_BUNDLE = int(sys.argv[2])
INTERVAL_MS = int(sys.argv[3])
TIME_SOURCE_NTP = 1  # the VM's clock is the host's, as a board's is after NTP


def simulated_reading(i, now_s):
    # Integer fixed-point values, as the BME280 driver outputs them: 0.01 degC, 0.01 %RH, Pa.
    temp_centi = 2150 + (i * 37) % 200 - 100
    hum_centi = 4500 + (i * 53) % 600 - 300
    pressure_pa = 101325 + (i * 11) % 80 - 40
    return (now_s, (("t", "Cel", (-2, temp_centi)), ("h", "%RH", (-2, hum_centi)), ("p", "Pa", pressure_pa)))


async def main():
    seed = os.urandom(32)  # created here, never printed or sent
    key = await SigningKey.from_seed_async(seed)
    kid = key_id(key.public_key)
    print(json.dumps({"event": "identity", "public_key": key.public_key.hex(), "key_id": kid.hex()}))
    prev = bytes(16)
    seq = 0
    sealed = 0
    t0 = time.ticks_ms()
    while COUNT == 0 or sealed < COUNT:
        readings = []
        for _ in range(PER_BUNDLE):
            readings.append(simulated_reading(seq + len(readings), int(time.time())))
            await asyncio.sleep_ms(INTERVAL_MS)
        uptime_s = time.ticks_diff(time.ticks_ms(), t0) // 1000
        status = (0, 0, uptime_s, 0, 0)
        started = hostclock.now_ms()
        bundle_bytes = await bundle.seal(key, kid, 1, seq, prev, status, TIME_SOURCE_NTP, readings)
        seal_ms = hostclock.now_ms() - started
        print(json.dumps({"event": "bundle", "bundle": bundle_bytes.hex(), "seal_ms": seal_ms}))
        prev = bundle.chain_link(bundle_bytes)
        seq += len(readings)
        sealed += 1


await asyncio.create_task(main())  # noqa: F704 (run_vm.mjs runs scripts with runPythonAsync)
