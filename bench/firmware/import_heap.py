# Where the firmware's heap goes when its modules are imported: run in the MicroPython VM with the RAM model
# on (run_vm.mjs --ram) by pinseal_bench.import_heap, which mounts the firmware (as .mpy, or .py) and passes
# the modules to import, dependencies first. Each import is followed by a return to JS, where the model
# collects and measures, so a delta is what the module keeps live (its code objects, dict, constants and
# whatever it builds at import time), not the garbage its import made (that is reported as `peak`: the
# highest gc.mem_alloc() seen... in this VM garbage is only collected at a return to JS, so mem_alloc just
# after the import, before that return, holds live + garbage).
# Prints one JSON line: {"modules": [[name, live_delta, import_garbage], ...], "total": live bytes}.
import asyncio
import gc
import json
import sys

import vboard_ram


async def settle():
    # two returns to JS: the first collects, the second measures after the collection
    await asyncio.sleep_ms(0)
    await asyncio.sleep_ms(0)
    return vboard_ram.live()


async def main(names):
    start = await settle()
    last = start
    rows = []
    for name in names:
        before = gc.mem_alloc()
        __import__(name)
        made = gc.mem_alloc() - before
        live = await settle()
        rows.append([name, live - last, made])
        last = live
    print(json.dumps({"modules": rows, "total": last - start}))


await main(sys.argv[1:])  # noqa: F704 (top-level await: run_vm.mjs runs scripts with runPythonAsync)
