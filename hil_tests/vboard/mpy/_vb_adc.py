# machine.ADC of the virtual board (JS module `vboard_adc` of the sensors plugin): the battery divider on the
# profile's battery.adc_pin reads the scripted battery voltage; another ADC-capable pin reads 0 (nothing
# drives it); a pin without an ADC raises ValueError as the port does. ESP32 ports have read_uv() (calibrated
# microvolts), atten() and width() (accepted, not modelled: the reading follows the profile's wiring at the
# profile's attenuation); RP2 has channels 0-3 (GPIO26-29) and 4 (the temperature sensor, reads 0 here).
import json

import vboard_adc

_CFG = json.loads(vboard_adc.config())
_PORT = _CFG["port"]
if _PORT == "rp2":
    _PINS = (26, 27, 28, 29)
elif _CFG.get("mcu") == "esp32s3":
    _PINS = tuple(range(1, 21))
else:
    _PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


def _read(pin):
    return json.loads(vboard_adc.read(pin))


class _ADCBase:
    def __init__(self, pin, *, atten=None):
        value = getattr(pin, "_vb_id", pin)
        if _PORT == "rp2" and isinstance(pin, int) and 0 <= pin <= 4:
            value = 26 + value if value < 4 else -1  # channel number; 4 = temperature sensor
        elif not isinstance(value, int) or value not in _PINS:
            raise ValueError("Pin doesn't have ADC capabilities" if _PORT == "rp2" else "invalid pin")
        self._pin = value
        self._atten = 3 if atten is None else atten

    def read_u16(self):
        return _read(self._pin)[0] if self._pin >= 0 else 0


class _ADCESP32(_ADCBase):
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def read_uv(self):
        return _read(self._pin)[1]

    def read(self):
        return self.read_u16() >> 4

    def atten(self, atten):
        self._atten = atten

    def width(self, bits):
        pass

    def init(self, *, atten=None):
        if atten is not None:
            self._atten = atten


class _ADCRP2(_ADCBase):
    CORE_TEMP = 4


ADC = _ADCRP2 if _PORT == "rp2" else _ADCESP32
