# The VM itself: that what firmware relies on is there (small ints as on a board, asyncio).
import sys


def test_small_ints_are_31_bit_as_on_esp32_and_rp2():
    assert sys.maxsize == 2**31 - 1


async def test_asyncio_runs():
    import asyncio

    await asyncio.sleep_ms(1)


def test_os_urandom_is_provided_by_the_virtual_board():
    import os

    a, b = os.urandom(32), os.urandom(32)
    assert len(a) == 32 and a != b
