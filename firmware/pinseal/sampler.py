# Reads the board profile's sensors into one reading: a tuple of SenML records (pinseal.wire.senml). A
# sensor that fails yields a record naming its error instead of a value (docs/protocol.md §4); the rest of
# the reading is unaffected and the firmware keeps running. A quantity measured by a second sensor is named
# with the sensor's type after a colon ("t:sht3x"), so names stay unique within a reading.
from micropython import const

from pinseal.sensors import battery, bme280, failed, open_i2c, sht3x

# type -> (records function, driver class, the names of its records)
_DRIVERS = {
    "bme280": (bme280.records, bme280.BME280, ("t", "h", "p")),
    "sht3x": (sht3x.records, sht3x.SHT3x, ("t", "h")),
}


# One sensor's slot: a list, not an object (an instance's attribute dict costs more heap on a 100 KB
# board), read through these names; the compiler inlines each const, so they cost no RAM either.
_TO_RECORDS = const(0)  # the driver module's records function: raw driver output -> records
_DRIVER = const(1)  # the open driver, or None while the sensor is missing (retried at each reading)
_NAMES = const(2)  # the names of its records in this reading
_DRIVER_CLASS = const(3)
_ADDRESS = const(4)  # its I2C address
_BUS = const(5)  # the I2C bus, or None if it could not be opened


class Sampler:
    def __init__(self, profile):
        self._sensors = []  # one slot a sensor, indexed by _TO_RECORDS .. _BUS
        self._battery = None
        i2c = None
        taken = set()
        for entry in profile.get("sensors", ()):
            kind = entry["type"]
            if kind not in _DRIVERS:
                continue
            to_records, cls, plain_names = _DRIVERS[kind]
            names = []
            for n in plain_names:
                names.append(n if n not in taken else n + ":" + kind)
                taken.add(n)
            driver = None
            try:
                if i2c is None:
                    i2c = open_i2c(profile["i2c"])
                driver = cls(i2c, entry["address"])
            except OSError:  # absent or broken at boot: each reading reports it and tries again
                pass
            self._sensors.append([to_records, driver, tuple(names), cls, entry["address"], i2c])
        if profile.get("battery"):
            try:
                self._battery = battery.Battery.from_profile(profile["battery"])
            except (OSError, ValueError):
                self._battery = None
        self.battery_mv = 0

    async def _read(self, slot):
        driver = slot[_DRIVER]
        if driver is None:
            if slot[_BUS] is None:
                raise OSError(19)  # ENODEV: the bus itself could not be opened
            # Raises while the sensor is still missing.
            driver = slot[_DRIVER] = slot[_DRIVER_CLASS](slot[_BUS], slot[_ADDRESS])
        return slot[_TO_RECORDS](await driver.read())

    async def reading(self):
        """The records of one reading; never raises for a sensor fault."""
        out = []
        for slot in self._sensors:
            names = slot[_NAMES]
            try:
                records = await self._read(slot)
                for i in range(len(records)):
                    out.append((names[i], records[i][1], records[i][2]))
            except OSError as e:
                for n in names:
                    out.append(failed(n, e))
        if self._battery is not None:
            try:
                self.battery_mv = self._battery.millivolts()
                out.append(battery.record(self.battery_mv))
            except OSError as e:
                out.append(failed("bat", e))
        return tuple(out)
