# pinseal firmware: sense, seal, store, send. See pinseal/entry.py for the boot sequence.
import asyncio

from pinseal import entry, version

print(version.banner())
cfg = entry.prepare()
if cfg is not None:
    asyncio.run(entry.main(cfg))
