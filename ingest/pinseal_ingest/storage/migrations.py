"""Bringing a database to the schema this ingest runs, or refusing one it does not know.

The version lives in the table `schema_version` (both engines; SQLite files also mirror it in
`PRAGMA user_version`, which is where ingests before schema 2 kept it, so an older ingest refuses a newer
file rather than write rows it cannot read). A database newer than this ingest is refused; an older one
is migrated in place, in one transaction, keeping every stored batch. Processes starting together on one
database take turns (`schema_lock`): one migrates, the others find it done.
"""

from __future__ import annotations

import logging

from pinseal_ingest.storage import schema
from pinseal_ingest.storage.base import Database
from pinseal_ingest.storage.sqlite import SQLiteDatabase
from pinseal_protocol import bundle, keys
from pinseal_protocol.errors import RejectedMessage

log = logging.getLogger(__name__)

# schema 1 (issue 11 #6): time flags; every batch stored before was a version 1 batch
COLUMNS_OF_1: tuple[tuple[str, str, str], ...] = (
    ("batches", "version", "INTEGER NOT NULL DEFAULT 1"),
    ("leaves", "gateway_time_flag", "TEXT"),
    ("bundles", "ingest_time_flag", "TEXT"),
)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer ingest."""


def prepare(db: Database) -> int:
    """Create or migrate the schema; returns the version found (0 for a new database)."""
    with db.schema_lock():
        found = stored_version(db)
        if found is not None and found > schema.SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema {found} at {db.target} is newer than this ingest ({schema.SCHEMA_VERSION})"
            )
        with db.transaction():
            if found is not None and found < schema.SCHEMA_VERSION:
                _migrate(db, found)
            for statement in schema.statements(db.dialect):
                db.execute(statement)
            if found != schema.SCHEMA_VERSION:
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (schema.SCHEMA_VERSION,))
                if isinstance(db, SQLiteDatabase):
                    db.execute(f"PRAGMA user_version={schema.SCHEMA_VERSION}")
        if found is not None and found != schema.SCHEMA_VERSION:
            log.info("ingest database schema %d -> %d", found, schema.SCHEMA_VERSION)
        _anchor_tables(db)
    db.schema_ready()
    return found or 0


def _anchor_tables(db: Database) -> None:
    """The anchoring outbox's tables (pinseal_anchor keeps their schema and version), made with the
    ingest's own under the same lock, so a proof lookup finds them whether or not this host anchors."""
    from pinseal_anchor import outbox

    outbox.init_schema(db)  # type: ignore[arg-type]


def table_exists(db: Database, name: str) -> bool:
    if db.dialect == "postgresql":
        return db.scalar("SELECT to_regclass(?) IS NOT NULL", (name,)) is True
    return db.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) == 1


def stored_version(db: Database) -> int | None:
    """The schema version of the database, None for an empty one."""
    if table_exists(db, "schema_version"):
        version = int(db.scalar("SELECT MAX(version) FROM schema_version") or 0)
        # A SQLite file's header is what ingests before schema 2 read and bump: the higher one holds.
        return max(version, db.user_version()) if isinstance(db, SQLiteDatabase) else version
    if isinstance(db, SQLiteDatabase) and table_exists(db, "batches"):
        return db.user_version()  # written before schema 2: the version is in the file header
    if table_exists(db, "batches"):
        raise SchemaTooNew(f"{db.target} holds ingest tables but no schema_version: not a pinseal database?")
    return None


def _migrate(db: Database, version: int) -> None:
    if not isinstance(db, SQLiteDatabase):  # PostgreSQL support starts at schema 2
        raise RuntimeError(f"no migration from schema {version} on {db.dialect}")
    if version < 1:
        for table, column, declaration in COLUMNS_OF_1:
            columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    if version < 2:
        _add_bundle_times(db)


def _add_bundle_times(db: SQLiteDatabase) -> None:
    """Schema 2: bundles keyed by (hash, t). Each stored bundle's t is read from its own signed bytes
    (they were verified when stored; the key is looked up even if the device was revoked since)."""
    db.execute("ALTER TABLE bundles RENAME TO bundles_v1")
    for index in ("bundles_kid_seq", "bundles_kid_prev", "bundles_kid_link"):
        db.execute(f"DROP INDEX IF EXISTS {index}")
    for statement in schema.statements("sqlite"):
        if "bundles" in statement and "CREATE TABLE" in statement:
            db.execute(statement)
    public_keys = (
        dict(db.execute("SELECT kid, public_key FROM devices").fetchall())
        if table_exists(db, "devices")
        else {}
    )
    rows = db.execute(
        "SELECT hash, kid, seq, last_seq, prev, link, n_readings, raw, ingest_time_flag FROM bundles_v1"
    ).fetchall()
    for row in rows:
        db.execute(
            "INSERT INTO bundles (hash, t, kid, seq, last_seq, prev, link, n_readings, raw, ingest_time_flag)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row[0], _first_time(row[7], public_keys.get(row[1])), *row[1:]),
        )
    db.execute("DROP TABLE bundles_v1")
    log.info("schema 2: %d stored bundles keyed by their first reading's time", len(rows))


def _first_time(raw: bytes, public_key: bytes | None) -> int:
    if public_key is None:
        return 0
    try:
        parsed = bundle.verify_bundle(raw, keys.load_public_key(public_key))
    except (RejectedMessage, ValueError):
        return 0
    return first_reading_time(parsed)


def first_reading_time(parsed: bundle.Bundle) -> int:
    """The partition key of a bundle: the signed time of its first reading."""
    return int(parsed.rows[0][3]) if parsed.rows else 0
