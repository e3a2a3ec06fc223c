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

BATCH_ROWS = 20000  # per query; a backlog (a restart under load) is read over several cycles
STARTUP_ROWS = 20000  # how far back a restart looks for each device's latest values


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


def recent(conn: sqlite3.Connection, limit: int = STARTUP_ROWS) -> tuple[list[StoredRecord], int]:
    """The last `limit` records (for the state after a restart) and the rowid to follow on from."""
    top = last_rowid(conn)
    rows = conn.execute(
        _SELECT + "WHERE r.rowid > ? AND r.rowid <= ? ORDER BY r.rowid", (top - limit, top)
    ).fetchall()
    return _records(rows), top


def after(conn: sqlite3.Connection, rowid: int, limit: int = BATCH_ROWS) -> list[StoredRecord]:
    """Records committed after `rowid`, oldest first, at most `limit`."""
    rows = conn.execute(_SELECT + "WHERE r.rowid > ? ORDER BY r.rowid LIMIT ?", (rowid, limit)).fetchall()
    return _records(rows)
