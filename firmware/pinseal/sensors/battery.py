# Battery voltage through a resistor divider on machine.ADC, in integer millivolts. The divider is the board
# profile's integer ratio (battery = pin * num / den: Pico W VSYS 3:1, a 100k/100k LiPo divider 2:1).
# read_u16() is scaled by the ADC's full scale (vref_mv); ESP32 ports also have read_uv(), calibrated from the
# chip's eFuse, which is used when the profile says "read": "uv".
from micropython import const

SCALE = "0.001 V"
_SAMPLES = const(4)


class Battery:
    def __init__(self, adc, num, den, vref_mv=3300, use_uv=False, samples=_SAMPLES):
        if num <= 0 or den <= 0 or samples <= 0:
            raise ValueError("battery: divider and samples must be > 0")
        self._adc = adc
        self._num = num
        self._den = den
        self._vref_mv = vref_mv
        self._use_uv = use_uv
        self._samples = samples

    @classmethod
    def from_profile(cls, profile):
        """The battery of a board profile's "battery" entry (boards/<id>/board.json)."""
        from machine import ADC, Pin

        adc = ADC(Pin(profile["adc_pin"]))
        atten = profile.get("atten")
        if atten:
            adc.atten(getattr(ADC, atten))  # ESP32 only; RP2 profiles have none
        divider = profile["divider"]
        return cls(
            adc, divider["num"], divider["den"], profile.get("vref_mv", 3300), profile.get("read") == "uv"
        )

    def millivolts(self):
        """The battery's voltage in mV: the mean of a few samples, through the divider."""
        n = self._samples
        total = 0
        if self._use_uv:
            read_uv = self._adc.read_uv
            for _ in range(n):
                total += read_uv()
            return (total * self._num + n * self._den * 500) // (n * self._den * 1000)
        read_u16 = self._adc.read_u16
        for _ in range(n):
            total += read_u16()
        mean = (total + n // 2) // n
        return (mean * self._vref_mv * self._num + 65535 * self._den // 2) // (65535 * self._den)


def record(mv):
    """The SenML record (docs/protocol.md §4): volts as a 0.001 decimal fraction."""
    return ("bat", "V", (-3, mv))
