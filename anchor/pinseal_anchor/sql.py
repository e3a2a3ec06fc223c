"""The SQL database the anchoring outbox lives in, as a Protocol, and a small SQLite implementation.

The outbox shares the ingest's database (PostgreSQL there) so that sealing a root and recording its leaves
commit with the same durability as the batches they anchor; a gateway anchoring its own roots uses SQLite.
The outbox therefore talks to a minimal interface that both can satisfy: `?` placeholders (the PostgreSQL
adapter translates them), one statement per `execute`, and an explicit `transaction()`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from pinseal_protocol.private_files import prepare_private_db


class Cursor(Protocol):
    """What `execute` returns: DB-API rows."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """A connection the outbox can use: `dialect` is "sqlite" or "postgresql"."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def transaction(self) -> AbstractContextManager[None]: ...


class Rows:
    """A statement's rows, fetched at once (so no cursor is shared between threads)."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class SqliteDatabase:
    """`Database` over one sqlite3 connection in autocommit mode; `transaction()` is BEGIN IMMEDIATE.

    A lock serialises statements from several threads (the anchorer's and a status reader's); inside a
    transaction the lock is held throughout, so another thread's statement waits rather than joining it.
    """

    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            prepare_private_db(Path(path))
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.RLock()
        self._in_transaction = False
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        with self._lock:
            cursor = self._conn.execute(sql, tuple(params))
            rows = cursor.fetchall()
            return Rows(rows, cursor.rowcount)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._in_transaction:
                raise RuntimeError("transactions do not nest")
            self._conn.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._in_transaction = False

    def close(self) -> None:
        with self._lock:
            self._conn.close()
