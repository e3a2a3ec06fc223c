# Helpers for the sensor tests, which run in board mode with the sensors plugin (hil_tests/tests/
# test_sensors_in_vm.py). `machine` comes from the virtual board (hil_tests/vboard/mpy/machine.py) once it has
# I2C, ADC and Pin; until then a stand-in built here from the plugin's shims _vb_i2c / _vb_adc.
import json
import sys

import vboard_control


def install_machine():
    try:
        import machine

        machine.I2C, machine.SoftI2C, machine.ADC, machine.Pin  # noqa: B018
        return machine
    except (ImportError, AttributeError):
        pass
    import _vb_adc
    import _vb_i2c

    class Pin:
        def __init__(self, id, *args, **kwargs):
            self._vb_id = id

    class machine:
        pass

    machine.Pin = Pin
    machine.I2C = _vb_i2c.I2C
    machine.SoftI2C = _vb_i2c.SoftI2C
    machine.ADC = _vb_adc.ADC
    sys.modules["machine"] = machine
    return machine


def board():
    import vboard_i2c

    return json.loads(vboard_i2c.config())


def board_profile_battery():
    import vboard_adc

    return json.loads(vboard_adc.config())["battery"]


def sensors(msg):
    return json.loads(vboard_control.send("sensors", json.dumps(msg)))


def set_sensors(**kwargs):
    return sensors({"set": kwargs})


def expect_oserror(fn, errno_name):
    import errno

    try:
        fn()
    except OSError as e:
        assert e.errno == getattr(errno, errno_name), "errno %r, expected %s" % (e.errno, errno_name)
        return
    raise AssertionError("no OSError, expected %s" % errno_name)


def nack_errno():
    """What this board's machine.I2C raises for a NACK: ENODEV on ESP32, EIO on RP2."""
    return "EIO" if board()["port"] == "rp2" else "ENODEV"


def i2c():
    from pinseal.sensors import open_i2c

    install_machine()
    return open_i2c(board()["i2c"])
