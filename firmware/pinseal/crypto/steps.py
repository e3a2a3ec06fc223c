# Long computations (hashing, signing, verifying) are written once, as generators that yield at
# checkpoints a fraction of a millisecond apart. These two drivers give them their synchronous and
# their asyncio form, so that a board's MQTT keepalives and BLE keep running during a signature.


def run(gen):
    """Drive a step generator to its end and return its value."""
    try:
        while True:
            next(gen)
    except StopIteration as e:
        return e.value


async def run_async(gen):
    """Drive a step generator, letting the asyncio loop run other tasks at every checkpoint."""
    import asyncio

    try:
        while True:
            next(gen)
            await asyncio.sleep_ms(0)
    except StopIteration as e:
        return e.value
