# Reads the board profile's sensors into one reading: a tuple of SenML records (pinseal.wire.senml). A sensor
# that fails yields a record naming its error instead of a value (docs/protocol.md §4); the rest of the reading
# is unaffected and the firmware keeps running. A quantity measured by a second sensor is named with the
# sensor's type after a colon ("t:sht3x"), so names stay unique within a reading.
from pinseal.sensors import battery, bme280, failed, open_i2c, sht3x

_NAMES = {"bme280": ("t", "h", "p"), "sht3x": ("t", "h")}


class Sampler:
    def __init__(self, profile):
        self._sensors = []  # (module, driver or None, names, error)
        self._battery = None
        i2c = None
        taken = set()
        for entry in profile.get("sensors", ()):
            kind = entry["type"]
            module = bme280 if kind == "bme280" else sht3x if kind == "sht3x" else None
            if module is None:
                continue
            names = []
            for n in _NAMES[kind]:
                names.append(n if n not in taken else n + ":" + kind)
                taken.add(n)
            driver, error = None, None
            try:
                if i2c is None:
                    i2c = open_i2c(profile["i2c"])
                cls = module.BME280 if module is bme280 else module.SHT3x
                driver = cls(i2c, entry["address"])
            except OSError as e:  # absent or broken at boot: report it in every reading, retry later
                error = e
            self._sensors.append([module, driver, tuple(names), error, entry["address"], i2c])
        if profile.get("battery"):
            try:
                self._battery = battery.Battery.from_profile(profile["battery"])
            except (OSError, ValueError):
                self._battery = None
        self.battery_mv = 0

    async def _read(self, s):
        module, driver = s[0], s[1]
        if driver is None:
            cls = module.BME280 if module is bme280 else module.SHT3x
            driver = s[1] = cls(s[5], s[4])  # raises while the sensor is still missing
        return module.records(await driver.read())

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
                s[1] = None if s[1] is None else s[1]
                for n in names:
                    out.append(failed(n, e))
        if self._battery is not None:
            try:
                self.battery_mv = self._battery.millivolts()
                out.append(battery.record(self.battery_mv))
            except OSError as e:
                out.append(failed("bat", e))
        return tuple(out)
