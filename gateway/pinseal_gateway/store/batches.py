"""Batches (signed Merkle roots over accepted bundles), the uplink outbox that forwards them, and what a
refused batch leaves behind: superseded headers, dead-lettered bundles, bundles held elsewhere.

Every function takes a `sqlite3.Connection` and runs in the database thread (`Database.run`). None of
them commits on its own except `transaction`, so a caller can make a whole batch (batch row, leaf
assignment, outbox row) one atomic step: after a crash the store holds either all of it or none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_no INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    header BLOB NOT NULL,
    root BLOB NOT NULL,
    count INTEGER NOT NULL,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uplink_outbox (
    batch_no INTEGER PRIMARY KEY REFERENCES batches(batch_no),
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL
);
CREATE TABLE IF NOT EXISTS superseded_batches (
    hash BLOB PRIMARY KEY,
    batch_no INTEGER NOT NULL,
    header BLOB NOT NULL,
    root BLOB NOT NULL,
    count INTEGER NOT NULL,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    created_at REAL NOT NULL,
    leaves BLOB NOT NULL,
    superseded_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uplink_dead_letters (
    bundle_hash BLOB PRIMARY KEY,
    reason TEXT NOT NULL,
    detail TEXT,
    batch_hash BLOB NOT NULL,
    dead_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uplink_held_elsewhere (
    bundle_hash BLOB PRIMARY KEY,
    detail TEXT,
    batch_hash BLOB NOT NULL,
    held_at REAL NOT NULL
);
"""

DEAD_LETTER = -1
"""`bundles.batch_id` of a bundle the network refused for good (row in `uplink_dead_letters`): it is kept,
never batched again, and reported in status and metrics."""
HELD_ELSEWHERE = -2
"""`bundles.batch_id` of a bundle the network already held from elsewhere (row in `uplink_held_elsewhere`):
delivered, so never batched again."""


@dataclass(frozen=True)
class BatchRow:
    """One sealed batch as stored; `hash` is the batch hash (the uplink's idempotency key)."""

    batch_no: int
    hash: bytes
    header: bytes
    root: bytes
    count: int
    first_received: float
    last_received: float
    created_at: float


@dataclass(frozen=True)
class PendingBundle:
    """An accepted bundle not yet in any batch, in received (rowid) order.

    `time_flag` is the verifier's verdict on its reading times ("future", "stale" or None): the batch
    carries it to the network under the gateway's signature.
    """

    rowid: int
    hash: bytes
    raw: bytes
    received_at: float
    time_flag: str | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """The next batch the uplink has to deliver; `body` is sent byte for byte, never re-encoded."""

    batch_no: int
    batch_hash: bytes
    body: bytes
    attempts: int
    next_attempt_at: float
    last_error: str | None


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception.

    IMMEDIATE takes the write lock before the first read, so what we read (the last batch number, the
    unbatched bundles) cannot change under us if another connection (a CLI) writes too.
    """
    if conn.in_transaction:
        raise RuntimeError("a batch transaction must not nest inside another transaction")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


# ---- batches -----------------------------------------------------------------------------------------


def unbatched(conn: sqlite3.Connection, limit: int) -> list[PendingBundle]:
    """Up to `limit` bundles without a batch, oldest first (rowid = received order)."""
    rows = conn.execute(
        "SELECT rowid, hash, raw, received_at, time_flag FROM bundles WHERE batch_id IS NULL"
        " ORDER BY rowid LIMIT ?",
        (limit,),
    ).fetchall()
    return [PendingBundle(int(r[0]), bytes(r[1]), bytes(r[2]), float(r[3]), r[4]) for r in rows]


def count_unbatched(conn: sqlite3.Connection, limit: int) -> int:
    """How many bundles wait for a batch, counting no further than `limit` (cheap to poll)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM bundles WHERE batch_id IS NULL LIMIT ?)", (limit,)
    ).fetchone()
    return int(row[0])


