# Readings as a SenML pack in CBOR (RFC 8428 §6, docs/protocol.md §4), written straight into the
# bundle's encoder: no dicts or intermediate records are built, so a 32-reading bundle costs no more
# heap than its own bytes.
#
# In firmware a reading is a tuple (time_s, records), each record a tuple (name, unit, value):
#   value int                 -> "v" as a CBOR integer                 (pressure in Pa: 101325)
#   value (exponent, mantissa) -> "v" as decimal fraction 4([e, m])    ((-2, 2150) = 21.50)
#   value str                  -> "vs", a failed sensor's error name    ("ENODEV")
#   unit None                  -> no "u" (e.g. on a failed sensor's record)
# The decimal fraction is written exactly as the driver gave it, never normalised, so its bytes follow
# from the driver's integer alone on every board.
from micropython import const

# SenML CBOR labels (RFC 8428 §6). Records are written in deterministic key order: the encodings of
# 0, 1, 2, 3 (0x00..0x03) sort before that of -3 (0x22), so bt comes last.
_N = const(0)
_U = const(1)
_V = const(2)
_VS = const(3)
_BT_ENCODED = const(0x22)  # label -3 (bt) as CBOR: major type 1, argument 2


# Every record of a given (name, unit, kind of value, carries bt) starts with the same bytes: its map
# head, n, u and the value's label (and the decimal fraction's tag and array head). Sensors give a small
# fixed set of those, so the prefix is encoded once and copied: a record then costs three encoder calls
# instead of about ten, which is most of the time a 16-reading pack takes to write.
_KIND_INT = const(0)
_KIND_DECIMAL = const(1)
_KIND_STR = const(2)
_MAX_CACHED = const(24)
_prefixes = {}


def _prefix(name, unit, kind, bt):
    key = (name, unit, kind, bt)
    data = _prefixes.get(key)
    if data is None:
        from pinseal.wire.cbor import Encoder

        enc = Encoder(24)
        enc.map(2 + bt + (0 if unit is None else 1))  # n, v/vs, [u], [bt]
        enc.byte(_N)
        enc.tstr(name)
        if unit is not None:
            enc.byte(_U)
            enc.tstr(unit)
        if kind == _KIND_STR:
            enc.byte(_VS)
        else:
            enc.byte(_V)
            if kind == _KIND_DECIMAL:
                enc.byte(0xC4)  # tag 4
                enc.byte(0x82)  # [exponent, mantissa]
        data = enc.value()
        if len(_prefixes) < _MAX_CACHED:
            _prefixes[key] = data
    return data


def record_count(readings):
    n = 0
    for _, records in readings:
        n += len(records)
    return n


def write_pack(enc, readings, n_records=None):
    """Writes the pack for readings (a list of (time_s, records)) into a cbor.Encoder; n_records: their
    record_count() when the caller has it (counting walks readings, which may decode each one)."""
    enc.array(record_count(readings) if n_records is None else n_records)
    for time_s, records in readings:
        write_reading(enc, time_s, records)


def write_reading(enc, time_s, records):
    """Writes one reading's records into a pack whose array head is already written: a caller that has
    its readings one at a time (decoded from flash) writes them one per task step."""
    if type(time_s) is not int or time_s < 0:
        raise ValueError("SenML: reading time must be whole seconds >= 0")
    if not records:
        raise ValueError("SenML: a reading needs at least one record (it carries bt)")
    bt = 1  # 1 while writing the reading's first record, which carries bt
    for name, unit, value in records:
        t = type(value)
        if t is int:
            enc.raw(_prefix(name, unit, _KIND_INT, bt))
            enc.integer(value)
        elif t is tuple or t is list:
            if len(value) != 2 or type(value[0]) is not int or type(value[1]) is not int:
                raise ValueError("SenML: decimal fraction is (exponent, mantissa), both int")
            enc.raw(_prefix(name, unit, _KIND_DECIMAL, bt))
            enc.integer(value[0])
            enc.integer(value[1])
        elif t is str:
            enc.raw(_prefix(name, unit, _KIND_STR, bt))
            enc.tstr(value)
        else:
            raise ValueError("SenML: value must be int, (exponent, mantissa) or str")
        if bt:
            enc.byte(_BT_ENCODED)
            enc.integer(time_s)
            bt = 0


def pack(readings):
    """The pack's CBOR bytes on their own (tests, tools); bundles use write_pack."""
    from pinseal.wire.cbor import Encoder

    enc = Encoder(16 + 24 * record_count(readings))
    write_pack(enc, readings)
    return enc.value()
