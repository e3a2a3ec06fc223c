"""Readings in the units a person reads: SenML's `Cel`, `%RH`, `Pa`, `V` (docs/protocol.md §4) become
°C, %RH, hPa and V, and the short SenML names (`t`, `h`, `p`, `bat`, with an optional `:sensor` suffix such
as `t:sht3x`) get a quantity a person recognises.

Stored values stay exactly what the device signed (an integer or `<mantissa>e<exponent>`); conversion
happens only on the way out, in the API, the dashboard and the console.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DisplayUnit:
    symbol: str
    scale: float
    decimals: int


DISPLAY_UNITS: dict[str, DisplayUnit] = {
    "Cel": DisplayUnit("°C", 1.0, 1),
    "%RH": DisplayUnit("%RH", 1.0, 0),
    "Pa": DisplayUnit("hPa", 0.01, 1),
    "V": DisplayUnit("V", 1.0, 2),
}

QUANTITIES: dict[str, str] = {"t": "temperature", "h": "humidity", "p": "pressure", "bat": "battery"}


@dataclass(frozen=True)
class HumanValue:
    value: float | None  # None: a failed sensor (error record) or a value that is not a number
    unit: str  # the display unit ("°C", "hPa", ...), or the SenML unit when there is no conversion


def human_value(unit: str | None, value_text: str | None) -> HumanValue:
    """A stored SenML value in its display unit, rounded to what the sensor resolves."""
    if value_text is None:
        return HumanValue(
            None, "" if unit is None else DISPLAY_UNITS.get(unit, DisplayUnit(unit, 1, 3)).symbol
        )
    try:
        raw = float(value_text)  # "2150e-2" and "101325" both parse exactly as written
    except ValueError:
        return HumanValue(None, unit or "")
    display = DISPLAY_UNITS.get(unit or "")
    if display is None:
        return HumanValue(raw, unit or "")
    return HumanValue(round(raw * display.scale, display.decimals + 1), display.symbol)


def quantity(name: str) -> str:
    """`t` -> "temperature", `t:sht3x` -> "temperature (sht3x)"; unknown names stay as they are."""
    base, _, sensor = name.partition(":")
    label = QUANTITIES.get(base, base)
    return f"{label} ({sensor})" if sensor else label


def format_value(unit: str | None, value_text: str | None) -> str:
    """One value as a person reads it: "21.3 °C", "1013.2 hPa"; an error record's text as it is."""
    human = human_value(unit, value_text)
    if human.value is None:
        return value_text or "error"
    display = DISPLAY_UNITS.get(unit or "")
    decimals = display.decimals if display else 3
    return f"{human.value:.{decimals}f} {human.unit}".strip()
