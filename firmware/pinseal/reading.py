# One reading as the outbox stores it until it is sealed: (boot, time_s, time_source, records) in
# deterministic CBOR, about 60 bytes for five records (JSON would double the flash written per reading).
# Records are as in pinseal.wire.senml: (name, unit or None, value), value an int, a decimal fraction
# (exponent, mantissa) or an error name. The boot number travels with the reading: a reading taken before a
# reboot is sealed with the boot it was taken in (with time source 0 its time is seconds since that boot).
from pinseal.wire import cbor


def encode(boot, time_s, time_source, records):
    return cbor.dumps((boot, time_s, time_source, records), 20 + 14 * len(records))


def decode(data):
    """(boot, time_s, time_source, records), records as tuples again; ValueError for anything malformed."""
    item = cbor.loads(data)
    if type(item) is not list or len(item) != 4:
        raise ValueError("reading: not a 4-item array")
    boot, time_s, source, raw = item
    if type(boot) is not int or type(time_s) is not int or type(source) is not int:
        raise ValueError("reading: bad fields")
    if type(raw) is not list or not raw:
        raise ValueError("reading: no records")
    records = []
    for r in raw:
        if type(r) is not list or len(r) != 3 or type(r[0]) is not str:
            raise ValueError("reading: bad record")
        v = r[2]
        if type(v) is list:
            if len(v) != 2 or type(v[0]) is not int or type(v[1]) is not int:
                raise ValueError("reading: bad decimal fraction")
            v = (v[0], v[1])
        elif type(v) is not int and type(v) is not str:
            raise ValueError("reading: bad value")
        records.append((r[0], r[1], v))
    return boot, time_s, source, tuple(records)
