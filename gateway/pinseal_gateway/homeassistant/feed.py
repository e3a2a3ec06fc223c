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


_SELECT = "SELECT rowid, kid, seq, time, name, unit, value FROM readings "


def _records(rows: list[tuple[object, ...]]) -> list[StoredRecord]:
    out = []
    for rowid, kid, seq, time_s, name, unit, value in rows:
        seq_i, time_i = from_u64(seq), from_u64(time_s)  # type: ignore[arg-type]
        assert seq_i is not None and time_i is not None
        out.append(StoredRecord(int(rowid), bytes(kid), seq_i, time_i, str(name), unit, value))  # type: ignore[arg-type,call-overload]
    return out


def last_rowid(conn: sqlite3.Connection) -> int:
    (rowid,) = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM readings").fetchone()
    return int(rowid)


def recent(conn: sqlite3.Connection, limit: int = STARTUP_ROWS) -> tuple[list[StoredRecord], int]:
    """The last `limit` records (for the state after a restart) and the rowid to follow on from."""
    top = last_rowid(conn)
    rows = conn.execute(
        _SELECT + "WHERE rowid > ? AND rowid <= ? ORDER BY rowid", (top - limit, top)
    ).fetchall()
    return _records(rows), top


def after(conn: sqlite3.Connection, rowid: int, limit: int = BATCH_ROWS) -> list[StoredRecord]:
    """Records committed after `rowid`, oldest first, at most `limit`."""
    rows = conn.execute(_SELECT + "WHERE rowid > ? ORDER BY rowid LIMIT ?", (rowid, limit)).fetchall()
    return _records(rows)
