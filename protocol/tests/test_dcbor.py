"""Deterministic CBOR: known encodings, each rule's rejection, and round-trip properties."""

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_protocol import dcbor
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import Malformed, NonDeterministic


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65536, "1a00010000"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-25, "3818"),
        (-(2**64), "3bffffffffffffffff"),
        (b"", "40"),
        ("Cel", "6343656c"),
        ([], "80"),
        ({}, "a0"),
        (False, "f4"),
        (True, "f5"),
        (None, "f6"),
        (DecimalFraction(-2, 2150), "c482211908 66".replace(" ", "")),
        # Keys sorted bytewise by encoding: 0..23 (00..17), 24 (1818), then negatives (20..).
        ({-3: 0, 0: 0, 24: 0, -1: 0, 1: 0}, "a500000100181800200022 00".replace(" ", "")),
        ({"b": 1, "a": 2, 100: 3}, "a31864036161026162 01".replace(" ", "")),
    ],
)
def test_known_encodings(value: Any, hex_: str) -> None:
    assert dcbor.encode(value).hex() == hex_
    dcbor.decode(bytes.fromhex(hex_))


def test_decimal_fraction_kept_exactly() -> None:
    for exponent, mantissa in [(-2, 2100), (-1, 210), (-3, 3912), (-2, -525), (0, 0)]:
        data = dcbor.encode(DecimalFraction(exponent, mantissa))
        decoded = dcbor.decode(data)
        assert decoded == cbor2.CBORTag(4, [exponent, mantissa])
        assert dcbor.encode(decoded) == data
    assert dcbor.encode(DecimalFraction(-2, 2100)) != dcbor.encode(DecimalFraction(-1, 210))


@pytest.mark.parametrize(
    ("hex_", "error"),
    [
        ("1817", NonDeterministic),  # 23 in two bytes
        ("190017", NonDeterministic),
        ("1a000000ff", NonDeterministic),
        ("5801ff", NonDeterministic),  # 1-byte string with a 2-byte head
        ("5f41ff ff".replace(" ", ""), NonDeterministic),  # indefinite byte string
        ("9f01ff", NonDeterministic),  # indefinite array
        ("bf0101ff", NonDeterministic),  # indefinite map
        ("a2020101 01".replace(" ", ""), NonDeterministic),  # unsorted keys
        ("a201010102", NonDeterministic),  # duplicate key
        ("a2200001 00".replace(" ", ""), NonDeterministic),  # -1 before 1
        ("f94d60", NonDeterministic),  # half float 21.5
        ("fb4035800000000000", NonDeterministic),
        ("d81c 01".replace(" ", ""), None),  # tag 28 kept raw: fine
        ("0102", Malformed),  # trailing
        ("", Malformed),
        ("19 01".replace(" ", ""), Malformed),  # truncated
        ("ff", Malformed),  # lone break
        ("62c328", Malformed),  # invalid UTF-8
        ("5b ffffffffffffffff".replace(" ", ""), Malformed),  # absurd length
        ("81" * 40 + "00", Malformed),  # nesting beyond the limit
        ("c4" * 40 + "00", Malformed),  # tags count as nesting too
    ],
)
def test_rejections(hex_: str, error: type[Exception] | None) -> None:
    data = bytes.fromhex(hex_)
    if error is None:
        dcbor.decode(data)
    else:
        with pytest.raises(error):
            dcbor.decode(data)


def test_tags_are_not_interpreted() -> None:
    for hex_ in ["c101", "c24101", "d81d00", "d9d9f701", "c482212a"]:
        value = dcbor.decode(bytes.fromhex(hex_))
        assert isinstance(value, cbor2.CBORTag)


def test_encode_refuses_floats() -> None:
    with pytest.raises(TypeError):
        dcbor.encode(1.5)


keys_ = st.one_of(st.integers(-(2**64), 2**64 - 1), st.text(max_size=8), st.binary(max_size=8))
scalars = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.builds(DecimalFraction, st.integers(-30, 30), st.integers(-(2**63), 2**63 - 1)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(keys_, inner, max_size=6),
        st.builds(cbor2.CBORTag, st.integers(6, 2**16), inner),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip(value: Any) -> None:
    data = dcbor.encode(value)
    decoded = dcbor.decode(data)  # our own output is always accepted
    assert dcbor.encode(decoded) == data


plain = st.recursive(
    st.one_of(st.integers(-(2**64), 2**64 - 1), st.binary(max_size=30), st.text(max_size=10), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.integers(-24, 23), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(plain)
def test_agrees_with_cbor2(value: Any) -> None:
    """With one-byte keys, cbor2's canonical mode (length-first sort) and RFC 8949 bytewise coincide."""
    assert dcbor.encode(value) == cbor2.dumps(value, canonical=True)
    assert cbor2.loads(dcbor.encode(value)) == value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(-(2**31), 2**31), st.integers(-(2**64), 2**64 - 1), max_size=10))
def test_maps_sorted_bytewise(mapping: dict[int, int]) -> None:
    data = dcbor.encode(mapping)
    encoded_keys = [dcbor.encode(k) for k in cbor2.loads(data)]
    assert encoded_keys == sorted(encoded_keys)
    assert cbor2.loads(data) == mapping


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_reject_cleanly(data: bytes) -> None:
    try:
        value = dcbor.decode(data)
    except (Malformed, NonDeterministic):
        return
    assert dcbor.encode(value) == data
