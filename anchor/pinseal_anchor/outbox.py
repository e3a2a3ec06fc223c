"""The anchoring outbox: sealed roots waiting to be sent, sent ones waiting for depth, confirmed ones.

Durable on SQL (the `sql.Database` protocol: the ingest's PostgreSQL or a gateway's SQLite) so that no root
is lost while the chain's RPC is down or the process restarts. An anchor moves through three states:

- pending: sealed (root and leaves recorded) and needing a transaction: new, or its last transaction was
  dropped, reorganised away, stuck, or its nonce was taken by another transaction;
- sent: a signed transaction is recorded (hash, nonce, fees and the raw bytes, written *before* it is
  broadcast, so that a crash after the broadcast re-finds it by hash and can re-broadcast the same bytes);
  block number and hash are filled in once a receipt shows it mined;
- confirmed: mined at least `confirmations` blocks deep, in a block that is still the canonical one.

`anchor_leaves` maps each leaf (a gateway batch hash) to its anchor and index, so a leaf is anchored once and
its audit path can be rebuilt from the anchor's leaves; `anchor_txs` keeps every transaction ever signed
for an anchor (replacements included), because after a reorg an earlier one may be the one that is mined.

DDL differs per dialect (BLOB/REAL vs BYTEA/DOUBLE PRECISION, identity columns); all DML is portable
(`?` placeholders, INSERT ... RETURNING, ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pinseal_anchor.sql import Database
from pinseal_anchor.tree import anchor_root, check_leaves

SCHEMA_VERSION = 1
State = Literal["pending", "sent", "confirmed"]
STATES: tuple[State, ...] = ("pending", "sent", "confirmed")
Mode = Literal["calldata", "contract"]
MODES: tuple[Mode, ...] = ("calldata", "contract")

_TABLES = """
CREATE TABLE IF NOT EXISTS anchor_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS anchor_anchors (
    id {id},
    root {blob} NOT NULL,
    leaf_count INTEGER NOT NULL,
    created_at {real} NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'confirmed')),
    mode TEXT,
    chain_id BIGINT,
    tx_hash {blob},
    nonce BIGINT,
    max_fee BIGINT,
    priority_fee BIGINT,
    sent_at {real},
    block_number BIGINT,
    block_hash {blob},
    confirmed_at {real},
    resends INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS anchor_anchors_state ON anchor_anchors (state, id);
