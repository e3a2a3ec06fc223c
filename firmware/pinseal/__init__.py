# pinseal: the firmware's package. forget() is here because every module that sets up and then steps
# aside (config, the board profile, the key files, outbox recovery) needs it, and this module is always
# loaded.
import sys


def forget(name):
    """Drop a setup-only module once it has been used: its code, constants and dict then go at the next
    collection (nothing else may hold one of its functions). Loaded as .mpy files from flash (a stock
    image, no ROMFS) a module's code lives in the heap; from ROMFS it costs nothing either way. Importing it
    again later loads it again."""
    sys.modules.pop(name, None)
    package, _, attr = name.rpartition(".")
    parent = sys.modules.get(package)
    if parent is not None and attr in parent.__dict__:
        delattr(parent, attr)
