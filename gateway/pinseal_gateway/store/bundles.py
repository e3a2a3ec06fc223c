"""Accepted bundles, their readings, rejections with evidence, and per-device state.

Everything here runs in the database thread (see `store.db`). `DeviceStates` caches each device's
high-water mark and contiguous-chain tip in memory so the common case (the next bundle of a device
that is in sync) needs no history query at all; the cache is written through to `device_state` in
the same transaction as the bundles, and dropped whenever a transaction fails, so it never claims
more than the database holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from pinseal_protocol import history
from pinseal_protocol.bundle import Bundle
from pinseal_protocol.history import StoredBundle, Verdict

SCHEMA = """
CREATE TABLE IF NOT EXISTS device_state (
    kid BLOB PRIMARY KEY,
    high_seq INTEGER,
    contiguous_seq INTEGER,
    last_bundle_hash BLOB,
    last_seen REAL,
    bundles INTEGER NOT NULL DEFAULT 0,
    readings INTEGER NOT NULL DEFAULT 0,
    gaps INTEGER NOT NULL DEFAULT 0,
    first_seq INTEGER,
    contiguous_hash BLOB,
    linear INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bundles (
    hash BLOB PRIMARY KEY,
    kid BLOB NOT NULL,
    boot INTEGER,
    seq INTEGER,
    last_seq INTEGER,
    prev BLOB,
    n_readings INTEGER,
    time_source INTEGER,
    received_at REAL NOT NULL,
    raw BLOB NOT NULL,
    chain_gap INTEGER NOT NULL DEFAULT 0,
    time_flag TEXT,
    batch_id INTEGER,
    leaf_index INTEGER
);
CREATE INDEX IF NOT EXISTS bundles_kid_seq ON bundles (kid, seq);
CREATE INDEX IF NOT EXISTS bundles_kid_prev ON bundles (kid, prev);
CREATE INDEX IF NOT EXISTS bundles_batch ON bundles (batch_id);
CREATE TABLE IF NOT EXISTS readings (
    bundle_hash BLOB NOT NULL,
    kid BLOB NOT NULL,
    seq INTEGER NOT NULL,
    time INTEGER NOT NULL,
    name TEXT NOT NULL,
    unit TEXT,
    value TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS readings_kid_time ON readings (kid, time);
CREATE INDEX IF NOT EXISTS readings_kid_seq ON readings (kid, seq);
CREATE INDEX IF NOT EXISTS bundles_kid_clockless ON bundles (kid, received_at)
    WHERE time_source = 0 OR time_flag IS NOT NULL;
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    kid BLOB,
    topic TEXT,
    reason TEXT NOT NULL,
    detail TEXT,
    received_at REAL NOT NULL,
    evidence BLOB
);
CREATE INDEX IF NOT EXISTS rejections_reason ON rejections (reason);
"""

PREV_SIZE = 16

INT64_MAX = 2**63 - 1


def to_u64(value: int | None) -> int | bytes | None:
    """A protocol uint64 (seq, boot, bt) as SQLite stores it without loss or reordering.

    SQLite's INTEGER is signed 64-bit, so binding 2**63 or more raises OverflowError. Values below 2**63
    stay INTEGERs (every existing row and reader keeps working); values from 2**63 up become 8-byte
    big-endian BLOBs. SQLite orders every INTEGER before every BLOB and equal-length BLOBs bytewise,
    which is exactly uint64 order, so comparisons, indexes and ORDER BY on these columns stay correct.
    """
    if value is None or value <= INT64_MAX:
        return value
    return value.to_bytes(8, "big")


def from_u64(value: int | bytes | None) -> int | None:
    """Inverse of `to_u64`."""
    if isinstance(value, bytes):
        return int.from_bytes(value, "big")
    return value


def storable_rows(
    rows: Sequence[tuple[object, ...]], last_seq: int, max_time: int
) -> Sequence[tuple[object, ...]]:
    """`readings` rows with seq and time bindable (see `to_u64`); the rows themselves in the common case."""
    if last_seq <= INT64_MAX and max_time <= INT64_MAX:
        return rows
    return [(h, k, to_u64(seq), to_u64(t), *rest) for h, k, seq, t, *rest in rows]  # type: ignore[misc]


INSERT_BUNDLE = (
    "INSERT INTO bundles (hash, kid, boot, seq, last_seq, prev, n_readings, time_source, received_at, raw, "
    "chain_gap, time_flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_READING = (
    "INSERT INTO readings (bundle_hash, kid, seq, time, name, unit, value, error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_REJECTION = (
    "INSERT INTO rejections (kid, topic, reason, detail, received_at, evidence) VALUES (?, ?, ?, ?, ?, ?)"
)
MARK_CHAIN_GAP = "UPDATE bundles SET chain_gap = 1 WHERE hash = ?"
UPSERT_STATE = (
    "INSERT INTO device_state (kid, high_seq, contiguous_seq, last_bundle_hash, last_seen, bundles, "
    "readings, gaps, first_seq, contiguous_hash, linear) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (kid) DO UPDATE SET high_seq = excluded.high_seq, "
    "contiguous_seq = excluded.contiguous_seq, last_bundle_hash = excluded.last_bundle_hash, "
    "last_seen = excluded.last_seen, bundles = excluded.bundles, "
    "readings = excluded.readings, gaps = excluded.gaps, first_seq = excluded.first_seq, "
    "contiguous_hash = excluded.contiguous_hash, linear = excluded.linear"
)


@dataclass(frozen=True)
class DeviceState:
    """What the gateway knows about one device's stored history, without reading it all.

    `last_bundle_hash` is the bundle with the highest sequence numbers (the high-water bundle);
    `contiguous_hash` the tip of the prev-chain from the lowest stored bundle, whose last sequence
    number (`contiguous_seq`) is what acks carry. `linear`: every stored bundle of the device was, when
    it arrived, the first or the new high-water extending the tip, so the stored bundles are one chain
    and no stored bundle names the tip as its prev (see `with_new_bundle`).
    """

    kid: bytes
    high_seq: int | None = None
    contiguous_seq: int | None = None
    last_bundle_hash: bytes | None = None
    last_seen: float | None = None
    bundles: int = 0
    readings: int = 0
    gaps: int = 0
    first_seq: int | None = None
    contiguous_hash: bytes | None = None
    linear: bool = False

    @property
    def empty(self) -> bool:
        return self.high_seq is None

    def row(self) -> tuple[object, ...]:
        return (
            self.kid,
            to_u64(self.high_seq),
            to_u64(self.contiguous_seq),
            self.last_bundle_hash,
            self.last_seen,
            self.bundles,
            self.readings,
            self.gaps,
            to_u64(self.first_seq),
            self.contiguous_hash,
            int(self.linear),
        )


_STATE_COLUMNS = (
    "kid, high_seq, contiguous_seq, last_bundle_hash, last_seen, bundles, readings, gaps, first_seq, "
    "contiguous_hash, linear"
)


_U64_STATE_COLUMNS = (1, 2, 8)  # high_seq, contiguous_seq, first_seq


def _state(row: tuple[object, ...]) -> DeviceState:
    values = list(row)
    for i in _U64_STATE_COLUMNS:
        values[i] = from_u64(values[i])  # type: ignore[arg-type]
    return DeviceState(*values[:-1], linear=bool(values[-1]))  # type: ignore[arg-type]


def load_state(conn: sqlite3.Connection, kid: bytes) -> DeviceState:
    row = conn.execute(
        f"SELECT {_STATE_COLUMNS} FROM device_state WHERE kid = ?",
        (kid,),
    ).fetchone()
    return DeviceState(kid) if row is None else _state(row)


def all_states(conn: sqlite3.Connection) -> list[DeviceState]:
    rows = conn.execute(f"SELECT {_STATE_COLUMNS} FROM device_state").fetchall()
    return [_state(row) for row in rows]


class DeviceStates:
    """Write-through cache of `device_state`, owned by the database thread."""

    def __init__(self) -> None:
        self._states: dict[bytes, DeviceState] = {}

    def get(self, conn: sqlite3.Connection, kid: bytes) -> DeviceState:
        state = self._states.get(kid)
        if state is None:
            state = self._states[kid] = load_state(conn, kid)
        return state

    def peek(self, conn: sqlite3.Connection, kid: bytes) -> DeviceState:
        """Like `get`, but a state not cached is read without being cached (a key id from a message
        that was refused before any device check must not grow the cache)."""
        state = self._states.get(kid)
        return load_state(conn, kid) if state is None else state

    def put(self, state: DeviceState) -> None:
        self._states[state.kid] = state

    def invalidate(self) -> None:
        """Forget everything (after a rolled-back transaction): the next access reloads from the db."""
        self._states.clear()


_STORED_COLUMNS = "seq, last_seq, prev, hash"


def _stored_bundle(row: tuple[int | bytes, int | bytes, bytes, bytes]) -> StoredBundle:
    seq, last_seq, prev, bundle_hash = row
    return StoredBundle(from_u64(seq), from_u64(last_seq), prev, bundle_hash)  # type: ignore[arg-type]


def _stored(rows: list[tuple[int | bytes, int | bytes, bytes, bytes]]) -> list[StoredBundle]:
    return [_stored_bundle(row) for row in rows]


def history_for(
    conn: sqlite3.Connection, kid: bytes, seq: int, last_seq: int, prev: bytes, link: bytes
) -> list[StoredBundle]:
    """The stored bundles `history.classify` needs to judge a candidate, instead of all of them.

    Exactly: every bundle overlapping the candidate's range (duplicates and conflicts), the high-water
    bundle, and the ones `_fills_gap` looks at (prev equal to the candidate's link or to its prev, and
    the bundle the candidate's prev names). `classify` on this subset reaches the same verdict as on
    the device's whole history.
    """
    found: dict[bytes, StoredBundle] = {}
    queries = (
        (
            f"SELECT {_STORED_COLUMNS} FROM bundles WHERE kid = ? AND seq <= ? AND last_seq >= ?",
            (kid, to_u64(last_seq), to_u64(seq)),
        ),
        (f"SELECT {_STORED_COLUMNS} FROM bundles WHERE kid = ? ORDER BY seq DESC LIMIT 1", (kid,)),
        (f"SELECT {_STORED_COLUMNS} FROM bundles WHERE kid = ? AND prev = ?", (kid, link)),
        (f"SELECT {_STORED_COLUMNS} FROM bundles WHERE kid = ? AND prev = ?", (kid, prev)),
        (
            f"SELECT {_STORED_COLUMNS} FROM bundles WHERE kid = ? AND hash BETWEEN ? AND ?",
            (kid, prev + bytes(16), prev + b"\xff" * 16),
        ),
    )
    for sql, args in queries:
        for bundle in _stored(conn.execute(sql, args).fetchall()):
            found[bundle.bundle_hash] = bundle
    return list(found.values())


def links_to_stored(conn: sqlite3.Connection, kid: bytes, prev: bytes) -> bool:
    """Whether `prev` is the link (hash prefix) of a stored bundle of this device."""
    row = conn.execute(
        "SELECT 1 FROM bundles WHERE hash BETWEEN ? AND ? AND kid = ? LIMIT 1",
        (prev + bytes(16), prev + b"\xff" * 16, kid),
    ).fetchone()
    return row is not None


def has_earlier(conn: sqlite3.Connection, kid: bytes, seq: int) -> bool:
    """Whether the device has a stored bundle starting below `seq`."""
    row = conn.execute(
        "SELECT 1 FROM bundles WHERE kid = ? AND seq < ? LIMIT 1", (kid, to_u64(seq))
    ).fetchone()
    return row is not None


def first_successor(conn: sqlite3.Connection, kid: bytes, link: bytes) -> StoredBundle | None:
    """The first stored (by arrival) bundle whose prev is `link`: the one `contiguous_last_seq` follows."""
    row = conn.execute(
        f"SELECT {_STORED_COLUMNS} FROM bundles WHERE kid = ? AND prev = ? ORDER BY rowid LIMIT 1",
        (kid, link),
    ).fetchone()
    return None if row is None else _stored_bundle(row)


def stored_bundle(conn: sqlite3.Connection, bundle_hash: bytes) -> StoredBundle | None:
    row = conn.execute(f"SELECT {_STORED_COLUMNS} FROM bundles WHERE hash = ?", (bundle_hash,)).fetchone()
    return None if row is None else _stored_bundle(row)


def walk_chain(
    conn: sqlite3.Connection, kid: bytes, start: StoredBundle, beyond: StoredBundle | None = None
) -> StoredBundle:
    """Follow prev links from `start` as `history.contiguous_last_seq` does; return the chain's tip.

    `beyond`: a just-stored bundle starting above every other stored one. Reached, it ends the walk
    without a query: a successor must start above its last seq, and every other bundle lies below.
    """
    current = start
    while (nxt := first_successor(conn, kid, current.bundle_hash[:PREV_SIZE])) is not None and (
        nxt.seq > current.last_seq
    ):
        current = nxt
        if beyond is not None and nxt.bundle_hash == beyond.bundle_hash:
            break
    return current


def with_new_bundle(
    conn: sqlite3.Connection, state: DeviceState, bundle: StoredBundle, n_readings: int, received_at: float
) -> tuple[DeviceState, bool]:
    """The device state after `bundle` (already inserted) is stored, and whether it arrived after a gap.

    A gap: the bundle's prev names no stored bundle of the device although the device has earlier
    bundles. The contiguous tip moves only when the bundle extends it (or starts a new lowest chain).

    The common case needs no query: on a `linear` device (its bundles are one chain, the tip its
    high-water bundle, and nothing stored names the tip as prev, since each bundle named the tip of its
    time), a new high-water bundle whose prev is the tip's link is the tip's first successor by arrival,
    which is what `walk_chain` would have found with a query. Anything else walks with queries and the
    device is no longer linear (its history then may hold forks, late or rewound bundles).
    """
    linear = False
    if state.empty:
        gap = False
        tip = walk_chain(conn, state.kid, bundle)
        first_seq = bundle.seq
        linear = tip.bundle_hash == bundle.bundle_hash
    else:
        assert state.high_seq is not None and state.first_seq is not None
        assert state.contiguous_hash is not None and state.contiguous_seq is not None
        if bundle.seq > state.high_seq:
            assert state.last_bundle_hash is not None
            linked = bundle.prev == state.last_bundle_hash[:PREV_SIZE] or links_to_stored(
                conn, state.kid, bundle.prev
            )
            gap = not linked
        else:
            gap = has_earlier(conn, state.kid, bundle.seq) and not links_to_stored(
                conn, state.kid, bundle.prev
            )
        first_seq = state.first_seq
        tip_hash = state.contiguous_hash
        if bundle.seq < state.first_seq:
            first_seq = bundle.seq
            tip = walk_chain(conn, state.kid, bundle)
        elif bundle.prev == tip_hash[:PREV_SIZE]:
            beyond = bundle if bundle.seq > state.high_seq else None
            if state.linear and beyond is not None and tip_hash == state.last_bundle_hash:
                tip = bundle
                linear = True
            else:
                # walk_chain reads only the tip's hash and last_seq, both cached.
                current = StoredBundle(state.contiguous_seq, state.contiguous_seq, b"", tip_hash)
                tip = walk_chain(conn, state.kid, current, beyond)
        else:
            tip = None
    high_seq, high_hash = state.high_seq, state.last_bundle_hash
    if high_seq is None or bundle.last_seq > high_seq:
        high_seq, high_hash = bundle.last_seq, bundle.bundle_hash
    contiguous_seq, contiguous_hash = state.contiguous_seq, state.contiguous_hash
    if tip is not None:
        contiguous_seq, contiguous_hash = tip.last_seq, tip.bundle_hash
    # Positional construction: dataclasses.replace costs several times more, once per stored bundle.
    new = DeviceState(
        state.kid,
        high_seq,
        contiguous_seq,
        high_hash,
        received_at,
        state.bundles + 1,
        state.readings + n_readings,
        state.gaps + int(gap),
        first_seq,
        contiguous_hash,
        linear,
    )
    return new, gap


def count_by_reason(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT reason, count(*) FROM rejections GROUP BY reason").fetchall())


def classify_history(conn: sqlite3.Connection, state: DeviceState, bundle: Bundle) -> Verdict:
    """NEW or DUPLICATE against the device's stored bundles; raises `Conflict` or `Replayed`.

    The common case, a bundle beyond everything stored, needs no query: it can neither duplicate nor
    overlap a stored bundle nor lie below the high-water mark, so `history.classify` would say NEW.
    """
    if state.high_seq is None or bundle.seq > state.high_seq:
        return Verdict.NEW
    stored = history_for(conn, bundle.kid, bundle.seq, bundle.last_seq, bundle.prev, bundle.link)
    return history.classify(StoredBundle.of(bundle), stored)