def oldest_unbatched_received_at(conn: sqlite3.Connection) -> float | None:
    """When the oldest bundle still waiting for a batch arrived (None if none waits)."""
    row = conn.execute(
        "SELECT received_at FROM bundles WHERE batch_id IS NULL ORDER BY rowid LIMIT 1"
    ).fetchone()
    return None if row is None else float(row[0])


def _batch(row: tuple) -> BatchRow:
    return BatchRow(
        int(row[0]),
        bytes(row[1]),
        bytes(row[2]),
        bytes(row[3]),
        int(row[4]),
        float(row[5]),
        float(row[6]),
        float(row[7]),
    )


_BATCH_COLUMNS = "batch_no, hash, header, root, count, first_received, last_received, created_at"


def last_batch(conn: sqlite3.Connection) -> BatchRow | None:
    """The highest-numbered batch: the next one takes its number + 1 and its hash as `prev`."""
    row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY batch_no DESC LIMIT 1").fetchone()
    return None if row is None else _batch(row)


def get_batch(conn: sqlite3.Connection, batch_no: int) -> BatchRow | None:
    row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_no = ?", (batch_no,)).fetchone()
    return None if row is None else _batch(row)


def all_batches(conn: sqlite3.Connection) -> list[BatchRow]:
    """Every batch in number order (tests, status and audits; the chain is checked over these)."""
    rows = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY batch_no").fetchall()
    return [_batch(r) for r in rows]


def insert_batch(conn: sqlite3.Connection, batch: BatchRow) -> None:
    conn.execute(
        f"INSERT INTO batches ({_BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            batch.batch_no,
            batch.hash,
            batch.header,
            batch.root,
            batch.count,
            batch.first_received,
            batch.last_received,
            batch.created_at,
        ),
    )


def assign_leaves(conn: sqlite3.Connection, batch_no: int, bundle_hashes: list[bytes]) -> None:
    """Mark bundles as leaves 0..n-1 of a batch; refuses a bundle that is already batched."""
    cursor = conn.executemany(
        "UPDATE bundles SET batch_id = ?, leaf_index = ? WHERE hash = ? AND batch_id IS NULL",
        [(batch_no, index, h) for index, h in enumerate(bundle_hashes)],
    )
    if cursor.rowcount != len(bundle_hashes):
        raise RuntimeError(
            f"batch {batch_no}: {cursor.rowcount} of {len(bundle_hashes)} bundles could be assigned"
        )


def batch_bundle_hashes(conn: sqlite3.Connection, batch_no: int) -> list[bytes]:
    """A batch's bundle hashes in leaf order: its Merkle leaves (`pinseal_protocol.batch`)."""
    rows = conn.execute(
        "SELECT hash FROM bundles WHERE batch_id = ? ORDER BY leaf_index", (batch_no,)
    ).fetchall()
    return [bytes(r[0]) for r in rows]


@dataclass(frozen=True)
class BundlePlace:
    """Where a stored bundle sits: `batch_no`/`leaf_index` are None while it waits for a batch."""

    hash: bytes
    received_at: float
    batch_no: int | None
    leaf_index: int | None


def bundle_place(conn: sqlite3.Connection, bundle_hash: bytes) -> BundlePlace | None:
    row = conn.execute(
        "SELECT hash, received_at, batch_id, leaf_index FROM bundles WHERE hash = ?", (bundle_hash,)
    ).fetchone()
    if row is None:
        return None
    return BundlePlace(bytes(row[0]), float(row[1]), row[2], row[3])


# ---- uplink outbox -----------------------------------------------------------------------------------


def insert_outbox(conn: sqlite3.Connection, batch_no: int, body: bytes) -> None:
    conn.execute(
        "INSERT INTO uplink_outbox (batch_no, body, attempts, next_attempt_at) VALUES (?, ?, 0, 0)",
        (batch_no, body),
    )


