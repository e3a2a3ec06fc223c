# The BME280 driver (firmware/pinseal/sensors/bme280.py) against the emulated chip (the Wokwi chip
# hil_tests/chips/bme280/ in the vboard's Chips-API host) on the board's I2C bus: scripted values come back
# through the driver's own compensation within the chip's quantisation, and each scripted fault reaches the
# driver as the board's OSError.
import asyncio

import test_sensors_support as s
from pinseal.sensors import bme280

# Quantisation at x1 oversampling (16-bit ADC, datasheet tables 4, 5): temperature 0.005 degC per ADC step and
# 0.01 degC output -> within 0.01 degC; pressure 2.62 Pa per step -> within 2 Pa (1/256 Pa output); humidity
# 16-bit ADC, 1/1024 %RH output -> within 6/1024 %RH (see chips/bme280.test.mjs).
TOL_T = 1
TOL_P_Q8 = 2 * 256
TOL_H_Q10 = 6


def _check(values, t, p, h):
    got_t, got_p, got_h = values
    assert abs(got_t - round(t * 100)) <= TOL_T, (got_t, t)
    assert abs(got_p - p * 256) <= TOL_P_Q8, (got_p / 256, p)
    assert abs(got_h - h * 1024) <= TOL_H_Q10, (got_h / 1024, h)


def test_scripted_values_come_back_through_the_driver():
    chip = bme280.BME280(s.i2c())
    for t, p, h in (
        (23.45, 98765.4, 56.78),
        (-12.3, 70000.0, 5.5),
        (40.0, 108000.0, 95.0),
        (0.0, 101325.0, 50.0),
    ):
        s.set_sensors(bme280={"t": t, "p": p, "h": h, "faults": []})
        _check(chip.measure(), t, p, h)


def test_records_in_protocol_units():
    s.set_sensors(bme280={"t": 21.5, "p": 101325.0, "h": 45.0, "faults": []})
    recs = bme280.records(bme280.BME280(s.i2c()).measure())
    assert recs[0][:2] == ("t", "Cel") and abs(recs[0][2][1] - 2150) <= TOL_T and recs[0][2][0] == -2
    assert recs[1][:2] == ("h", "%RH") and abs(recs[1][2][1] - 4500) <= 1
    assert recs[2][:2] == ("p", "Pa") and abs(recs[2][2] - 101325) <= 2


async def test_async_read_and_values_over_time():
    # 0.01 degC per second of board uptime: the value read matches the script at the time of the conversion
    s.set_sensors(bme280={"t": [[0, 10.0], [10000, 110.0 - 25]], "p": 100000, "h": 40, "faults": []})
    chip = bme280.BME280(s.i2c())
    expected = s.sensors({"get": True})["bme280"]
    values = await chip.read()
    _check(values, expected["t"], 100000, 40)


def test_sine_values():
    s.set_sensors(
        bme280={"t": {"base": 21, "amplitude": 2, "period_s": 3600}, "p": 100000, "h": 40, "faults": []}
    )
    chip = bme280.BME280(s.i2c())
    values = chip.measure()
    expected = s.sensors({"get": True})["bme280"]["t"]
    assert abs(values[0] - round(expected * 100)) <= TOL_T + 1


def test_missing_chip_raises_the_boards_nack_error():
    s.set_sensors(bme280={"faults": ["missing"]})
    s.expect_oserror(lambda: bme280.BME280(s.i2c()), s.nack_errno())
    assert 0x76 not in s.i2c().scan()


def test_nack_during_measurement():
    s.set_sensors(bme280={"faults": []})
    chip = bme280.BME280(s.i2c())
    s.set_sensors(bme280={"faults": ["nack"]})
    s.expect_oserror(chip.measure, s.nack_errno())
    s.set_sensors(bme280={"faults": []})
    chip.measure()  # recovers when the fault ends


def test_stuck_bus_times_out():
    s.set_sensors(bme280={"faults": ["stuck"]})
    s.expect_oserror(lambda: bme280.BME280(s.i2c()), "ETIMEDOUT")
    assert s.i2c().scan() == []
    s.set_sensors(bme280={"faults": []})


def test_fault_window_over_uptime():
    now = s.sensors({"get": True})["uptime_s"]
    s.set_sensors(bme280={"faults": [{"kind": "missing", "from_s": now + 3600}]})
    bme280.BME280(s.i2c()).measure()  # the window has not started
    s.set_sensors(bme280={"faults": [{"kind": "missing", "from_s": 0, "until_s": now + 3600}]})
    s.expect_oserror(lambda: bme280.BME280(s.i2c()), s.nack_errno())
    s.set_sensors(bme280={"faults": []})


async def test_heap_and_time_of_one_read():
    import hostclock
    import vboard_ram

    s.set_sensors(bme280={"t": 21.5, "p": 101325, "h": 45, "faults": []})
    chip = bme280.BME280(s.i2c())
    await asyncio.sleep_ms(0)
    base = vboard_ram.reset_peak()
    t0 = hostclock.now_ms()
    await asyncio.create_task(chip.read())
    elapsed = hostclock.now_ms() - t0
    print("FIGURE bme280.read peak_heap_bytes=%d elapsed_ms=%.1f" % (vboard_ram.peak() - base, elapsed))
    t0 = hostclock.now_ms()
    for _ in range(20):
        chip.finish()
    print("FIGURE bme280.finish_cpu_ms=%.2f" % ((hostclock.now_ms() - t0) / 20))
