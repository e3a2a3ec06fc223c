# machine for the virtual board: the subset of MicroPython's machine module the firmware and the official
# tools use, over the JS modules vboard_mcu (mcu.mjs) and vboard_clock (clock.mjs). I2C and ADC come from
# the sensors plugin's shims when it is installed, UART from the uart plugin's. Behaviour follows the ESP32
# and RP2 ports.
import time
import vboard_clock
import vboard_mcu

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

try:
    from _vb_i2c import I2C, SoftI2C  # noqa: F401
except ImportError:
    pass
try:
    from _vb_adc import ADC  # noqa: F401
except ImportError:
    pass
try:
    from _vb_uart import UART  # noqa: F401
except ImportError:
    pass


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self._vb_id = id
        self._value = 0
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self._value = 1 if value else 0
        # An input with a pull-up reads 1 when nothing drives it (a safe-mode button not pressed).
        if mode == Pin.IN and pull == Pin.PULL_UP:
            self._value = 1

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self._value = 1

    def off(self):
        self._value = 0

    def irq(self, handler=None, trigger=0):
        return None

    def __repr__(self):
        return "Pin(%s)" % (self._vb_id,)


class RTC:
    def datetime(self, dt=None):
        if dt is None:
            y, mo, d, h, mi, s, wd, _ = time.localtime()
            return (y, mo, d, wd, h, mi, s, 0)
        y, mo, d, _wd, h, mi, s, sub = dt
        secs = time.mktime((y, mo, d, h, mi, s, 0, 0))
        # As a float (this port's are doubles, exact to the ms for millennia): an int past 2**31 reaches JS
        # truncated to 32 bits, and today's time in ms is past it (the board said January 1970).
        vboard_clock.set_wall_ms(float(secs) * 1000 + sub // 1000)

    def init(self, dt):
        self.datetime(dt)

    def memory(self, data=None):
        if data is None:
            return bytes.fromhex(vboard_mcu.rtc_memory_get())
        if len(data) > 2048:
            raise ValueError("buffer too long")
        vboard_mcu.rtc_memory_set(bytes(data).hex())


# ports/rp2/machine_wdt.c: the watchdog's counter holds 0x7fffff us on the RP2040 (0xffffff on the RP2350;
# the tighter one for every rp2 board here), and a longer timeout raises ValueError as below.
_RP2_WDT_MAX_MS = 0x7FFFFF // 1000


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        if vboard_mcu.port() == "rp2" and timeout > _RP2_WDT_MAX_MS:
            raise ValueError("timeout exceeds %d" % _RP2_WDT_MAX_MS)
        vboard_mcu.wdt_start(timeout)

    def feed(self):
        vboard_mcu.wdt_feed()


def unique_id():
    return bytes.fromhex(vboard_mcu.unique_id_hex())


def reset_cause():
    return vboard_mcu.reset_cause()


def reset():
    vboard_mcu.reset()


def soft_reset():
    raise SystemExit


def deepsleep(time_ms=0):
    vboard_mcu.deepsleep(time_ms)


def lightsleep(time_ms=0):
    time.sleep_ms(time_ms)


def idle():
    pass


def freq(hz=None):
    if hz is None:
        return vboard_mcu.freq()
    vboard_mcu.set_freq(hz)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass
