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


# Names, units and error names come from a small fixed set, so their UTF-8 bytes are kept instead of
# encoding every string of every record again (one allocation each, ~300 per 32-reading bundle).
_MAX_CACHED = const(24)
_utf8 = {}


def _tstr(enc, s):
    data = _utf8.get(s)
    if data is None:
        data = s.encode()
        if len(_utf8) < _MAX_CACHED:
            _utf8[s] = data
    enc.head(3, len(data))  # major type 3: text string
    enc.raw(data)


def record_count(readings):
    n = 0
    for _, records in readings:
        n += len(records)
    return n


def write_pack(enc, readings):
    """Writes the pack for readings (a list of (time_s, records)) into a cbor.Encoder."""
    enc.array(record_count(readings))
    for time_s, records in readings:
        if type(time_s) is not int or time_s < 0:
            raise ValueError("SenML: reading time must be whole seconds >= 0")
        if not records:
            raise ValueError("SenML: a reading needs at least one record (it carries bt)")
        bt = 1  # 1 while writing the reading's first record, which carries bt
        for name, unit, value in records:
            # n and v/vs always; u when given; bt on the reading's first record only
            enc.map(2 + bt + (0 if unit is None else 1))
            enc.byte(_N)
            _tstr(enc, name)
            if unit is not None:
                enc.byte(_U)
                _tstr(enc, unit)
            t = type(value)
            if t is int:
                enc.byte(_V)
                enc.integer(value)
            elif t is tuple or t is list:
                if len(value) != 2:
                    raise ValueError("SenML: decimal fraction is (exponent, mantissa)")
                enc.byte(_V)
                enc.decimal_fraction(value[0], value[1])
            elif t is str:
                enc.byte(_VS)
                _tstr(enc, value)
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
