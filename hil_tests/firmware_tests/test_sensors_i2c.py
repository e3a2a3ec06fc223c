# The virtual board's machine.I2C / SoftI2C (hil_tests/vboard/mpy/_vb_i2c.py) behave as the board's port does.
import test_sensors_support as s


def test_scan_finds_the_profiles_sensors():
    assert s.i2c().scan() == [0x44, 0x76]


def test_bus_id_the_chip_lacks_raises_valueerror():
    machine = s.install_machine()
    try:
        machine.I2C(2)
    except ValueError as e:
        assert "doesn't exist" in str(e)
        return
    raise AssertionError("I2C(2) exists?")


def test_pins_valid_for_the_port_but_unwired_give_an_empty_bus():
    machine = s.install_machine()
    if s.board()["port"] == "rp2":
        bus = machine.I2C(1, scl=machine.Pin(7), sda=machine.Pin(6))
    else:
        bus = machine.I2C(1, scl=machine.Pin(25), sda=machine.Pin(26))
    assert bus.scan() == []
    s.expect_oserror(lambda: bus.readfrom_mem(0x76, 0xD0, 1), s.nack_errno())


def test_rp2_rejects_pins_that_cannot_be_that_blocks_scl_sda():
    if s.board()["port"] != "rp2":
        return
    machine = s.install_machine()
    for kwargs in (
        {"scl": machine.Pin(4), "sda": machine.Pin(5)},
        {"scl": machine.Pin(7), "sda": machine.Pin(4)},
    ):
        try:
            machine.I2C(0, **kwargs)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % kwargs)


def test_soft_i2c_on_the_wired_pins():
    machine = s.install_machine()
    cfg = s.board()["i2c"]
    bus = machine.SoftI2C(scl=machine.Pin(cfg["scl"]), sda=machine.Pin(cfg["sda"]))
    assert bus.readfrom_mem(0x76, 0xD0, 1) == b"\x60"
    buf = bytearray(2)
    bus.readfrom_mem_into(0x76, 0x88, buf)
    assert buf[0] | (buf[1] << 8) == 27504
    s.set_sensors(bme280={"faults": ["missing"]})
    s.expect_oserror(lambda: bus.readfrom_mem(0x76, 0xD0, 1), "ENODEV")  # SoftI2C: ENODEV on every port
    s.set_sensors(bme280={"faults": ["nack"]})
    assert bus.writeto(0x76, b"\xd0") == 0  # a data NACK ends the write quietly
    s.set_sensors(bme280={"faults": []})
