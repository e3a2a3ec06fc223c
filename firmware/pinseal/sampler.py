# Reads the board profile's sensors into one reading: a tuple of SenML records (pinseal.wire.senml). A
# sensor that fails yields a record naming its error instead of a value (docs/protocol.md §4); the rest of
# the reading is unaffected and the firmware keeps running. A quantity measured by a second sensor is named
# with the sensor's type after a colon ("t:sht3x"), so names stay unique within a reading.
from pinseal.sensors import battery, bme280, failed, open_i2c, sht3x

# type -> (records function, driver class, the names of its records)
_DRIVERS = {
    "bme280": (bme280.records, bme280.BME280, ("t", "h", "p")),
    "sht3x": (sht3x.records, sht3x.SHT3x, ("t", "h")),
}


class Sampler:
    def __init__(self, profile):
        self._sensors = []  # [records function, driver or None (retried), names, driver class, address, bus]
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

    async def _read(self, s):
        driver = s[1]
        if driver is None:
            if s[5] is None:
                raise OSError(19)  # ENODEV: the bus itself could not be opened
            driver = s[1] = s[3](s[5], s[4])  # raises while the sensor is still missing
        return s[0](await driver.read())

    async def reading(self):
        """The records of one reading; never raises for a sensor fault."""
        out = []
        for s in self._sensors:
            names = s[2]
            try:
                records = await self._read(s)
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
