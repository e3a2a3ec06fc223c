"""What Home Assistant is shown: readings the gateway has committed, read back from its database.

Why read the `readings` table rather than hook the pipeline: a row exists there only once its bundle
passed every check and its transaction committed (SQLite shows a reader nothing else), so "verified
readings only" holds by construction; the pipeline's hot path stays untouched, and nothing Home
Assistant's broker does (slow, down, refusing) can hold up or fail an ingest commit. The cost is one
small indexed query per `publish_every_s` in the database thread and up to that much delay.

Rows are followed by rowid: the gateway is the table's only writer and never deletes from it, so rowids
only grow, in commit order.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from pinseal_gateway.store.bundles import from_u64

STARTUP_ROWS = 100_000  # how far back a restart looks for each device's latest values
TAIL_ROWS = 256  # rows read back per device and cycle: its latest reading's records (one bundle's worth)


@dataclass(frozen=True)
class StoredRecord:
    rowid: int
    kid: bytes
    seq: int
    time: int
    name: str
    unit: str | None
    value: str | None
    wall_clock: bool  # `time` is Unix time (time source 1 or 2), not seconds since the device's boot


_SELECT = (
    "SELECT r.rowid, r.kid, r.seq, r.time, r.name, r.unit, r.value, b.time_source "
    "FROM readings r JOIN bundles b ON b.hash = r.bundle_hash "
)


def _records(rows: list[tuple[Any, ...]]) -> list[StoredRecord]:
    out = []
    for rowid, kid, seq, time_s, name, unit, value, time_source in rows:
        out.append(
            StoredRecord(
                rowid, bytes(kid), from_u64(seq), from_u64(time_s), name, unit, value, time_source in (1, 2)
            )
        )
    return out


def last_rowid(conn: sqlite3.Connection) -> int:
    (rowid,) = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM readings").fetchone()
    return int(rowid)


def latest_after(conn: sqlite3.Connection, rowid: int) -> tuple[list[StoredRecord], int]:
    """Each device's latest records committed after `rowid` (oldest first), and the rowid to follow on from.

    Home Assistant shows a device's latest values, so only the tail of each device's new rows is read
    back (the last `TAIL_ROWS`): the cost per cycle follows the number of devices that reported, not
    the number of readings, which under load would have the database thread read back everything it
    wrote. A device's rows of one bundle are contiguous (one bundle, one insert), so its newest reading
    is within the tail.
    """
    tops = conn.execute(
        "SELECT kid, MAX(rowid) FROM readings WHERE rowid > ? GROUP BY kid", (rowid,)
    ).fetchall()
    records: list[StoredRecord] = []
    for kid, top in tops:
        rows = conn.execute(
            _SELECT + "WHERE r.rowid > ? AND r.rowid <= ? AND r.kid = ? ORDER BY r.rowid",
            (max(rowid, top - TAIL_ROWS), top, kid),
        ).fetchall()
        records.extend(_records(rows))
    records.sort(key=lambda record: record.rowid)
    return records, max([rowid, *(top for _, top in tops)])


def recent(conn: sqlite3.Connection) -> tuple[list[StoredRecord], int]:
    """After a restart: each device's latest records among the last `STARTUP_ROWS`, and where to go on."""
    return latest_after(conn, max(0, last_rowid(conn) - STARTUP_ROWS))
