# Bosch BME280 (datasheet BST-BME280-DS002) in forced mode on machine.I2C: chip id check, calibration readout,
# one measurement per call, and the datasheet's integer compensation (section 4.2.3):
# BME280_compensate_T_int32, BME280_compensate_P_int64 (64-bit intermediates: MicroPython's big ints, a few
# short-lived objects per reading), BME280_compensate_H_int32.
# Outputs: temperature in 0.01 degC, pressure in 1/256 Pa (unsigned Q24.8), humidity in 1/1024 %RH (Q22.10).
import time

from micropython import const

_CHIP_ID = const(0x60)
_REG_CALIB00 = const(0x88)  # 0x88..0xA1: dig_T1..dig_P9, reserved, dig_H1
_REG_CHIP_ID = const(0xD0)
_REG_RESET = const(0xE0)
_REG_CALIB26 = const(0xE1)  # 0xE1..0xE7: dig_H2..dig_H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)  # press_msb .. hum_lsb
_RESET_WORD = const(0xB6)
_STATUS_MEASURING = const(0x08)
_STATUS_IM_UPDATE = const(0x01)
_MODE_FORCED = const(0x01)
_POLL_MS = const(1)
_POLL_LIMIT = const(20)  # status polls before the chip counts as stuck

ADDRESS = const(0x76)  # SDO to GND; 0x77 with SDO to VDDIO

# What read() returns: (SenML name, unit, decimal exponent of the SenML value) per quantity.
TEMPERATURE_SCALE = "0.01 Cel"
PRESSURE_SCALE = "1/256 Pa"
HUMIDITY_SCALE = "1/1024 %RH"


def _s16(lo, hi):
    v = lo | (hi << 8)
    return v - 65536 if v & 0x8000 else v


def _s8(v):
    return v - 256 if v & 0x80 else v


def _div_trunc(a, b):
    # C's integer division (toward zero); Python's // floors
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _oversampling(osrs):
    return (0, 1, 2, 4, 8, 16)[osrs]