def next_unsent(conn: sqlite3.Connection) -> OutboxEntry | None:
    """The lowest-numbered batch not yet confirmed by the network: the outbox drains strictly in order."""
    row = conn.execute(
        "SELECT o.batch_no, b.hash, o.body, o.attempts, o.next_attempt_at, o.last_error "
        "FROM uplink_outbox o JOIN batches b ON b.batch_no = o.batch_no "
        "WHERE o.sent_at IS NULL ORDER BY o.batch_no LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return OutboxEntry(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]), float(row[4]), row[5])


def outbox_depth(conn: sqlite3.Connection) -> int:
    """Batches sealed but not yet confirmed by the network."""
    return int(conn.execute("SELECT COUNT(*) FROM uplink_outbox WHERE sent_at IS NULL").fetchone()[0])


def mark_sent(conn: sqlite3.Connection, batch_no: int, now: float) -> None:
    conn.execute(
        "UPDATE uplink_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE batch_no = ?",
        (now, batch_no),
    )
    conn.commit()


def mark_failed(conn: sqlite3.Connection, batch_no: int, error: str, next_attempt_at: float) -> int:
    """Record a failed attempt; returns the attempt count so far (it drives the backoff)."""
    conn.execute(
        "UPDATE uplink_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
        "WHERE batch_no = ?",
        (error, next_attempt_at, batch_no),
    )
    conn.commit()
    row = conn.execute("SELECT attempts FROM uplink_outbox WHERE batch_no = ?", (batch_no,)).fetchone()
    return int(row[0])


def record_error(conn: sqlite3.Connection, batch_no: int, error: str) -> None:
    """Keep an error visible (status, audits) without scheduling another attempt."""
    conn.execute(
        "UPDATE uplink_outbox SET attempts = attempts + 1, last_error = ? WHERE batch_no = ?",
        (error, batch_no),
    )
    conn.commit()


def reopen_from(conn: sqlite3.Connection, batch_no: int) -> int:
    """Mark every batch from `batch_no` on as unsent again (the network says its chain stops before it).

    Returns how many rows were reopened; 0 means the outbox no longer holds that batch, which the
    caller must treat as a permanent error rather than skipping ahead.
    """
    if conn.execute("SELECT 1 FROM uplink_outbox WHERE batch_no = ?", (batch_no,)).fetchone() is None:
        return 0
    cursor = conn.execute(
        "UPDATE uplink_outbox SET sent_at = NULL, next_attempt_at = 0 "
        "WHERE batch_no >= ? AND sent_at IS NOT NULL",
        (batch_no,),
    )
    conn.commit()
    return cursor.rowcount


# ---- refused batches: supersede, dead-letter, held elsewhere (issue 11 #2) -----------------------------


def batches_from(conn: sqlite3.Connection, batch_no: int) -> list[BatchRow]:
    """Batch `batch_no` and every later one, in number order."""
    rows = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_no >= ? ORDER BY batch_no", (batch_no,)
    ).fetchall()
    return [_batch(r) for r in rows]


