"""Read-only queries behind the HTTP API and the dashboard: readings over a time range, recent bundles,
batches with their forwarding state, recent rejections.

A reading's time is the device's `bt` when its bundle has a wall-clock time source (1 NTP, 2 gateway ack
time) that the verifier did not flag. With time source 0 the device only knew seconds since boot, and a
flagged bundle ("future", "stale") has a clock the gateway does not believe: for those the gateway's
receipt time of the bundle stands in (`time_estimated`), the only plausible wall-clock time anyone has,
and the device's own value stays in `device_time`.
Every query is bounded by a `limit` the caller chooses (the API caps it), newest first, so a request never
reads a device's whole history.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from pinseal_gateway.store import batches as batch_store
from pinseal_gateway.store.bundles import from_u64


@dataclass(frozen=True)
class ReadingRow:
    seq: int
    time: float
    time_estimated: bool
    device_time: int  # the reading's `bt` as the device signed it
    name: str
    unit: str | None
    value: str | None  # the SenML value as stored: an integer or "<mantissa>e<exponent>"
    error: str | None
    bundle_hash: bytes


_READING_COLUMNS = (
    "r.seq, r.time, r.name, r.unit, r.value, r.error, r.bundle_hash, b.time_source, b.time_flag, "
    "b.received_at"
)


def readings_between(
    conn: sqlite3.Connection, kid: bytes, start: float, end: float, limit: int
) -> tuple[list[ReadingRow], bool]:
    """A device's readings with start <= time <= end, oldest first: at most `limit` records, the newest
    ones when there are more (the bool says so).

    Two index range scans: readings (kid, time) for trusted wall-clock bundles, and the bundles of time
    source 0 or with a flagged clock through their partial index (kid, received_at), each newest first
    and stopped at `limit`.
    """
    wall = conn.execute(
        f"SELECT {_READING_COLUMNS}, r.rowid FROM readings r JOIN bundles b ON b.hash = r.bundle_hash "
        "WHERE r.kid = ? AND r.time BETWEEN ? AND ? AND NOT (b.time_source = 0 OR b.time_flag IS NOT NULL) "
        "ORDER BY r.time DESC, r.seq DESC, r.rowid DESC LIMIT ?",
        (kid, int(start), int(end), limit + 1),
    ).fetchall()
    since_boot = conn.execute(
        f"SELECT {_READING_COLUMNS}, r.rowid FROM bundles b "
        "JOIN readings r ON r.kid = b.kid AND r.seq BETWEEN b.seq AND b.last_seq AND r.bundle_hash = b.hash "
        "WHERE b.kid = ? AND (b.time_source = 0 OR b.time_flag IS NOT NULL) "
        "AND b.received_at BETWEEN ? AND ? "
        "ORDER BY b.received_at DESC, r.seq DESC, r.rowid DESC LIMIT ?",
        (kid, start, end, limit + 1),
    ).fetchall()
    # in record order within a reading (rowid: the order the device wrote them)
    rows = wall + since_boot
    readings = _spread([_reading(row[:-1]) for row in rows])
    ranked = sorted(zip(readings, (row[-1] for row in rows), strict=True), key=_rank, reverse=True)
    rows = [reading for reading, _rowid in ranked]
    truncated = len(rows) > limit
    newest = rows[:limit]
    newest.reverse()
    return newest, truncated


def _spread(rows: list[ReadingRow]) -> list[ReadingRow]:
    """Estimated times within a bundle keep the device's own spacing: the bundle's last reading at its
    receipt time, each earlier one as many seconds before it as the device's clock says (seconds since
    boot, or a wrong but steady clock), never after it."""
    last: dict[bytes, int] = {}
    for r in rows:
        if r.time_estimated:
            last[r.bundle_hash] = max(last.get(r.bundle_hash, r.device_time), r.device_time)
    if not last:
        return rows
    return [
        replace(r, time=r.time - min(last[r.bundle_hash] - r.device_time, MAX_SPREAD_S))
        if r.time_estimated
        else r
        for r in rows
    ]


MAX_SPREAD_S = 86400  # a bundle holds at most a day of readings (bundling.max_wait_s is far less)


def _rank(item: tuple[ReadingRow, Any]) -> tuple[float, int, int]:
    reading, rowid = item
    return (reading.time, reading.seq, int(rowid))


def _reading(row: tuple[object, ...]) -> ReadingRow:
    seq, time, name, unit, value, error, bundle_hash, time_source, time_flag, received_at = row
    device_time = from_u64(time)  # type: ignore[arg-type]
    estimated = time_source == 0 or time_flag is not None
    when = float(received_at) if estimated else float(device_time)  # type: ignore[arg-type]
    return ReadingRow(
        from_u64(seq),  # type: ignore[arg-type]
        when,
        estimated,
        device_time,  # type: ignore[arg-type]
        str(name),
        unit,  # type: ignore[arg-type]
        value,  # type: ignore[arg-type]
        error,  # type: ignore[arg-type]
        bytes(bundle_hash),  # type: ignore[arg-type]
    )


def latest_reading(conn: sqlite3.Connection, kid: bytes) -> list[ReadingRow]:
    """The records of the device's most recent reading (its high-water bundle's last one): two index
    lookups, since /api/devices asks this of every device every few seconds."""
    row = conn.execute(
        "SELECT b.hash, b.last_seq FROM device_state s JOIN bundles b ON b.hash = s.last_bundle_hash "
        "WHERE s.kid = ?",
        (kid,),
    ).fetchone()
    if row is None:
        return []
    rows = conn.execute(
        f"SELECT {_READING_COLUMNS} FROM readings r JOIN bundles b ON b.hash = r.bundle_hash "
        "WHERE r.kid = ? AND r.seq = ? AND r.bundle_hash = ? ORDER BY r.rowid",
        (kid, row[1], row[0]),
    ).fetchall()
    return [_reading(r) for r in rows]  # one reading: an estimated time is its bundle's receipt time


@dataclass(frozen=True)
class BundleRow:
    hash: bytes
    kid: bytes
    seq: int
    last_seq: int
    n_readings: int
    received_at: float
    batch_no: int | None
    sent_at: float | None
    chain_gap: bool
    time_flag: str | None

    @property
    def state(self) -> str:
        """pending (no batch yet), batched (sealed, not yet accepted by the network), forwarded, or the
        fate of a bundle the network refused (dead_letter) or already held (held_elsewhere)."""
        if self.batch_no is None:
            return "pending"
        if self.batch_no == batch_store.DEAD_LETTER:
            return "dead_letter"
        if self.batch_no == batch_store.HELD_ELSEWHERE:
            return "held_elsewhere"
        return "forwarded" if self.sent_at is not None else "batched"


def recent_bundles(conn: sqlite3.Connection, limit: int, kid: bytes | None = None) -> list[BundleRow]:
    """The most recently stored bundles (of one device, or all), newest first."""
    where, args = ("WHERE b.kid = ?", [kid]) if kid is not None else ("", [])
    rows = conn.execute(
        "SELECT b.hash, b.kid, b.seq, b.last_seq, b.n_readings, b.received_at, b.batch_id, o.sent_at, "
        "b.chain_gap, b.time_flag FROM bundles b LEFT JOIN uplink_outbox o ON o.batch_no = b.batch_id "
        f"{where} ORDER BY b.rowid DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [
        BundleRow(
            bytes(h),
            bytes(k),
            from_u64(seq),  # type: ignore[arg-type]
            from_u64(last),  # type: ignore[arg-type]
            int(n or 0),
            float(at),
            batch,
            sent,
            bool(gap),
            flag,
        )
        for h, k, seq, last, n, at, batch, sent, gap, flag in rows
    ]


@dataclass(frozen=True)
class BatchView:
    batch_no: int
    hash: bytes
    count: int
    created_at: float
    sent_at: float | None
    attempts: int
    last_error: str | None
    next_attempt_at: float | None

    @property
    def state(self) -> str:
        return "forwarded" if self.sent_at is not None else "queued"


def recent_batches(conn: sqlite3.Connection, limit: int) -> list[BatchView]:
    rows = conn.execute(
        "SELECT b.batch_no, b.hash, b.count, b.created_at, o.sent_at, coalesce(o.attempts, 0), o.last_error, "
        "o.next_attempt_at FROM batches b LEFT JOIN uplink_outbox o ON o.batch_no = b.batch_no "
        "ORDER BY b.batch_no DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        BatchView(n, bytes(h), c, at, sent, int(tries), err, nxt)
        for n, h, c, at, sent, tries, err, nxt in rows
    ]


@dataclass(frozen=True)
class RejectionRow:
    kid: bytes | None
    topic: str | None
    reason: str
    detail: str | None
    received_at: float


def recent_rejections(conn: sqlite3.Connection, limit: int) -> list[RejectionRow]:
    """The newest stored rejections, without their evidence bytes."""
    rows = conn.execute(
        "SELECT kid, topic, reason, detail, received_at FROM rejections ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [RejectionRow(None if k is None else bytes(k), t, r, d, at) for k, t, r, d, at in rows]
