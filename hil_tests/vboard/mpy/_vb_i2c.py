# machine.I2C and machine.SoftI2C of the virtual board, over the emulated bus of the sensors plugin
# (hil_tests/vboard/sensors.mjs, JS module `vboard_i2c`). The API subset drivers use, with the behaviour of
# the board's port (its profile's "port"):
#   - I2C(id, scl=, sda=, freq=, timeout=): a bus id the chip lacks or, on RP2, a pin that cannot be that
#     block's SCL/SDA raises ValueError as the port does (ports/esp32, ports/rp2 machine_i2c.c).
#   - Only the profile's pins (i2c.scl, i2c.sda) have the sensors on them: another valid pair is a bus with
#     nothing attached (scan() == [], every transfer not acknowledged), as on a board wired that way.
#   - Errors are the port's OSError: NACK -> ENODEV (esp32) / EIO (rp2), bus stuck -> ETIMEDOUT; SoftI2C (the
#     same on every port): address NACK -> ENODEV, data NACK ends a write quietly (writeto returns the count).
# Bytes cross the JS boundary as hex strings.
import errno
import json

import vboard_i2c

_CFG = json.loads(vboard_i2c.config())
_PORT = _CFG["port"]
_WIRED = (_CFG["i2c"]["scl"], _CFG["i2c"]["sda"]) if _CFG.get("i2c") else None
_ESP32_S3 = _CFG.get("mcu") == "esp32s3"
# Default pins per bus id when none are given (ports/esp32 and ports/rp2 machine_i2c.c; ESP32_GENERIC_S3).
if _PORT == "rp2":
    _DEFAULT_PINS = {0: (5, 4), 1: (7, 6)}
    _MAX_GPIO = 29
elif _ESP32_S3:
    _DEFAULT_PINS = {0: (9, 8), 1: (9, 8)}
    _MAX_GPIO = 48
else:
    _DEFAULT_PINS = {0: (18, 19), 1: (25, 26)}
    _MAX_GPIO = 39


def _pin_id(pin):
    value = getattr(pin, "_vb_id", pin)
    if not isinstance(value, int) or not 0 <= value <= _MAX_GPIO:
        raise ValueError("invalid pin")
    return value


def _raise(name):
    raise OSError(getattr(errno, name))


class SoftI2C:
    _SOFT = True

    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self._scl = _pin_id(scl)
        self._sda = _pin_id(sda)
        self.freq = freq
        self.timeout = timeout

    def _connected(self):
        return (self._scl, self._sda) == _WIRED

    def _xfer(self, addr, data_hex, read_len):
        if not self._connected():
            _raise("ENODEV" if self._SOFT or _PORT == "esp32" else "EIO")
        result = vboard_i2c.xfer(addr, data_hex, read_len, self._SOFT)
        kind, _, value = result.partition(":")
        if kind == "err":
            _raise(value)
        if kind == "n":
            return int(value)
        return value

    def scan(self):
        if not self._connected():
            return []
        return json.loads(vboard_i2c.scan())

    def writeto(self, addr, buf, stop=True):
        return self._xfer(addr, bytes(buf).hex(), 0)

    def readfrom(self, addr, nbytes, stop=True):
        return bytes.fromhex(self._xfer(addr, "", nbytes))

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = bytes.fromhex(self._xfer(addr, "", len(buf)))

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._xfer(addr, _memaddr(memaddr, addrsize) + bytes(buf).hex(), 0)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        return bytes.fromhex(self._xfer(addr, _memaddr(memaddr, addrsize), nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        buf[:] = bytes.fromhex(self._xfer(addr, _memaddr(memaddr, addrsize), len(buf)))


def _memaddr(memaddr, addrsize):
    if addrsize == 8:
        return "%02x" % (memaddr & 0xFF)
    if addrsize == 16:
        return "%04x" % (memaddr & 0xFFFF)
    raise ValueError("addrsize must be 8 or 16")


class I2C(SoftI2C):
    _SOFT = False

    def __init__(self, id=None, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id is None:
            if _PORT != "rp2":  # ESP32: id is required; RP2: PICO_DEFAULT_I2C (0)
                raise TypeError("function missing required positional argument #1")
            id = 0
        if id not in _DEFAULT_PINS:
            raise ValueError("I2C(%d) doesn't exist" % id)
        default_scl, default_sda = _DEFAULT_PINS[id]
        scl_id = default_scl if scl is None else _pin_id(scl)
        sda_id = default_sda if sda is None else _pin_id(sda)
        if _PORT == "rp2":
            # SDA/SCL on even/odd pins, I2C0/I2C1 on even/odd pairs of pins (ports/rp2/machine_i2c.c)
            if not (scl_id & 1 == 1 and (scl_id & 2) >> 1 == id):
                raise ValueError("bad SCL pin")
            if not (sda_id & 1 == 0 and (sda_id & 2) >> 1 == id):
                raise ValueError("bad SDA pin")
        super().__init__(scl_id, sda_id, freq=freq, timeout=timeout)
        self.id = id
