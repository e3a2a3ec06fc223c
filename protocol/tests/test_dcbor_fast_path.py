"""The deterministic-encoding fast path in `dcbor.decode` decides exactly as the exact re-encoder.

`exact_decode` below is the definition (decode well-formed, re-encode with `dcbor.encode`, compare
bytes); `dcbor.decode` must accept and reject the same inputs, and its shortcut
(`_fast_deterministic`) may only say yes where the exact re-encoding equals the input. Inputs are
drawn from every way of writing a value: shortest or overlong heads, definite or indefinite lengths,
map entries in any order, duplicated keys, floats of every width, simple values, tags, and mutated
or random bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinseal_protocol import dcbor
from pinseal_protocol.errors import Malformed, NonDeterministic


def exact_decode(data: bytes) -> Any:
    """The reference: the exact path alone (what `dcbor.decode` did before the fast path)."""
    value = dcbor.decode_well_formed(data)
    try:
        again = dcbor.encode(value)
    except (TypeError, ValueError) as exc:
        raise NonDeterministic(str(exc)) from exc
    if again != data:
        raise NonDeterministic("differs")
    return value


def verdict(fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        return ("ok", fn(data))
    except Malformed:
        return ("malformed", None)
    except NonDeterministic:
        return ("nondeterministic", None)


def check(data: bytes) -> None:
    fast = verdict(dcbor.decode, data)
    exact = verdict(exact_decode, data)
    assert fast[0] == exact[0], (data.hex(), fast, exact)
    if fast[0] == "ok":
        assert fast[1] == exact[1]
    if exact[0] != "malformed":
        value = dcbor.decode_well_formed(data)
        if dcbor._fast_deterministic(value, data):
            assert dcbor.encode(value) == data, data.hex()


# -- values ----------------------------------------------------------------------------------------

small_ints = st.integers(-30, 30)
ints = st.one_of(small_ints, st.integers(-(2**64), 2**64 - 1), st.sampled_from([23, 24, 255, 256, -24, -25]))
floats = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1.5, 65504.0, 1e300]))
scalars = st.one_of(
    ints,
    st.binary(max_size=30),
    st.text(max_size=10),
    st.booleans(),
    st.none(),
    st.just(cbor2.undefined),
    st.builds(cbor2.CBORSimpleValue, st.one_of(st.integers(0, 19), st.integers(32, 255))),
    floats,
)
keys_ = st.one_of(
    small_ints, small_ints, ints, st.text(max_size=4), st.binary(max_size=4), st.booleans(), floats, st.none()
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(st.tuples(keys_, inner), max_size=5),  # a map's entries, in the order they are written
        st.builds(cbor2.CBORTag, st.one_of(st.integers(0, 30), st.integers(0, 2**32)), inner),
    ),
    max_leaves=25,
)


# -- writing a value in any well-formed way ---------------------------------------------------------


def write_head(draw: Any, major: int, argument: int) -> bytes:
    """The shortest head, or (sometimes) an overlong one."""
    widths = [w for w, limit in ((0, 24), (1, 2**8), (2, 2**16), (4, 2**32), (8, 2**64)) if argument < limit]
    width = widths[0] if draw(st.integers(0, 3)) else draw(st.sampled_from(widths))
    if width == 0:
        return bytes([major << 5 | argument])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + argument.to_bytes(width, "big")


def write(draw: Any, value: Any) -> bytes:
    indefinite = draw(st.integers(0, 5)) == 0
    if type(value) is bool:
        return b"\xf5" if value else b"\xf4"
    if value is None:
        return b"\xf6"
    if value is cbor2.undefined:
        return b"\xf7"
    if isinstance(value, cbor2.CBORSimpleValue):
        return bytes([0xE0 | value.value]) if value.value < 24 else bytes([0xF8, value.value])
    if type(value) is float:
        kind = draw(st.sampled_from(["e", "f", "d"]))
        try:
            packed = struct.pack(">" + kind, value)
        except (OverflowError, struct.error):
            kind, packed = "d", struct.pack(">d", value)
        return bytes([{"e": 0xF9, "f": 0xFA, "d": 0xFB}[kind]]) + packed
    if type(value) is int:
        return write_head(draw, 0, value) if value >= 0 else write_head(draw, 1, -1 - value)
    if isinstance(value, bytes | str):
        major, data = (2, value) if isinstance(value, bytes) else (3, value.encode())
        if indefinite:
            cut = draw(st.integers(0, len(data)))
            return (
                bytes([major << 5 | 31])
                + b"".join(write_head(draw, major, len(part)) + part for part in (data[:cut], data[cut:]))
                + b"\xff"
            )
        return write_head(draw, major, len(data)) + data
    if isinstance(value, cbor2.CBORTag):
        return write_head(draw, 6, value.tag) + write(draw, value.value)
    if isinstance(value, list) and all(isinstance(e, tuple) and len(e) == 2 for e in value) and value:
        entries = list(value)
        if draw(st.booleans()):  # sometimes the deterministic order
            entries.sort(key=lambda e: write_canonical_key(e[0]))
        if entries and draw(st.integers(0, 9)) == 0:
            entries.append(entries[0])  # a duplicated key
        body = b"".join(write(draw, k) + write(draw, v) for k, v in entries)
        if indefinite:
            return b"\xbf" + body + b"\xff"
        return write_head(draw, 5, len(entries)) + body
    if isinstance(value, list):
        body = b"".join(write(draw, item) for item in value)
        if indefinite:
            return b"\x9f" + body + b"\xff"
        return write_head(draw, 4, len(value)) + body
    raise AssertionError(type(value))


def write_canonical_key(key: Any) -> bytes:
    try:
        return dcbor.encode(key)
    except TypeError:
        return b"\xff" + struct.pack(">d", key) if type(key) is float else b"\xff"


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_path_decides_as_the_exact_path(data: st.DataObject) -> None:
    value = data.draw(values)
    encoded = write(data.draw, value)
    check(encoded)
    if encoded:  # and one mutated byte
        at = data.draw(st.integers(0, len(encoded) - 1))
        check(encoded[:at] + bytes([data.draw(st.integers(0, 255))]) + encoded[at + 1 :])


@settings(max_examples=1000, deadline=None)
@given(
    st.recursive(
        st.one_of(small_ints, st.binary(max_size=20), st.text(max_size=6), st.booleans(), st.none()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=5),
            st.dictionaries(st.one_of(small_ints, small_ints, ints), inner, max_size=5),
            st.builds(cbor2.CBORTag, st.integers(0, 300), inner),
        ),
        max_leaves=25,
    )
)
def test_fast_path_accepts_deterministic_encodings(value: Any) -> None:
    """On what honest senders write (one-byte keys and the odd larger one), both paths agree."""
    check(dcbor.encode(value))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=80))
def test_fast_path_on_random_bytes(data: bytes) -> None:
    check(data)


def test_fast_path_on_bundles_and_their_reorderings() -> None:
    """Payload-shaped maps: sorted one-byte keys take the fast path; other orders and key kinds don't."""
    good = {1: 1, 2: 7, 3: 0, 4: bytes(16), 5: [3900, -60, 3600, 0, 0], 6: 1, 7: [{0: "t", 2: 5, -3: 9}]}
    data = dcbor.encode(good)
    assert dcbor._fast_deterministic(dcbor.decode_well_formed(data), data)
    assert dcbor.decode(data) == good
    swapped = cbor2.dumps({2: 7, 1: 1})  # insertion order, not sorted
    assert not dcbor._fast_deterministic(dcbor.decode_well_formed(swapped), swapped)
    mixed = dcbor.encode({24: 0, -1: 0})  # bytewise: 0x1818 before 0x20 (cbor2 canonical differs)
    assert not dcbor._fast_deterministic(dcbor.decode_well_formed(mixed), mixed)
    assert dcbor.decode(mixed) == {24: 0, -1: 0}
    half = bytes.fromhex("f93e00")  # 1.5 as a half float: never deterministic in pinseal
    assert verdict(dcbor.decode, half)[0] == "nondeterministic"
    double = bytes.fromhex("81fb3ff8000000000000")  # [1.5] as cbor2 writes it
    assert verdict(dcbor.decode, double)[0] == "nondeterministic"
