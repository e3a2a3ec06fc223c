# Sensor drivers: Bosch BME280 and Sensirion SHT3x on machine.I2C, battery voltage on machine.ADC.
#
# Every driver returns integers (fixed point, no floats: ESP32 and RP2 builds have single-precision floats,
# the VM double) and says what they mean, so the app writes SenML records (pinseal.wire.senml: (name, unit,
# value) with value an int, a decimal fraction (exponent, mantissa), or a failed sensor's error name). A
# failing sensor raises the OSError the board's machine.I2C raised (ENODEV or EIO for a NACK, ETIMEDOUT for
# a stuck bus), or one of its own: ENODEV for a wrong chip id, EIO for a CRC mismatch (data corrupted on the
# bus).
import errno


def error_name(exc):
    """The name a failed sensor's SenML record carries ("ENODEV", "ETIMEDOUT", ...)."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        return type(exc).__name__
    return errno.errorcode.get(code, "E%d" % code)


def failed(name, exc):
    """A failed sensor's record: its name and the error, no unit (docs/protocol.md §4)."""
    return (name, None, error_name(exc))


def open_i2c(i2c_profile):
    """machine.I2C on the pins of a board profile's "i2c" entry (boards/<id>/board.json)."""
    from machine import I2C, Pin

    return I2C(
        i2c_profile["id"],
        scl=Pin(i2c_profile["scl"]),
        sda=Pin(i2c_profile["sda"]),
        freq=i2c_profile.get("freq", 400000),
    )