class BME280:
    def __init__(self, i2c, address=ADDRESS, osrs_t=1, osrs_p=1, osrs_h=1):
        """Checks the chip id, resets the chip and reads its calibration. osrs_*: 1..5 = x1..x16 oversampling
        (x1 each is Bosch's "weather monitoring" setting)."""
        for osrs in (osrs_t, osrs_p, osrs_h):
            if not 1 <= osrs <= 5:
                raise ValueError("BME280: oversampling setting is 1..5")
        self._i2c = i2c
        self._address = address
        self._byte = bytearray(1)
        self._data = bytearray(8)
        self._ctrl_hum = osrs_h
        self._ctrl_meas = (osrs_t << 5) | (osrs_p << 2) | _MODE_FORCED
        # Maximum measurement time (datasheet 9.1): 1.25 + 2.3 T + (2.3 P + 0.575) + (2.3 H + 0.575) ms
        us = 1250 + 2300 * (_oversampling(osrs_t) + _oversampling(osrs_p) + _oversampling(osrs_h)) + 1150
        self.wait_ms = (us + 999) // 1000
        i2c.readfrom_mem_into(address, _REG_CHIP_ID, self._byte)
        if self._byte[0] != _CHIP_ID:
            import errno

            raise OSError(errno.ENODEV)  # something else answers at this address
        self._write(_REG_RESET, _RESET_WORD)
        time.sleep_ms(2)  # start-up time: the NVM is copied into the registers
        self._wait_status(_STATUS_IM_UPDATE)
        self._write(_REG_CONFIG, 0)  # no IIR filter, standby irrelevant in forced mode
        cal = bytearray(26)
        i2c.readfrom_mem_into(address, _REG_CALIB00, cal)
        hum = bytearray(7)
        i2c.readfrom_mem_into(address, _REG_CALIB26, hum)
        self._t1 = cal[0] | (cal[1] << 8)
        self._t2 = _s16(cal[2], cal[3])
        self._t3 = _s16(cal[4], cal[5])
        self._p1 = cal[6] | (cal[7] << 8)
        p = []
        for i in range(8, 24, 2):
            p.append(_s16(cal[i], cal[i + 1]))
        self._p2, self._p3, self._p4, self._p5, self._p6, self._p7, self._p8, self._p9 = p
        self._h1 = cal[25]
        self._h2 = _s16(hum[0], hum[1])
        self._h3 = hum[2]
        self._h4 = (_s8(hum[3]) << 4) | (hum[4] & 0x0F)
        self._h5 = (_s8(hum[5]) << 4) | (hum[4] >> 4)
        self._h6 = _s8(hum[6])

    def _write(self, reg, value):
        self._byte[0] = value
        self._i2c.writeto_mem(self._address, reg, self._byte)

    def _wait_status(self, bits):
        for _ in range(_POLL_LIMIT):
            self._i2c.readfrom_mem_into(self._address, _REG_STATUS, self._byte)
            if not self._byte[0] & bits:
                return
            time.sleep_ms(_POLL_MS)
        import errno

        raise OSError(errno.ETIMEDOUT)

    def start(self):
        """Starts one forced-mode measurement; its result is ready after wait_ms."""
        self._write(_REG_CTRL_HUM, self._ctrl_hum)  # takes effect with the ctrl_meas write (datasheet 5.4.3)
        self._write(_REG_CTRL_MEAS, self._ctrl_meas)

    def finish(self):
        """(temperature 0.01 degC, pressure 1/256 Pa, humidity 1/1024 %RH) of the measurement started."""
        self._wait_status(_STATUS_MEASURING)
        d = self._data
        self._i2c.readfrom_mem_into(self._address, _REG_DATA, d)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        t_fine = self.t_fine(adc_t)
        return (t_fine * 5 + 128) >> 8, self.pressure(adc_p, t_fine), self.humidity(adc_h, t_fine)

    def measure(self):
        """One measurement, blocking for wait_ms (about 10 ms at x1 oversampling)."""
        self.start()
        time.sleep_ms(self.wait_ms)
        return self.finish()

    async def read(self):
        """One measurement; other tasks run while the chip converts."""
        import asyncio

        self.start()
        await asyncio.sleep_ms(self.wait_ms)
        return self.finish()

    # The datasheet's compensation (section 4.2.3), integer for integer.
    def t_fine(self, adc_t):
        var1 = (((adc_t >> 3) - (self._t1 << 1)) * self._t2) >> 11
        d = (adc_t >> 4) - self._t1
        var2 = (((d * d) >> 12) * self._t3) >> 14
        return var1 + var2

    def pressure(self, adc_p, t_fine):
        var1 = t_fine - 128000
        var2 = var1 * var1 * self._p6
        var2 = var2 + ((var1 * self._p5) << 17)
        var2 = var2 + (self._p4 << 35)
        var1 = ((var1 * var1 * self._p3) >> 8) + ((var1 * self._p2) << 12)
        var1 = (((1 << 47) + var1) * self._p1) >> 33
        if var1 == 0:
            return 0  # avoid a division by zero (datasheet)
        p = 1048576 - adc_p
        p = _div_trunc(((p << 31) - var2) * 3125, var1)
        var1 = (self._p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (self._p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (self._p7 << 4)

    def humidity(self, adc_h, t_fine):
        v = t_fine - 76800
        v = (((adc_h << 14) - (self._h4 << 20) - self._h5 * v) + 16384) >> 15
        v = v * (
            (
                (
                    (
                        (
                            (((t_fine - 76800) * self._h6) >> 10)
                            * ((((t_fine - 76800) * self._h3) >> 11) + 32768)
                        )
                        >> 10
                    )
                    + 2097152
                )
                * self._h2
                + 8192
            )
            >> 14
        )
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * self._h1) >> 4)
        if v < 0:
            v = 0
        elif v > 419430400:
            v = 419430400
        return v >> 12


def records(values):
    """SenML records (docs/protocol.md §4) of read()'s (t, p, h): t and h as 0.01 decimal fractions, p in Pa
    (rounded to the nearest integer; the fractions of 1/256 are rounded half up)."""
    t, p, h = values
    return (("t", "Cel", (-2, t)), ("h", "%RH", (-2, (h * 100 + 512) >> 10)), ("p", "Pa", (p + 128) >> 8))
