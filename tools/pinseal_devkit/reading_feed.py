"""Readings the gateway verified and stored, as people read them: `board1 21.3 °C 48 %RH 1013.2 hPa 3.91 V`.

`make run` prints a line per reading from the gateway's database (what was verified and committed, never what
a board merely printed), in SI units people use: Pa as hPa, battery millivolts as volts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# SenML unit -> (shown unit, factor); others are shown as stored
SHOWN_UNITS = {
    "Cel": ("°C", 1.0),
    "%RH": ("%RH", 1.0),
    "Pa": ("hPa", 0.01),
    "V": ("V", 1.0),
    "mV": ("V", 0.001),
}
DECIMALS = {"°C": 1, "%RH": 0, "hPa": 1, "V": 2}


def shown(value: str | None, unit: str | None, error: str | None) -> str:
    """One value in the unit a person reads, or the sensor's error."""
    if error:
        return f"{error}"
    if value is None:
        return "-"
    try:
        number = float(value)
    except ValueError:
        return value
    name, factor = SHOWN_UNITS.get(unit or "", (unit or "", 1.0))
    digits = DECIMALS.get(name, 2)
    return f"{number * factor:.{digits}f} {name}".rstrip()


@dataclass
class ReadingFeed:
    """New stored readings since the last call, one line per reading (a device's seq), oldest first."""

    db_path: Path
    last_rowid: int = 0

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if not self.db_path.exists():
            return []
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # the gateway has not made its tables yet
            return []
        finally:
            db.close()

    def start_at_end(self) -> None:
        """Skip what earlier runs stored: only this run's readings are printed."""
        rows = self._query("SELECT coalesce(max(rowid), 0) FROM readings")
        self.last_rowid = int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def lines(self) -> Iterator[str]:
        rows = self._query(
            "SELECT r.rowid, r.kid, r.seq, r.name, r.unit, r.value, r.error, d.label FROM readings r "
            "LEFT JOIN devices d ON d.kid = r.kid WHERE r.rowid > ? ORDER BY r.rowid LIMIT 5000",
            (self.last_rowid,),
        )
        current: tuple[object, object] | None = None
        parts: list[str] = []
        who = ""
        for rowid, kid, seq, name, unit, value, error, label in rows:
            self.last_rowid = int(rowid)  # type: ignore[call-overload]
            if current != (kid, seq):
                if parts:
                    yield f"{who} " + " ".join(parts)
                current, parts = (kid, seq), []
                who = str(label) if label else bytes(kid).hex()[:8]  # type: ignore[arg-type]
            text = shown(value, unit, error)  # type: ignore[arg-type]
            plain = str(name) in ("t", "h", "p", "bat")  # a second sensor's are named, e.g. t:sht3x
            parts.append(text if plain else f"{name} {text}")
        if parts:
            yield f"{who} " + " ".join(parts)
