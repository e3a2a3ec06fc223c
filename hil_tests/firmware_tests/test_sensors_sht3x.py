# The SHT3x driver (firmware/pinseal/sensors/sht3x.py) against the emulated chip (the Wokwi chip
# hil_tests/chips/sht3x/ in the vboard's Chips-API host).
import asyncio
import time

import test_sensors_support as s
from pinseal.sensors import sht3x

# 16-bit signals: 175/65535 = 0.0027 degC and 100/65535 = 0.0015 %RH per count, outputs in 0.01: within 1.
TOL = 1


def test_crc_of_the_datasheet_example():
    assert sht3x.crc8(b"\xbe\xef") == 0x92
    assert sht3x.crc8(bytearray(b"\x00\xbe\xef"), 1) == 0x92


def test_scripted_values_come_back_through_the_driver():
    chip = sht3x.SHT3x(s.i2c())
    for t, h in ((21.5, 45.0), (-39.99, 0.0), (124.5, 100.0), (0.0, 33.33)):
        s.set_sensors(sht3x={"t": t, "h": h, "faults": []})
        got_t, got_h = chip.measure()
        assert abs(got_t - round(t * 100)) <= TOL, (got_t, t)
        assert abs(got_h - round(h * 100)) <= TOL, (got_h, h)


async def test_async_read_and_records():
    s.set_sensors(sht3x={"t": 22.22, "h": 55.55, "faults": []})
    recs = sht3x.records(await sht3x.SHT3x(s.i2c()).read())
    assert recs[0][:2] == ("t", "Cel") and recs[0][2][0] == -2 and abs(recs[0][2][1] - 2222) <= TOL
    assert recs[1][:2] == ("h", "%RH") and abs(recs[1][2][1] - 5555) <= TOL


def test_reading_too_early_is_not_acknowledged():
    # without clock stretching the chip NACKs a read before the measurement is done (datasheet 4.3)
    s.set_sensors(sht3x={"faults": []})
    chip = sht3x.SHT3x(s.i2c())
    chip.start()
    s.expect_oserror(chip.finish, s.nack_errno())
    s.expect_oserror(chip.start, s.nack_errno())  # commands are not acknowledged while it measures
    time.sleep_ms(sht3x.WAIT_MS)
    chip.finish()


def test_crc_error_raises_eio():
    s.set_sensors(sht3x={"faults": ["crc"]})
    s.expect_oserror(sht3x.SHT3x(s.i2c()).measure, "EIO")
    s.set_sensors(sht3x={"faults": []})


def test_missing_nack_and_stuck():
    for fault, name in (("missing", s.nack_errno()), ("nack", s.nack_errno()), ("stuck", "ETIMEDOUT")):
        s.set_sensors(sht3x={"faults": [fault]})
        s.expect_oserror(sht3x.SHT3x(s.i2c()).measure, name)
    s.set_sensors(sht3x={"faults": []})
    sht3x.SHT3x(s.i2c()).measure()


async def test_heap_of_one_read():
    import vboard_ram

    s.set_sensors(sht3x={"t": 21.5, "h": 45, "faults": []})
    chip = sht3x.SHT3x(s.i2c())
    await asyncio.sleep_ms(0)
    base = vboard_ram.reset_peak()
    await asyncio.create_task(chip.read())
    print("FIGURE sht3x.read peak_heap_bytes=%d" % (vboard_ram.peak() - base))
