"""Readings as a SenML pack in its CBOR form (RFC 8428 §6), docs/protocol.md §4.

A reading is the group of records taken at one instant: its first record carries the base time `bt`,
the rest carry neither `bt` nor `t` and share it. Values are integers or decimal fractions straight
from the drivers' fixed-point outputs (never floats, so every board produces the same bytes), or a
string `vs` naming a failed sensor.

Parsing is strict where ignoring something would misread the data: must-understand labels (text
ending in "_", RFC 8428 §4.4) and the registered labels v1 does not use (base name/unit/value/sum,
version, time offsets, other value kinds) are rejected; genuinely unknown labels are ignored.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from pinseal_protocol import dcbor
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import InvalidPayload

# RFC 8428 §6 integer labels.
BVER = -1
BN = -2
BT = -3
BU = -4
BV = -5
BS = -6
N = 0
U = 1
V = 2
VS = 3
VB = 4
S = 5
T = 6
UT = 7
VD = 8

# Registered labels a v1 reading never carries; each would change a name, value or time if honoured.
UNSUPPORTED_LABELS: frozenset[int] = frozenset({BVER, BN, BU, BV, BS, VB, S, T, UT, VD})

Value = int | DecimalFraction


@dataclass(frozen=True)
class Record:
    """One SenML record of a reading: a name and either a numeric value or an error string."""

    name: str
    unit: str | None = None
    value: Value | None = None
    string_value: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.string_value is None):
            raise ValueError("a record has exactly one of value and string_value")


@dataclass(frozen=True)
class Reading:
    """The records taken at one sampling instant; `time` is the SenML base time in whole seconds."""

    time: int
    records: tuple[Record, ...]


def encode_pack(readings: Sequence[Reading]) -> list[dict[int, Any]]:
    """The SenML pack (a CBOR-ready list of label->value maps) for `readings`, in order."""
    if not readings:
        raise ValueError("a pack holds at least one reading")
    pack: list[dict[int, Any]] = []
    for reading in readings:
        if not reading.records:
            raise ValueError("a reading holds at least one record")
        if not dcbor.is_uint(reading.time):
            raise ValueError("a reading time is an unsigned integer")
        for index, record in enumerate(reading.records):
            item: dict[int, Any] = {N: record.name}
            if record.unit is not None:
                item[U] = record.unit
            if record.string_value is not None:
                item[VS] = record.string_value
            else:
                item[V] = record.value
            if index == 0:
                item[BT] = reading.time
            pack.append(item)
    return pack


def parse_pack(pack: Any) -> tuple[Reading, ...]:
    """Readings from a decoded SenML pack; `InvalidPayload` for anything v1 cannot read exactly."""
    if not isinstance(pack, list) or not pack:
        raise InvalidPayload("SenML pack must be a non-empty array")
    readings: list[Reading] = []
    time: int | None = None
    records: list[Record] = []
    for item in pack:
        if not isinstance(item, Mapping):
            raise InvalidPayload("SenML record must be a map")
        labels = _labels(item)
        if BT in labels:
            bt = labels[BT]
            if not dcbor.is_uint(bt):
                raise InvalidPayload("bt must be an unsigned integer (whole seconds)")
            if time is not None:
                readings.append(Reading(time, tuple(records)))
            time, records = bt, []
        elif time is None:
            raise InvalidPayload("a SenML pack must start with a record carrying bt")
        records.append(_record(labels))
    assert time is not None
    readings.append(Reading(time, tuple(records)))
    return tuple(readings)


def _labels(item: Mapping[Any, Any]) -> dict[int, Any]:
    """The integer labels of a record, after rejecting must-understand and unsupported ones."""
    labels: dict[int, Any] = {}
    for key, value in item.items():
        if isinstance(key, str):
            if key.endswith("_"):
                raise InvalidPayload(f"must-understand SenML label {key!r}")
        elif dcbor.is_int(key):
            if key in UNSUPPORTED_LABELS:
                raise InvalidPayload(f"SenML label {key} is not used by pinseal v1")
            labels[key] = value
    return labels


def _record(labels: dict[int, Any]) -> Record:
    name = labels.get(N)
    if not isinstance(name, str):
        raise InvalidPayload("SenML record needs a text name (n)")
    unit = labels.get(U)
    if unit is not None and not isinstance(unit, str):
        raise InvalidPayload("SenML unit (u) must be text")
    if (V in labels) == (VS in labels):
        raise InvalidPayload("SenML record needs exactly one of v and vs")
    if VS in labels:
        if not isinstance(labels[VS], str):
            raise InvalidPayload("SenML vs must be text")
        return Record(name, unit, string_value=labels[VS])
    return Record(name, unit, value=_value(labels[V]))


def _value(raw: Any) -> Value:
    if dcbor.is_int(raw):
        return int(raw)
    if isinstance(raw, cbor2.CBORTag) and raw.tag == dcbor.TAG_DECIMAL_FRACTION:
        parts = raw.value
        if isinstance(parts, list) and len(parts) == 2 and all(dcbor.is_int(p) for p in parts):
            return DecimalFraction(parts[0], parts[1])
    raise InvalidPayload("SenML v must be an integer or a decimal fraction 4([int, int])")
