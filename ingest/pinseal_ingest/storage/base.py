"""The one interface the ingest's queries run on, whatever engine holds the data.

The queries (store, registry, accept, rejections) are plain SQL with `?` placeholders that both engines
run unchanged; what differs between SQLite and PostgreSQL is kept here and in the two backends: how a
transaction takes its locks, which errors mean "a concurrent writer got there first, run it again", bulk
loading, and table partitions. A thin layer rather than SQLAlchemy Core: the ingest has a dozen
queries, all of them portable SQL already, and what an ORM would add (query building, a connection
pool, type mapping) costs a dependency and a per-query overhead on the path that every reading takes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    """What both drivers' cursors give: rows, and how many rows a write touched."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class RetryTransaction(Exception):
    """Raised inside a transaction to have it rolled back and run again after `prepare()`.

    A PostgreSQL bundle whose month has no partition yet raises this: the partition is created in a
    transaction of its own (DDL would otherwise hold a lock on every bundle insert until the batch
    commits), then the batch runs again.
    """

    def __init__(self, why: str, prepare: Any = None) -> None:
        super().__init__(why)
        self.prepare = prepare


class Database(ABC):
    """One connection to the ingest's database; not shared between threads or processes."""

    dialect: Dialect
    target: str
    """Where the data is, for messages: a file path, or a PostgreSQL URL without its password."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (`?` placeholders) outside or inside the current transaction."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Database]:
        """`with db.transaction():` BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    @abstractmethod
    def lock(self, table: Literal["gateways", "devices"], kids: Iterable[bytes]) -> None:
        """Hold the registry rows of these signers until the transaction ends.

        Two writers checking the same gateway's chain or the same device's history would each see the
        other's rows as absent and both store; the lock makes the second wait for the first's commit and
        then see its rows. Taken in key order, so two batches never wait on each other in a cycle.
        """

    @abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether `exc` means a concurrent writer won a race (the transaction, run again, will see
        its rows and decide otherwise) rather than a fault."""

    @abstractmethod
    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Insert rows in bulk inside the current transaction, skipping those whose key is already
        stored (an import run twice adds nothing); returns how many were added. `rows` is consumed as
        it is read, so an import of a million devices never holds them all."""

    @abstractmethod
    def close(self) -> None: ...

    def schema_lock(self) -> AbstractContextManager[None]:
        """Held while the schema is created or migrated, against other processes doing the same."""
        return nullcontext()

    def need_partition(self, t: int) -> None:
        """Called before a bundle with first-reading time t is written (PostgreSQL's partitions)."""
        return None

    def schema_ready(self) -> None:
        """Called once the schema is this ingest's: read what the engine caches about it."""
        return None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]
