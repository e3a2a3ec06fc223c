"""Plausible sensor values for `make run`'s virtual boards: a daily curve with seeded noise per board.

Constant values made the dashboard's plots flat lines; random ones made them noise. Each board gets a sine
over a day (temperature and humidity opposite, as indoors) with a slow wandering noise (the sensors plugin's
`noise`/`seed`, docs/virtual-board.md "Sensors"), its seed from the board's name so a board draws the same
curve on every run, and the phase from the host's time of day so the curve's warm part falls in the
afternoon.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Any

DAY_S = 86400


def seconds_since_midnight(now: float | None = None) -> float:
    t = time.localtime(time.time() if now is None else now)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec


def script_for(name: str, sensors: list[str], has_battery: bool, now: float | None = None) -> dict[str, Any]:
    """The sensors script for board `name` with the profile's sensor types (bme280, sht3x) and battery."""
    seed = zlib.crc32(name.encode())
    # value(uptime s) = base + A sin(2 pi (s + phase) / day) peaks where s + phase = day / 4; for the peak at
    # 15:00 host time (time of day now + s = 15 h) that is phase = time of day now - 9 h
    phase = seconds_since_midnight(now) - 9 * 3600
    offset = (seed % 30) / 10  # boards in different rooms: up to 3 degC apart

    def daily(base: float, amplitude: float, noise: float, shift_s: float, k: int) -> dict[str, Any]:
        return {
            "base": round(base, 2),
            "amplitude": amplitude,
            "period_s": DAY_S,
            "phase_s": round(phase + shift_s),
            "noise": noise,
            "noise_step_s": 600,
            "seed": (seed + k) & 0xFFFFFFFF,
        }

    script: dict[str, Any] = {}
    for n, kind in enumerate(sensors):  # two sensors on one board read close, not the same
        quantities = {
            "t": daily(20.0 + offset + 0.3 * n, 2.5, 0.4, 0, 10 * n + 1),
            "h": daily(48.0 - offset - 1.5 * n, 8.0, 2.0, DAY_S / 2, 10 * n + 2),  # drier when warmer
        }
        if kind == "bme280":
            quantities["p"] = {**daily(101325.0, 120.0, 60.0, 0, 3), "period_s": 3 * DAY_S}
        script[kind] = quantities
    if has_battery:
        script["battery"] = {"mv": daily(3950.0, 40.0, 15.0, DAY_S / 4, 4)}
    return script


def write_script(path: Path, name: str, profile: dict[str, Any], now: float | None = None) -> Path:
    kinds = sorted({s["type"] for s in profile.get("sensors", [])})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(script_for(name, kinds, bool(profile.get("battery")), now), indent=1))
    return path
