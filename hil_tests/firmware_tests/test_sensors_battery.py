# Battery voltage (firmware/pinseal/sensors/battery.py) through the board profile's divider and ADC pin.
import test_sensors_support as s
from pinseal.sensors import battery


def _battery():
    import json

    import vboard_adc

    s.install_machine()
    cfg = json.loads(vboard_adc.config())
    assert cfg["battery_pin"] is not None
    return battery.Battery.from_profile(s.board_profile_battery())


def test_scripted_millivolts_come_back():
    bat = _battery()
    # one 12-bit step at the pin (vref/4095 = 0.76-0.81 mV) times the divider (2 or 3) -> within 3 mV
    for mv in (3000, 3700, 3912, 4200, 5000):
        s.set_sensors(battery={"mv": mv})
        got = bat.millivolts()
        assert abs(got - mv) <= 3, (got, mv)
        assert battery.record(got) == ("bat", "V", (-3, got))


def test_non_adc_pin_raises_valueerror():
    machine = s.install_machine()
    try:
        machine.ADC(machine.Pin(3))
    except ValueError:
        return
    raise AssertionError("ADC on a pin without an ADC")
