"""Deterministic CBOR (RFC 8949 §4.2.1) as pinseal v1 uses it (docs/protocol.md §2).

Signed bytes are stored, hashed and resent byte for byte, so a receiver must accept exactly one
encoding per value. `decode` lets cbor2 judge well-formedness, then re-encodes what it read with
`encode` (our own small encoder, so the rules are visible here rather than depending on an encoder's
"canonical" flavour) and rejects the input unless the bytes are identical.

Tags are never interpreted while decoding: cbor2's semantic decoders would turn tag 4 into a
`Decimal` (which re-encodes differently, e.g. normalised), tag 1 into a datetime, tags 28/29 into
shared (even cyclic) references. Every tag comes back as a plain `cbor2.CBORTag`, which re-encodes
to the same bytes.
"""

import io
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from pinseal_protocol.errors import Malformed, NonDeterministic

# Nesting limit for untrusted input: pinseal messages nest at most ~6 deep; this keeps the re-encoder's
# recursion bounded.
MAX_DEPTH = 32

TAG_DECIMAL_FRACTION = 4


@dataclass(frozen=True)
class DecimalFraction:
    """RFC 8949 §3.4.4 decimal fraction `4([exponent, mantissa])`, value = mantissa * 10**exponent.

    Kept as the two integers the device wrote (never normalised, never a float or `Decimal`), so that
    `[-2, 2100]` and `[-1, 210]` stay different values with different bytes.
    """

    exponent: int
    mantissa: int

    def __str__(self) -> str:
        return f"{self.mantissa}e{self.exponent}"


def is_int(value: object) -> bool:
    """True for a CBOR integer as decoded (Python bool is an int subclass but is CBOR true/false)."""
    return type(value) is int


def is_uint(value: object) -> bool:
    """True for a CBOR unsigned integer."""
    return type(value) is int and value >= 0


def head(major: int, argument: int) -> bytes:
    """The shortest head for a major type and argument (RFC 8949 §3, §4.2.1 rule 1)."""
    mt = major << 5
    if argument < 24:
        return bytes([mt | argument])
    if argument < 0x100:
        return bytes([mt | 24, argument])
    if argument < 0x10000:
        return bytes([mt | 25]) + argument.to_bytes(2, "big")
    if argument < 0x100000000:
        return bytes([mt | 26]) + argument.to_bytes(4, "big")
    if argument < 0x10000000000000000:
        return bytes([mt | 27]) + argument.to_bytes(8, "big")
    raise ValueError(f"CBOR argument out of range: {argument}")


