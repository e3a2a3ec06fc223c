# pinseal.wire.cbor in the MicroPython VM: deterministic encoding (RFC 8949 §4.2.1) byte for byte, and a
# decoder that rejects everything else with WireError (a ValueError), whatever the input.
import random

from pinseal.wire import WireError
from pinseal.wire.cbor import Encoder, Tag, dumps, loads

# Expected bytes computed on the host with cbor2 6.2.1: cbor2.dumps(value, canonical=True).hex(), except the
# two maps marked "bytewise": cbor2's canonical=True sorts map keys length-first (RFC 7049 §3.9), while
# RFC 8949 §4.2.1 (and docs/protocol.md §2) sort by the encoded keys' bytes; the two orders differ only
# when keys of different encoded lengths interleave (e.g. 100 = 0x1864 before -1 = 0x20). Those two
# expectations were written out by hand from the key encodings listed next to them.
ENCODINGS = [
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (255, "18ff"),
    (256, "190100"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (2**32 - 1, "1affffffff"),
    (2**32, "1b0000000100000000"),
    (2**64 - 1, "1bffffffffffffffff"),
    (-1, "20"),
    (-24, "37"),
    (-25, "3818"),
    (-256, "38ff"),
    (-257, "390100"),
    (-(2**32), "3affffffff"),
    (-(2**32) - 1, "3b0000000100000000"),
    (-(2**64), "3bffffffffffffffff"),
    (b"", "40"),
    (b"\x01\x02", "420102"),
    (bytes(24), "5818" + "00" * 24),
    (bytes(256), "590100" + "00" * 256),
    ("", "60"),
    ("a", "6161"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U0001f600", "64f09f9880"),
    ("x" * 24, "7818" + "78" * 24),
    ([], "80"),
    ([1, [2, 3]], "8201820203"),
    (list(range(25)), "9819000102030405060708090a0b0c0d0e0f10111213141516171818"),
    ({}, "a0"),
    ({1: -8, 4: b"kid"}, "a2012704436b6964"),
    # bytewise: 01 < 0a < 1864 < 20 < 4162 < 617a < 626161
    ({10: 0, 100: 1, -1: 2, "z": 3, "aa": 4, b"b": 5, 1: 6}, "a701060a001864012002416205617a0362616104"),
    # bytewise: 00 < 17 < 1818 < 20 < 37 < 3818
    ({-24: 0, -25: 1, -1: 2, 24: 3, 23: 4, 0: 5}, "a60005170418180320023700381801"),
    (Tag(4, [-2, 2150]), "c48221190866"),
    (Tag(18, [b"", {}, b"p", b"s"]), "d28440a041704173"),
    (Tag(1000, 1), "d903e801"),
    (True, "f5"),
    (False, "f4"),
    (None, "f6"),
    ([True, False, None], "83f5f4f6"),
]


def _rejects(data, reason=None):
    try:
        value = loads(data)
    except WireError as e:
        if reason is not None:
            assert e.reason == reason, (data, e)
        return e
    raise AssertionError("accepted %s as %r" % (bytes(data).hex(), value))


def test_encodes_deterministically():
    for value, expected in ENCODINGS:
        got = dumps(value).hex()
        assert got == expected, (value, got, expected)


def test_tuples_and_bytearrays_encode_like_lists_and_bytes():
    assert dumps((1, 2)) == dumps([1, 2])
    assert dumps(bytearray(b"ab")) == dumps(b"ab")
    assert dumps(memoryview(b"ab")) == dumps(b"ab")


def test_decodes_what_it_encodes():
    for value, expected in ENCODINGS:
        decoded = loads(bytes.fromhex(expected))
        assert decoded == value, (expected, decoded, value)
        assert dumps(decoded).hex() == expected


def test_decodes_from_bytearray_and_memoryview():
    data = bytes.fromhex("a2012704436b6964")
    assert loads(bytearray(data)) == {1: -8, 4: b"kid"}
    assert loads(memoryview(data)) == {1: -8, 4: b"kid"}


def test_encoder_grows_its_buffer():
    enc = Encoder(1)
    for i in range(300):
        enc.integer(i * 1000)
    items = enc.value()
    whole = dumps([i * 1000 for i in range(300)])
    assert whole[:3] == b"\x99\x01\x2c" and whole[3:] == items


def test_encoder_rejects_floats_big_ints_and_unknown_types():
    for bad in (1.5, 2**64, -(2**64) - 1, {1, 2}, object()):
        try:
            dumps(bad)
        except ValueError:
            continue
        raise AssertionError("encoded %r" % (bad,))
    try:
        dumps({(1, 2): 3})
    except ValueError:
        pass
    else:
        raise AssertionError("encoded a tuple map key")


def test_rejects_non_shortest_forms():
    for hexed in (
        "1800",  # 0 in one extra byte
        "1817",  # 23 in one extra byte
        "1900ff",
        "1a0000ffff",
        "1b00000000ffffffff",
        "3800",
        "5800",  # empty bytes, length in one extra byte
        "780161",
        "980100",
        "b80100",  # map(1) header non-shortest
        "d80401",  # tag 4 in one extra byte
    ):
        _rejects(bytes.fromhex(hexed), "non_deterministic")


def test_rejects_indefinite_lengths():
    for hexed in ("5f4101ff", "7f6161ff", "9f01ff", "bf0101ff"):
        _rejects(bytes.fromhex(hexed), "non_deterministic")


def test_rejects_unsorted_and_duplicate_keys():
    _rejects(bytes.fromhex("a202000100"), "non_deterministic")  # {2: 0, 1: 0}
    _rejects(bytes.fromhex("a201000100"), "non_deterministic")  # {1: 0, 1: 0}
    _rejects(bytes.fromhex("a220000100"), "non_deterministic")  # {-1: 0, 1: 0}: -1 encodes after 1
    _rejects(bytes.fromhex("a2616100180100"), "non_deterministic")  # {"a": 0, 24: 0}
    # length-first order (RFC 7049 canonical, cbor2's canonical=True) is not RFC 8949 §4.2.1 order
    _rejects(bytes.fromhex("a22002186401"), "non_deterministic")  # {-1: 2, 100: 1}
    assert loads(bytes.fromhex("a21864012002")) == {100: 1, -1: 2}
    e = _rejects(bytes.fromhex("a201000100"))
    assert "duplicate" in str(e)


def test_rejects_floats_and_other_simple_values():
    for hexed in ("f93c00", "fa3f800000", "fb3ff0000000000000", "f7", "f0", "f820", "f8ff"):
        _rejects(bytes.fromhex(hexed))
    _rejects(bytes.fromhex("f93c00"), "non_deterministic")


def test_rejects_reserved_and_break_bytes():
    for hexed in ("1c", "1d", "1e", "1f", "3f", "5c", "ff", "dc00", "fc", "fd", "fe", "8101ff"):
        _rejects(bytes.fromhex(hexed))


def test_rejects_truncation_and_trailing_bytes():
    _rejects(b"", "malformed")
    _rejects(bytes.fromhex("0000"), "malformed")
    _rejects(bytes.fromhex("a0a0"), "malformed")
    full = dumps({1: [1, 2**40, "text", b"bytes", Tag(4, [-2, 2150])], 2: {3: None}})
    for n in range(len(full)):
        _rejects(full[:n], "malformed")


def test_rejects_huge_lengths_without_allocating():
    for hexed in (
        "5bffffffffffffffff",
        "7bffffffffffffffff",
        "9bffffffffffffffff",
        "bbffffffffffffffff",
        "5a7fffffff00",
    ):
        _rejects(bytes.fromhex(hexed), "malformed")


def test_rejects_invalid_utf8():
    for hexed in (
        "61ff",
        "61c0",
        "62c080",  # overlong NUL
        "62c1bf",
        "63e08080",  # overlong
        "63eda080",  # surrogate
        "64f4908080",  # beyond U+10FFFF
        "64f5808080",
        "62c328",
        "63e282",  # truncated sequence inside the string
    ):
        _rejects(bytes.fromhex(hexed), "malformed")
    assert loads(bytes.fromhex("63efbfbd")) == "\ufffd"
    assert loads(bytes.fromhex("64f48fbfbf")) == "\U0010ffff"


def test_rejects_unhashable_and_tag_map_keys():
    for hexed in ("a18000", "a1a000", "a1c10000", "a1f500", "a1f600"):
        _rejects(bytes.fromhex(hexed), "malformed")


def test_rejects_bad_decimal_fractions_and_bignums():
    for hexed in ("c401", "c48101", "c4830102 03", "c482616101", "c28101", "c24101", "c34101"):
        _rejects(bytes.fromhex(hexed.replace(" ", "")), "malformed")


def test_depth_and_item_limits():
    deep = bytes([0x81] * 16) + b"\x00"
    assert loads(deep, max_depth=16) is not None
    _rejects(bytes([0x81] * 17) + b"\x00", "malformed")
    _rejects(bytes([0xC6] * 17) + b"\x00", "malformed")  # tags count as depth too
    assert len(loads(dumps(list(range(256))))) == 256
    _rejects(dumps(list(range(257))), "malformed")
    try:
        loads(dumps([1, 2, 3]), max_items=2)
    except WireError:
        pass
    else:
        raise AssertionError("item limit ignored")


def test_fuzz_bit_flips_only_raise_wire_errors_or_decode_canonically():
    # Hostile input: every outcome is either a WireError or a value that re-encodes to the very same
    # bytes (the decoder accepts only deterministic encodings).
    random.seed(20240611)
    valid = dumps(
        Tag(
            18,
            [
                b"\xa2\x01\x27\x04\x50" + bytes(range(16)),
                {},
                dumps({1: 1, 2: bytes(16), 3: 70000, 4: bytes(32), 5: 1700000000}),
                bytes(64),
            ],
        )
    )
    accepted = rejected = 0
    for _ in range(1500):
        data = bytearray(valid)
        for _ in range(1 + random.getrandbits(2)):
            i = random.getrandbits(16) % len(data)
            data[i] ^= 1 << random.getrandbits(3)
        try:
            value = loads(data)
        except WireError:
            rejected += 1
            continue
        accepted += 1
        assert dumps(value) == bytes(data), bytes(data).hex()
    assert rejected > 0


def test_fuzz_random_bytes():
    random.seed(7)
    for _ in range(3000):
        data = bytes(random.getrandbits(8) for _ in range(random.getrandbits(4)))
        try:
            value = loads(data)
        except WireError:
            continue
        assert dumps(value) == data, data.hex()


def test_errors_are_value_errors_with_a_reason():
    try:
        loads(b"\x18")
    except ValueError as e:
        assert isinstance(e, WireError)
        assert e.reason == "malformed"
        assert "truncated" in str(e)