CREATE TABLE IF NOT EXISTS anchor_leaves (
    leaf {blob} PRIMARY KEY,
    anchor_id BIGINT NOT NULL REFERENCES anchor_anchors (id),
    leaf_index INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS anchor_leaves_anchor ON anchor_leaves (anchor_id, leaf_index);
CREATE TABLE IF NOT EXISTS anchor_txs (
    tx_hash {blob} PRIMARY KEY,
    anchor_id BIGINT NOT NULL REFERENCES anchor_anchors (id),
    chain_id BIGINT NOT NULL,
    nonce BIGINT NOT NULL,
    max_fee BIGINT NOT NULL,
    priority_fee BIGINT NOT NULL,
    mode TEXT NOT NULL,
    raw {blob} NOT NULL,
    sent_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS anchor_txs_anchor ON anchor_txs (anchor_id, sent_at);
"""

DDL = {
    "sqlite": _TABLES.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB", real="REAL"),
    "postgresql": _TABLES.format(
        id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", blob="BYTEA", real="DOUBLE PRECISION"
    ),
}

_ANCHOR_COLUMNS = (
    "id, root, leaf_count, created_at, state, mode, chain_id, tx_hash, nonce, max_fee, priority_fee, "
    "sent_at, block_number, block_hash, confirmed_at, resends, last_error"
)
_TO_PENDING = (
    "UPDATE anchor_anchors SET state = 'pending', block_number = NULL, block_hash = NULL, last_error = ? "
)
_IN_CHUNK = 500  # leaves per IN (...) query: well under SQLite's and PostgreSQL's parameter limits


class SchemaError(Exception):
    """The anchor tables were made by another version of pinseal_anchor."""


@dataclass(frozen=True)
class Anchor:
    """One row of `anchor_anchors`."""

    id: int
    root: bytes
    leaf_count: int
    created_at: float
    state: State
    mode: str | None
    chain_id: int | None
    tx_hash: bytes | None
    nonce: int | None
    max_fee: int | None
    priority_fee: int | None
    sent_at: float | None
    block_number: int | None
    block_hash: bytes | None
    confirmed_at: float | None
    resends: int
    last_error: str | None


@dataclass(frozen=True)
class SentTx:
    """One signed transaction of an anchor (`anchor_txs`)."""

    tx_hash: bytes
    anchor_id: int
    chain_id: int
    nonce: int
    max_fee: int
    priority_fee: int
    mode: str
    raw: bytes
    sent_at: float


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _anchor(row: Sequence[Any]) -> Anchor:
    values = list(row)
    for i in (1, 7, 13):  # root, tx_hash, block_hash: memoryview from some drivers
        values[i] = _blob(values[i])
    return Anchor(*values)


# --- schema ------------------------------------------------------------------------------------------


def init_schema(db: Database) -> None:
    """Create the anchor tables if missing and check their version (SchemaError if it is another)."""
    if db.dialect not in DDL:
        raise ValueError(f"dialect is one of {sorted(DDL)}, not {db.dialect!r}")
    with db.transaction():
        for statement in DDL[db.dialect].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(
            "INSERT INTO anchor_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
            (str(SCHEMA_VERSION),),
        )
        found = db.execute("SELECT value FROM anchor_meta WHERE key = 'schema_version'").fetchone()[0]
    if found != str(SCHEMA_VERSION):
        raise SchemaError(
            f"the anchor tables are schema version {found}; this pinseal_anchor knows {SCHEMA_VERSION}"
        )


def get_meta(db: Database, key: str) -> str | None:
    row = db.execute("SELECT value FROM anchor_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(db: Database, key: str, value: str) -> None:
    with db.transaction():
        db.execute("DELETE FROM anchor_meta WHERE key = ?", (key,))
        db.execute("INSERT INTO anchor_meta (key, value) VALUES (?, ?)", (key, value))


# --- sealing -----------------------------------------------------------------------------------------


def anchored_already(db: Database, leaves: Sequence[bytes]) -> set[bytes]:
    """Which of these leaves have an anchor already."""
    found: set[bytes] = set()
    for start in range(0, len(leaves), _IN_CHUNK):
        chunk = [bytes(leaf) for leaf in leaves[start : start + _IN_CHUNK]]
        marks = ", ".join("?" * len(chunk))
        rows = db.execute(f"SELECT leaf FROM anchor_leaves WHERE leaf IN ({marks})", chunk)
        found.update(bytes(r[0]) for r in rows)
    return found


def seal(db: Database, leaves: Sequence[bytes], now: float | None = None) -> Anchor | None:
    """Record one pending anchor over the leaves not anchored yet (in the given order), in one transaction.

    Returns None when every leaf is anchored already (or none are given). Leaves are 32-byte batch hashes.
    """
    check_leaves(leaves)
    now = time.time() if now is None else now
    with db.transaction():
        done = anchored_already(db, leaves)
        fresh: list[bytes] = []
        seen: set[bytes] = set()
        for leaf in leaves:
            leaf = bytes(leaf)
            if leaf not in done and leaf not in seen:
                seen.add(leaf)
                fresh.append(leaf)
        if not fresh:
            return None
        root = anchor_root(fresh)
        anchor_id = db.execute(
            "INSERT INTO anchor_anchors (root, leaf_count, created_at, state) VALUES (?, ?, ?, 'pending') "
            "RETURNING id",
            (root, len(fresh), now),
        ).fetchone()[0]
        for index, leaf in enumerate(fresh):
            db.execute(
                "INSERT INTO anchor_leaves (leaf, anchor_id, leaf_index) VALUES (?, ?, ?)",
                (leaf, anchor_id, index),
            )
    return get(db, int(anchor_id))


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def unanchored_from(
    db: Database, table: str, column: str, order_by: Sequence[str]
) -> Callable[[int], list[bytes]]:
    """A leaf source over the caller's own table: `column` values without an anchor_leaves row, in
    `order_by` order (e.g. the ingest: `unanchored_from(db, "batches", "hash", ["received_at", "hash"])`).

    The caller names its table, so no other component's schema is written into this package; the names are
    identifiers checked here (they are put into the SQL text), never user input.
    """
    for name in (table, column, *order_by):
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"{name!r} is not a plain SQL identifier")
    if not order_by:
        raise ValueError("leaves come in a fixed order: give order_by")
    sql = (
        f"SELECT t.{column} FROM {table} t WHERE NOT EXISTS "
        f"(SELECT 1 FROM anchor_leaves a WHERE a.leaf = t.{column}) "
        f"ORDER BY {', '.join('t.' + c for c in order_by)} LIMIT ?"
    )

    def pending_leaves(limit: int) -> list[bytes]:
        return [bytes(r[0]) for r in db.execute(sql, (limit,))]

    return pending_leaves


# --- reading -----------------------------------------------------------------------------------------


def get(db: Database, anchor_id: int) -> Anchor:
    row = db.execute(f"SELECT {_ANCHOR_COLUMNS} FROM anchor_anchors WHERE id = ?", (anchor_id,)).fetchone()
    if row is None:
        raise KeyError(f"no anchor {anchor_id}")
    return _anchor(row)


def in_state(db: Database, state: State, limit: int = 1000) -> list[Anchor]:
    """Anchors in one state, oldest first."""
    rows = db.execute(
        f"SELECT {_ANCHOR_COLUMNS} FROM anchor_anchors WHERE state = ? ORDER BY id LIMIT ?", (state, limit)
    )
    return [_anchor(r) for r in rows]


def leaves_of(db: Database, anchor_id: int) -> list[bytes]:
    """An anchor's leaves in leaf order."""
    rows = db.execute("SELECT leaf FROM anchor_leaves WHERE anchor_id = ? ORDER BY leaf_index", (anchor_id,))
    return [bytes(r[0]) for r in rows]


def leaf_anchor(db: Database, leaf: bytes) -> tuple[int, int] | None:
    """(anchor id, leaf index) of a leaf, or None if it is not anchored (sealed) yet."""
    row = db.execute(
        "SELECT anchor_id, leaf_index FROM anchor_leaves WHERE leaf = ?", (bytes(leaf),)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def txs_of(db: Database, anchor_id: int) -> list[SentTx]:
    """Every transaction signed for an anchor, newest first."""
    rows = db.execute(
        "SELECT tx_hash, anchor_id, chain_id, nonce, max_fee, priority_fee, mode, raw, sent_at "
        "FROM anchor_txs WHERE anchor_id = ? ORDER BY sent_at DESC, nonce DESC",
        (anchor_id,),
    )
    return [SentTx(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]), r[8]) for r in rows]


# --- state changes -----------------------------------------------------------------------------------


def mark_sent(db: Database, tx: SentTx) -> None:
    """Record a signed transaction for a pending anchor (before it is broadcast)."""
    with db.transaction():
        db.execute(
            "INSERT INTO anchor_txs (tx_hash, anchor_id, chain_id, nonce, max_fee, priority_fee, mode, raw, "
            "sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                tx.tx_hash,
                tx.anchor_id,
                tx.chain_id,
                tx.nonce,
                tx.max_fee,
                tx.priority_fee,
                tx.mode,
                tx.raw,
                tx.sent_at,
            ),
        )
        db.execute(
            "UPDATE anchor_anchors SET state = 'sent', mode = ?, chain_id = ?, tx_hash = ?, nonce = ?, "
            "max_fee = ?, priority_fee = ?, sent_at = ?, block_number = NULL, block_hash = NULL, "
            "resends = resends + CASE WHEN tx_hash IS NULL THEN 0 ELSE 1 END WHERE id = ?",
            (
                tx.mode,
                tx.chain_id,
                tx.tx_hash,
                tx.nonce,
                tx.max_fee,
                tx.priority_fee,
                tx.sent_at,
                tx.anchor_id,
            ),
        )


def mark_mined(db: Database, anchor_id: int, tx_hash: bytes, block_number: int, block_hash: bytes) -> None:
    """A receipt shows the anchor's transaction (this one of its transactions) in this block."""
    db.execute(
        "UPDATE anchor_anchors SET tx_hash = ?, block_number = ?, block_hash = ? "
        "WHERE id = ? AND state = 'sent'",
        (tx_hash, block_number, block_hash, anchor_id),
    )


def mark_unmined(db: Database, anchor_id: int) -> None:
    """Its block was reorganised away: no block recorded until a receipt shows it again."""
    db.execute(
        "UPDATE anchor_anchors SET block_number = NULL, block_hash = NULL WHERE id = ? AND state = 'sent'",
        (anchor_id,),
    )


def mark_confirmed(db: Database, anchor_id: int, now: float | None = None) -> None:
    db.execute(
        "UPDATE anchor_anchors SET state = 'confirmed', confirmed_at = ?, last_error = NULL "
        "WHERE id = ? AND state = 'sent'",
        (time.time() if now is None else now, anchor_id),
    )


def back_to_pending(db: Database, anchor_id: int, reason: str) -> None:
    """The anchor needs a new transaction (its transactions stay recorded in anchor_txs)."""
    db.execute(
        _TO_PENDING + "WHERE id = ? AND state = 'sent'",
        (reason, anchor_id),
    )


