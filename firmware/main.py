# pinseal firmware: sense, seal, store, send. See pinseal/entry.py for the boot sequence.
import asyncio

from pinseal import entry

cfg = entry.prepare()
if cfg is not None:
    asyncio.run(entry.main(cfg))
