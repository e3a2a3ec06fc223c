# The firmware's version, reported at enrollment, in the device certificate and at every start (main.py).
FIRMWARE = "0.1.0"


def banner():
    # What main.py prints first: which firmware runs on which MicroPython, so a serial log says it.
    import sys

    return "pinseal: firmware %s on MicroPython %d.%d.%d (%s)" % (
        (FIRMWARE,) + tuple(sys.implementation.version[:3]) + (sys.platform,)
    )
