"""SQLite: the embedded default, one machine, one file.

WAL lets the HTTP reads and `pinseal-ingest stats` run while a batch is being stored; `synchronous=FULL`
because a batch answered "stored" is dropped from the gateway's outbox and must survive a power cut.
Transactions are `BEGIN IMMEDIATE`: the write lock is taken up front, so whatever a batch checked (chain
head, stored bundles) cannot change before its rows are written, even with several worker processes on
the file; they then store one batch at a time, which is why a network outgrowing one core moves to
PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pinseal_ingest.storage.base import Cursor, Database
from pinseal_protocol.private_files import prepare_private_db

BUSY_TIMEOUT_S = 30.0


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.target = str(path)
        prepare_private_db(Path(path))  # folder 0700, files 0600: every gateway's readings
        self.conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def lock(self, table: Literal["gateways", "devices"], kids: Iterable[bytes]) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the whole file's write lock."""

    def is_retryable(self, exc: BaseException) -> bool:
        """Never: with the write lock held from BEGIN, no other writer can have raced this one."""
        return False

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        marks = ", ".join("?" for _ in columns)
        cursor = self.conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows
        )
        return max(cursor.rowcount, 0)

    def user_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