def unconfirmed_to_pending(db: Database, reason: str, *, except_chain_id: int | None = None) -> int:
    """Every sent anchor (of another chain id than `except_chain_id`, if given) back to pending."""
    if except_chain_id is None:
        cursor = db.execute(
            _TO_PENDING + "WHERE state = 'sent'",
            (reason,),
        )
    else:
        cursor = db.execute(
            _TO_PENDING + "WHERE state = 'sent' AND chain_id <> ?",
            (reason, except_chain_id),
        )
    return int(cursor.rowcount)


def set_error(db: Database, anchor_id: int, error: str) -> None:
    db.execute("UPDATE anchor_anchors SET last_error = ? WHERE id = ?", (error[:500], anchor_id))


# --- status ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxStatus:
    """For metrics and the CLI: how far anchoring lags."""

    pending: int  # sealed, no transaction in flight
    sent: int  # transaction in flight, not deep enough yet
    confirmed: int
    oldest_unconfirmed_age_s: float | None  # of the oldest anchor not yet confirmed
    last_confirmed_block: int | None
    leaves_anchored: int  # leaves in a confirmed anchor


def status(db: Database, now: float | None = None) -> OutboxStatus:
    now = time.time() if now is None else now
    counts = {state: 0 for state in STATES}
    for state, count in db.execute("SELECT state, COUNT(*) FROM anchor_anchors GROUP BY state"):
        counts[state] = int(count)
    oldest = db.execute("SELECT MIN(created_at) FROM anchor_anchors WHERE state <> 'confirmed'").fetchone()[0]
    last_block, leaves = db.execute(
        "SELECT MAX(block_number), COALESCE(SUM(leaf_count), 0) FROM anchor_anchors WHERE state = 'confirmed'"
    ).fetchone()
    return OutboxStatus(
        pending=counts["pending"],
        sent=counts["sent"],
        confirmed=counts["confirmed"],
        oldest_unconfirmed_age_s=None if oldest is None else max(0.0, now - float(oldest)),
        last_confirmed_block=None if last_block is None else int(last_block),
        leaves_anchored=int(leaves),
    )


def last_sealed_at(db: Database) -> float | None:
    value = db.execute("SELECT MAX(created_at) FROM anchor_anchors").fetchone()[0]
    return None if value is None else float(value)