def sent_from(conn: sqlite3.Connection, batch_no: int) -> int:
    """How many batches from `batch_no` on the network has confirmed (a reseal requires none)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM uplink_outbox WHERE batch_no >= ? AND sent_at IS NOT NULL", (batch_no,)
    ).fetchone()
    return int(row[0])


def bundles_from(conn: sqlite3.Connection, batch_no: int) -> list[PendingBundle]:
    """The bundles of batch `batch_no` and every later batch, in chain order (batch, then leaf)."""
    rows = conn.execute(
        "SELECT rowid, hash, raw, received_at, time_flag FROM bundles WHERE batch_id >= ? "
        "ORDER BY batch_id, leaf_index",
        (batch_no,),
    ).fetchall()
    return [PendingBundle(int(r[0]), bytes(r[1]), bytes(r[2]), float(r[3]), r[4]) for r in rows]


def supersede_from(conn: sqlite3.Connection, batch_no: int, reason: str, now: float) -> int:
    """Move batch `batch_no` and its successors to `superseded_batches` and free their bundles.

    The old signed headers and their leaves stay (evidence of what the gateway once signed); the batch
    numbers, outbox rows and leaf assignments are released for the new chain. Returns how many batches.
    """
    moved = batches_from(conn, batch_no)
    for old in moved:
        leaves = b"".join(batch_bundle_hashes(conn, old.batch_no))
        conn.execute(
            "INSERT INTO superseded_batches (hash, batch_no, header, root, count, first_received,"
            " last_received, created_at, leaves, superseded_at, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                old.hash,
                old.batch_no,
                old.header,
                old.root,
                old.count,
                old.first_received,
                old.last_received,
                old.created_at,
                leaves,
                now,
                reason,
            ),
        )
    conn.execute("DELETE FROM uplink_outbox WHERE batch_no >= ?", (batch_no,))
    conn.execute("UPDATE bundles SET batch_id = NULL, leaf_index = NULL WHERE batch_id >= ?", (batch_no,))
    conn.execute("DELETE FROM batches WHERE batch_no >= ?", (batch_no,))
    return len(moved)


def dead_letter(
    conn: sqlite3.Connection, bundle_hash: bytes, reason: str, detail: str, batch_hash: bytes, now: float
) -> None:
    """Keep a bundle the network refused for good out of every future batch, with why and when."""
    conn.execute(
        "INSERT INTO uplink_dead_letters (bundle_hash, reason, detail, batch_hash, dead_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (bundle_hash, reason, detail, batch_hash, now),
    )
    _set_batch(conn, bundle_hash, DEAD_LETTER)


def held_elsewhere(
    conn: sqlite3.Connection, bundle_hash: bytes, detail: str, batch_hash: bytes, now: float
) -> None:
    """Count a bundle the network already holds (from another gateway) as delivered."""
    conn.execute(
        "INSERT INTO uplink_held_elsewhere (bundle_hash, detail, batch_hash, held_at) VALUES (?,?,?,?)",
        (bundle_hash, detail, batch_hash, now),
    )
    _set_batch(conn, bundle_hash, HELD_ELSEWHERE)


def _set_batch(conn: sqlite3.Connection, bundle_hash: bytes, marker: int) -> None:
    cursor = conn.execute(
        "UPDATE bundles SET batch_id = ?, leaf_index = NULL WHERE hash = ? AND batch_id IS NULL",
        (marker, bundle_hash),
    )
    if cursor.rowcount != 1:
        raise RuntimeError(f"bundle {bundle_hash.hex()} is not a freed leaf of the refused chain")


def uplink_fate(conn: sqlite3.Connection, bundle_hash: bytes) -> tuple[str, dict[str, Any]] | None:
    """("dead_letter", {"reason": ...}) or ("held_elsewhere", {}) for a bundle taken out of a refused
    batch; None for any other bundle."""
    row = conn.execute(
        "SELECT reason FROM uplink_dead_letters WHERE bundle_hash = ?", (bundle_hash,)
    ).fetchone()
    if row is not None:
        return "dead_letter", {"reason": row[0]}
    if conn.execute("SELECT 1 FROM uplink_held_elsewhere WHERE bundle_hash = ?", (bundle_hash,)).fetchone():
        return "held_elsewhere", {}
    return None


RECENT_DEAD_LETTERS = 20


def uplink_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """What `/status` and `pinseal-gateway status` show of refused batches and bundles."""
    by_reason = dict(
        conn.execute("SELECT reason, COUNT(*) FROM uplink_dead_letters GROUP BY reason ORDER BY reason")
    )
    recent = conn.execute(
        "SELECT bundle_hash, reason, detail, batch_hash, dead_at FROM uplink_dead_letters "
        "ORDER BY dead_at DESC, rowid DESC LIMIT ?",
        (RECENT_DEAD_LETTERS,),
    ).fetchall()
    (held,) = conn.execute("SELECT COUNT(*) FROM uplink_held_elsewhere").fetchone()
    (superseded,) = conn.execute("SELECT COUNT(*) FROM superseded_batches").fetchone()
    return {
        "dead_letters": sum(by_reason.values()),
        "dead_letters_by_reason": by_reason,
        "recent_dead_letters": [
            {
                "bundle_hash": bytes(h).hex(),
                "reason": reason,
                "detail": detail,
                "batch_hash": bytes(b).hex(),
                "dead_at": at,
            }
            for h, reason, detail, b, at in recent
        ],
        "held_elsewhere": int(held),
        "superseded_batches": int(superseded),
    }
