"""Home Assistant MQTT discovery: topics and payloads, pure functions of the registry and the readings.

One Home Assistant device per pinseal device, one `sensor` entity per quantity the firmware measures
(docs/protocol.md §4 names and units), each announced by a retained config on
`<discovery_prefix>/sensor/pinseal_<kid>/<key>/config`. All of a device's entities read one JSON state
topic (`<state_prefix>/<kid>/state`, a `value_template` each), so one reading is one message. An entity
is available only while both the gateway (its last will says when it is gone) and the device (online,
not silent, not revoked) are: `availability_mode: all` over the two topics.

The keys used are the ones listed, with their meaning and source, in
gateway/tests/data/ha_discovery_keys.json, which the tests check every payload against.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

ONLINE = "online"
OFFLINE = "offline"
COMPONENT = "sensor"


@dataclass(frozen=True)
class SensorKind:
    """How one SenML quantity (name and unit as the firmware sends it) appears in Home Assistant."""

    senml_name: str
    senml_unit: str
    key: str  # the state JSON's key and the entity's object id
    name: str
    device_class: str
    unit: str  # Home Assistant's unit_of_measurement (one it accepts for `device_class`)
    scale: Decimal  # SenML value x scale = the value in `unit`
    precision: int
    entity_category: str | None = None


SENSOR_KINDS: dict[str, SensorKind] = {
    kind.senml_name: kind
    for kind in (
        SensorKind("t", "Cel", "temperature", "Temperature", "temperature", "°C", Decimal(1), 1),
        SensorKind("h", "%RH", "humidity", "Humidity", "humidity", "%", Decimal(1), 1),
        SensorKind("p", "Pa", "pressure", "Pressure", "pressure", "hPa", Decimal("0.01"), 1),
        SensorKind("bat", "V", "battery", "Battery voltage", "voltage", "V", Decimal(1), 2, "diagnostic"),
    )
}
"""Only these become entities: a device's names and units are untrusted input, so nothing it sends
is ever turned into a topic or an entity it did not come from this table."""


@dataclass(frozen=True)
class Topics:
    """Where everything goes, from the `[homeassistant]` prefixes."""

    discovery_prefix: str
    state_prefix: str

    @property
    def status(self) -> str:
        """Home Assistant's birth and last-will topic."""
        return f"{self.discovery_prefix}/status"

    @property
    def gateway_availability(self) -> str:
        return f"{self.state_prefix}/gateway/availability"

    def config(self, kid_hex: str, key: str) -> str:
        return f"{self.discovery_prefix}/{COMPONENT}/pinseal_{kid_hex}/{key}/config"

    def state(self, kid_hex: str) -> str:
        return f"{self.state_prefix}/{kid_hex}/state"

    def availability(self, kid_hex: str) -> str:
        return f"{self.state_prefix}/{kid_hex}/availability"


def origin(version: str) -> dict[str, str]:
    return {"name": "pinseal-gateway", "sw_version": version}


def device_info(kid_hex: str, label: str | None) -> dict[str, Any]:
    return {
        "identifiers": [f"pinseal_{kid_hex}"],
        "name": label or f"pinseal {kid_hex[:8]}",
        "manufacturer": "pinseal",
        "model": "pinseal sensor board",
        "serial_number": kid_hex,
    }


def sensor_config(
    topics: Topics, kid_hex: str, label: str | None, kind: SensorKind, version: str
) -> dict[str, Any]:
    """The retained discovery config of one device's one sensor."""
    config: dict[str, Any] = {
        "name": kind.name,
        "unique_id": f"pinseal_{kid_hex}_{kind.key}",
        "state_topic": topics.state(kid_hex),
        "value_template": f"{{{{ value_json.{kind.key} }}}}",
        "device_class": kind.device_class,
        "unit_of_measurement": kind.unit,
        "state_class": "measurement",
        "suggested_display_precision": kind.precision,
        "availability": [{"topic": topics.gateway_availability}, {"topic": topics.availability(kid_hex)}],
        "availability_mode": "all",
        "device": device_info(kid_hex, label),
        "origin": origin(version),
    }
    if kind.entity_category is not None:
        config["entity_category"] = kind.entity_category
    return config


def device_configs(topics: Topics, kid_hex: str, label: str | None, version: str) -> list[tuple[str, bytes]]:
    """(topic, payload) of every sensor config of a device: all kinds, so its entities exist before its
    first reading (a sensor the board lacks stays "unknown")."""
    return [
        (topics.config(kid_hex, kind.key), encode(sensor_config(topics, kid_hex, label, kind, version)))
        for kind in SENSOR_KINDS.values()
    ]


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def ha_value(kind: SensorKind, unit: str | None, value: str | None) -> float | None:
    """A stored reading's value (`readings.value`, e.g. "2150e-2") in the entity's unit; None when it is
    missing, in another unit than the table's, or not a finite number (it becomes "unknown")."""
    if value is None or unit != kind.senml_unit:
        return None
    try:
        number = Decimal(value) * kind.scale
        if not number.is_finite():
            return None
        result = float(round(number, kind.precision + 2))
    except (ArithmeticError, ValueError):  # decimal's Overflow and InvalidOperation: absurd exponents
        return None
    return result if math.isfinite(result) else None


def iso_time(unix_s: int) -> str | None:
    try:
        return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


class DeviceState:
    """A device's latest verified values, merged reading by reading (each key: its newest value)."""

    def __init__(self) -> None:
        self.seq = -1
        self.time: int | None = None
        self.values: dict[str, float | None] = {}

    def apply(self, seq: int, time_s: int | None, name: str, unit: str | None, value: str | None) -> bool:
        """Take one stored record; False (ignored) when it is older than what is held or not in the table.
        `time_s`: Unix time, or None when the device did not know it (time source 0).

        A resent bundle that fills a gap arrives after newer ones: its readings must not roll the
        state back.
        """
        kind = SENSOR_KINDS.get(name)
        if kind is None or seq < self.seq:
            return False
        self.seq = seq
        self.time = time_s
        self.values[kind.key] = ha_value(kind, unit, value)
        return True

    def payload(self) -> bytes:
        body: dict[str, Any] = dict(self.values)
        body["seq"] = self.seq
        body["time"] = None if self.time is None else iso_time(self.time)
        return encode(body)
