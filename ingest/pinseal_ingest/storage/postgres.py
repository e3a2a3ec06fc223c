"""PostgreSQL: the network's database once it outgrows one machine.

Several ingest processes, on one host or many, write to it at once; the database, not any process's
memory, decides what is stored. Transactions run at READ COMMITTED with explicit row locks on the
signers they check (`lock`), and the unique constraints are the last word: a writer that loses a race
on one of them gets a unique violation, which `is_retryable` turns into running its batch again, where
it then finds the winner's rows (a duplicate, or a bundle already held).

Bundles are partitioned by month of their first reading's signed time. Partitions are made on demand,
each in a transaction of its own (`ensure_partition`), so a batch never holds the DDL lock on the table.
Times before 2000 or from 2100 on (a device whose clock never set, or a forged far-future time) fall in
two fixed edge partitions, so no monthly partition can ever overlap rows already stored.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors

from pinseal_ingest.storage.base import Cursor, Database, RetryTransaction

log = logging.getLogger(__name__)

PARTITION_FIRST_YEAR = 2000
PARTITION_END_YEAR = 2100
RETRYABLE = (errors.UniqueViolation, errors.DeadlockDetected, errors.SerializationFailure, RetryTransaction)
SCHEMA_LOCK = 0x70696E7365616C  # pg_advisory_lock key for schema changes ("pinseal")


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


_PLACEHOLDER = re.compile(r"\?")


def _translate(sql: str, cache: dict[str, str]) -> str:
    """`?` placeholders (the queries' portable form) to psycopg's `%s`."""
    out = cache.get(sql)
    if out is None:
        if "%" in sql:
            raise ValueError(f"a literal % in a portable query is ambiguous: {sql!r}")
        out = cache[sql] = _PLACEHOLDER.sub("%s", sql)
    return out


def _lock_key(table: str, kid: bytes) -> int:
    """A signed 64-bit advisory lock key for a signer (key ids are hashes, so their first 8 bytes are
    spread evenly; two signers sharing a key only ever wait for each other, never store wrongly)."""
    salt = 0x0101010101010101 if table == "devices" else 0
    return int.from_bytes(kid[:8], "big", signed=True) ^ salt


def month_start(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def month_of(t: int) -> tuple[int, int] | None:
    """(year, month) of a Unix time inside the monthly range; None for the edge partitions."""
    if t < month_start(PARTITION_FIRST_YEAR, 1) or t >= month_start(PARTITION_END_YEAR, 1):
        return None
    when = datetime.fromtimestamp(t, UTC)
    return when.year, when.month


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, connect_timeout_s: int = 10) -> None:
        self.target = redact(url)
        try:
            self.conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=connect_timeout_s,
                application_name=f"pinseal-ingest[{os.getpid()}]",  # which process, in pg_stat_activity
            )
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot connect to PostgreSQL at {self.target}: {exc}") from exc
        self._sql: dict[str, str] = {}
        self._months: set[tuple[int, int]] = set()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(_translate(sql, self._sql), params)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_translate(sql, self._sql), rows)  # type: ignore[arg-type]

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self.conn.transaction():
            yield self

    def lock(self, table: Literal["gateways", "devices"], kids: Iterable[bytes]) -> None:
        """Transaction-scoped advisory locks, one per signer: no row is written (a FOR UPDATE would
        dirty every device row a batch names), and they go with the transaction, also on a crash."""
        ordered = sorted({_lock_key(table, kid) for kid in kids})
        for key in ordered:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, RETRYABLE)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        names = ", ".join(columns)
        staging = f"{table}_import"
        self.conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with self.conn.cursor() as cur, cur.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        added = self.conn.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING"
        ).rowcount
        self.conn.execute(f"DROP TABLE {staging}")
        return max(added, 0)

    # -- partitions of `bundles` ---------------------------------------------------------------------

    def need_partition(self, t: int) -> None:
        """Raise `RetryTransaction` (creating the partition before the retry) if t's month has none
        known to this process; a partition another process made is found then, at no cost."""
        month = month_of(t)
        if month is not None and month not in self._months:
            raise RetryTransaction(f"no partition known for {month}", lambda: self.ensure_partition(month))

    def ensure_partition(self, month: tuple[int, int]) -> None:
        year, mon = month
        start = month_start(year, mon)
        end = month_start(year + mon // 12, mon % 12 + 1)
        name = f"bundles_{year:04d}_{mon:02d}"
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF bundles FOR VALUES FROM ({start}) TO ({end})"
            )
        self._months.add(month)
        log.info("bundles partition %s ready", name)

    def schema_ready(self) -> None:
        """The months that have a partition, read once at connect."""
        rows = self.conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'bundles'"
        ).fetchall()
        for (name,) in rows:
            match = re.fullmatch(r"bundles_(\d{4})_(\d{2})", name)
            if match:
                self._months.add((int(match[1]), int(match[2])))

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Serialise schema creation and migration between processes starting together."""
        self.conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    def close(self) -> None:
        self.conn.close()
