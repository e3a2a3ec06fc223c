"""The inputs the vectors are made from: fixed times, readings, bundle fields, and their JSON form.

The JSON form is shared with the protocol tests, which read `input.readings` back to compare what a
receiver parsed with what the sender meant.
"""

from collections.abc import Sequence
from typing import Any

from pinseal_protocol import senml
from pinseal_protocol.bundle import ZERO_PREV, Status
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.senml import Reading, Record

T0 = 1767225600  # 2026-01-01T00:00:00Z
PERIOD = 60

U64_EDGES = ((2**63, "2_63"), (2**64 - 1, "max"))
STATUS = Status(battery_mv=3912, rssi_dbm=-67, uptime_s=3600, dropped=0, reset_cause=0)


def value_to_json(value: senml.Value) -> Any:
    """Decimal fraction -> [exponent, mantissa]; integer -> integer."""
    if isinstance(value, DecimalFraction):
        return [value.exponent, value.mantissa]
    return value


def value_from_json(value: Any) -> senml.Value:
    """The inverse of `value_to_json`."""
    if isinstance(value, list):
        return DecimalFraction(value[0], value[1])
    return int(value)


def readings_to_json(readings: Sequence[Reading]) -> list[dict[str, Any]]:
    """Readings as the vectors' `input.readings` (protocol/vectors/README.md)."""
    out = []
    for reading in readings:
        records = []
        for record in reading.records:
            item: dict[str, Any] = {"n": record.name}
            if record.unit is not None:
                item["u"] = record.unit
            if record.string_value is not None:
                item["vs"] = record.string_value
            else:
                assert record.value is not None
                item["v"] = value_to_json(record.value)
            records.append(item)
        out.append({"time": reading.time, "records": records})
    return out


def readings_from_json(items: list[dict[str, Any]]) -> tuple[Reading, ...]:
    """The inverse of `readings_to_json`."""
    return tuple(
        Reading(
            item["time"],
            tuple(
                Record(
                    r["n"],
                    r.get("u"),
                    value=value_from_json(r["v"]) if "v" in r else None,
                    string_value=r.get("vs"),
                )
                for r in item["records"]
            ),
        )
        for item in items
    )


def thp(time: int, t: int, h: int, p: int) -> Reading:
    """A temperature/humidity/pressure reading from the drivers' fixed-point outputs."""
    return Reading(
        time,
        (
            Record("t", "Cel", DecimalFraction(-2, t)),
            Record("h", "%RH", DecimalFraction(-2, h)),
            Record("p", "Pa", p),
        ),
    )


def series(n: int, start: int = T0) -> tuple[Reading, ...]:
    """`n` t/h/p readings one PERIOD apart, values drifting slowly."""
    return tuple(thp(start + PERIOD * i, 2150 + 3 * i, 4512 - 7 * i, 101325 + i) for i in range(n))


def inputs(
    *,
    boot: int = 3,
    seq: int = 1000,
    prev: bytes = ZERO_PREV,
    status: Status = STATUS,
    time_source: int = 1,
    readings: Sequence[Reading] | None = None,
) -> dict[str, Any]:
    """A bundle's fields (the keyword arguments of `bundle.seal`), defaulting to one reading at T0."""
    return {
        "boot": boot,
        "seq": seq,
        "prev": prev,
        "status": status,
        "time_source": time_source,
        "readings": tuple(readings if readings is not None else series(1)),
    }