def encode(value: Any) -> bytes:
    """Encode `value` deterministically. Raises TypeError for floats and unsupported types."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    if value is False:
        out.append(0xF4)
    elif value is True:
        out.append(0xF5)
    elif value is None:
        out.append(0xF6)
    elif value is cbor2.undefined:
        out.append(0xF7)
    elif type(value) is int:
        if not -(2**64) <= value < 2**64:
            raise TypeError("integer outside the CBOR major type 0/1 range (bignums are tags)")
        out += head(0, value) if value >= 0 else head(1, -1 - value)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out += head(2, len(data))
        out += data
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out += head(3, len(data))
        out += data
    elif isinstance(value, list | tuple):
        out += head(4, len(value))
        for item in value:
            _encode(item, out)
    elif isinstance(value, Mapping):
        pairs = sorted(((encode(k), v) for k, v in value.items()), key=lambda pair: pair[0])
        for (a, _), (b, _) in itertools.pairwise(pairs):
            if a == b:
                raise TypeError("duplicate map key")
        out += head(5, len(pairs))
        for key_bytes, item in pairs:
            out += key_bytes
            _encode(item, out)
    elif isinstance(value, DecimalFraction):
        out += head(6, TAG_DECIMAL_FRACTION)
        _encode([value.exponent, value.mantissa], out)
    elif isinstance(value, cbor2.CBORTag):
        out += head(6, value.tag)
        _encode(value.value, out)
    elif isinstance(value, cbor2.CBORSimpleValue):
        # Simple values 0..23 live in the initial byte; 32..255 take one extra byte.
        out += bytes([0xE0 | value.value]) if value.value < 24 else bytes([0xF8, value.value])
    else:
        raise TypeError(f"{type(value).__name__} has no deterministic CBOR v1 encoding")


class _EveryTagRaw(Mapping[int, Any]):
    """A `semantic_decoders` mapping that claims every tag and returns it uninterpreted."""

    def __getitem__(self, tag: int) -> Any:
        return lambda value, _immutable: cbor2.CBORTag(tag, value)

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_RAW_TAGS = _EveryTagRaw()


def decode_well_formed(data: bytes) -> Any:
    """Decode exactly one CBOR item filling `data`, tags kept raw; `Malformed` otherwise."""
    fp = io.BytesIO(bytes(data))
    try:
        decoder = cbor2.CBORDecoder(
            fp,
            semantic_decoders=_RAW_TAGS,
            max_depth=MAX_DEPTH,
            allow_indefinite=True,  # well-formed; rejected as non-deterministic below
            allow_duplicate_keys=True,  # likewise: collapsing them changes the re-encoding
        )
        value = decoder.decode()
    except Exception as exc:  # cbor2 signals bad input with several exception types
        raise Malformed(f"not well-formed CBOR ({exc})") from exc
    if fp.tell() != len(data):
        raise Malformed(f"{len(data) - fp.tell()} trailing bytes after the CBOR item")
    return value


# Map keys the fast path accepts: integers with a one-byte encoding, each mapped to that byte. For
# such keys RFC 8949's bytewise key order is the order of these values.
_SMALL_KEY_BYTE: dict[int, int] = {k: k if k >= 0 else 0x20 | (-1 - k) for k in range(-24, 24)}
# Values cbor2 encodes exactly as `encode` does (shortest head, definite length, nothing else to choose).
_PLAIN_SCALARS = frozenset({int, str, bytes, bool, type(None)})


def _plainly_ordered(value: Any) -> bool:
    """True when `value` holds only plain scalars, lists, raw tags and maps whose keys are one-byte
    integers already in strictly increasing bytewise order (the order the decoder saw them in)."""
    kind = type(value)
    if kind is dict:
        previous = -1
        for key, item in value.items():
            key_byte = _SMALL_KEY_BYTE.get(key) if type(key) is int else None
            if key_byte is None or key_byte <= previous:
                return False
            previous = key_byte
            if type(item) not in _PLAIN_SCALARS and not _plainly_ordered(item):
                return False
        return True
    if kind is list:
        for item in value:  # noqa: SIM110 - a plain loop: all() over a generator is slower here
            if type(item) not in _PLAIN_SCALARS and not _plainly_ordered(item):
                return False
        return True
    if kind is cbor2.CBORTag:
        item = value.value
        return type(item) in _PLAIN_SCALARS or _plainly_ordered(item)
    return kind in _PLAIN_SCALARS


def _fast_deterministic(value: Any, data: bytes) -> bool:
    """A shortcut that may only say yes when `encode(value) == data` (and is tested to).

    When `_plainly_ordered(value)` holds, cbor2's (C) encoder in its default mode writes what `encode`
    writes: shortest heads, definite lengths, and map entries in insertion order, which the decoder
    kept from the input and which was just checked to be the bytewise order. No floats, simple
    values, `undefined` or non-integer keys reach it. Anything else, or any difference, goes to the
    exact path, which alone decides rejections.
    """
    if not _plainly_ordered(value):
        return False
    try:
        return cbor2.dumps(value) == data
    except Exception:  # whatever cbor2 dislikes, the exact path judges
        return False


def decode(data: bytes) -> Any:
    """Strict decode: well-formed, one item, and `data` is exactly its deterministic encoding."""
    data = bytes(data)
    value = decode_well_formed(data)
    if _fast_deterministic(value, data):
        return value
    try:
        again = encode(value)
    except (TypeError, ValueError) as exc:
        raise NonDeterministic(str(exc)) from exc
    if again != data:
        raise NonDeterministic("bytes differ from the deterministic encoding of their value")
    return value
