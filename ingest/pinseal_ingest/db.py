"""The ingest's SQLite database: connection settings and schema.

WAL lets the HTTP reads and `pinseal-ingest stats` run while a batch is being stored; `synchronous=FULL`
because a batch answered "stored" is dropped from the gateway's outbox and must survive a power cut.
Sequence numbers are unsigned 64-bit and SQLite integers signed, so they are kept as 8-byte big-endian
blobs, whose bytewise order is their numeric order (`seq_key`).

`PRAGMA user_version` marks the schema; `connect` brings an older file up to `SCHEMA_VERSION` by adding
the columns it lacks (`MIGRATIONS`), so an ingest upgraded in place keeps every stored batch.
"""

import logging
import sqlite3
from pathlib import Path

from pinseal_protocol import retention
from pinseal_protocol.private_files import prepare_private_db

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # 1: batches.version, leaves.gateway_time_flag, bundles.ingest_time_flag

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    kid BLOB PRIMARY KEY,
    public_key BLOB NOT NULL,
    label TEXT,
    added_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS devices (
    kid BLOB PRIMARY KEY,
    public_key BLOB NOT NULL,
    label TEXT,
    added_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS batches (
    hash BLOB PRIMARY KEY,
    gateway_kid BLOB NOT NULL REFERENCES gateways(kid),
    batch_no INTEGER NOT NULL,
    prev_hash BLOB NOT NULL,
    root BLOB NOT NULL,
    count INTEGER NOT NULL,
    first_received INTEGER NOT NULL,
    last_received INTEGER NOT NULL,
    mode TEXT NOT NULL,
    header BLOB NOT NULL,
    received_at REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,  -- batch header version (2 signs time flags)
    UNIQUE (gateway_kid, batch_no)
);
CREATE TABLE IF NOT EXISTS leaves (
    bundle_hash BLOB PRIMARY KEY,
    batch_hash BLOB NOT NULL REFERENCES batches(hash),
    leaf_index INTEGER NOT NULL,
    gateway_time_flag TEXT,  -- the committing gateway's signed claim: 'future', 'stale' or NULL
    UNIQUE (batch_hash, leaf_index)
);
CREATE TABLE IF NOT EXISTS bundles (
    hash BLOB PRIMARY KEY,  -- also a row of leaves (written in the same transaction)
    kid BLOB NOT NULL,
    seq BLOB NOT NULL,
    last_seq BLOB NOT NULL,
    prev BLOB NOT NULL,
    link BLOB NOT NULL,
    n_readings INTEGER NOT NULL,
    raw BLOB NOT NULL,
    ingest_time_flag TEXT  -- the ingest's own check of the reading times: 'future', 'stale' or NULL
);
CREATE INDEX IF NOT EXISTS bundles_kid_seq ON bundles (kid, seq);
CREATE INDEX IF NOT EXISTS bundles_kid_prev ON bundles (kid, prev);
CREATE INDEX IF NOT EXISTS bundles_kid_link ON bundles (kid, link);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT,
    gateway_kid BLOB,
    batch_hash BLOB,
    bundle_index INTEGER,
    evidence BLOB
);"""
SCHEMA += retention.TALLY_SCHEMA + ";\n"  # rejections counted but not stored (rejections.py)


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the database in autocommit mode; callers open their own transactions.

    `check_same_thread` is off because the service hands the connection to its one worker thread; no
    two threads ever use it at once.
    """
    prepare_private_db(Path(path))  # folder 0700, files 0600: every gateway's readings
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(SCHEMA)
    _migrate(conn)
    return conn


MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    # schema 1 (issue 11 #6): time flags; every batch stored before was a version 1 batch
    ("batches", "version", "INTEGER NOT NULL DEFAULT 1"),
    ("leaves", "gateway_time_flag", "TEXT"),
    ("bundles", "ingest_time_flag", "TEXT"),
)


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns an older database lacks; refuse a database newer than this ingest."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database schema {version} is newer than this ingest ({SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return
    with Transaction(conn):
        for table, column, declaration in MIGRATIONS:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    log.info("ingest database schema %d -> %d", version, SCHEMA_VERSION)


def seq_key(value: int) -> bytes:
    """An unsigned 64-bit sequence number as a sortable blob."""
    return value.to_bytes(8, "big")


def seq_value(key: bytes) -> int:
    """Inverse of `seq_key`."""
    return int.from_bytes(key, "big")


class Transaction:
    """`with Transaction(conn):` - BEGIN IMMEDIATE (the write lock up front), COMMIT, or ROLLBACK on error.

    IMMEDIATE so that the checks a batch passes (chain head, stored bundles) cannot change before its
    rows are written, even with a second process on the same file.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
