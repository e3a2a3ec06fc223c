"""Where the ingest keeps what it accepted: SQLite on one machine, PostgreSQL for a network.

`open_database` picks the engine from the target (a `postgresql://` URL, else a file path) and brings its
schema to this ingest's version; everything above it speaks `Database` (base.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pinseal_ingest.storage.base import Database, RetryTransaction
from pinseal_ingest.storage.migrations import SchemaTooNew, prepare

__all__ = ["Database", "RetryTransaction", "SchemaTooNew", "is_url", "open_database", "retrying"]

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_ATTEMPTS = 10

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str | Path) -> bool:
    return str(target).startswith(URL_SCHEMES)


def open_database(target: str | Path) -> Database:
    """Connect and prepare the schema (create, migrate or refuse)."""
    if is_url(target):
        from pinseal_ingest.storage.postgres import PostgresDatabase

        db: Database = PostgresDatabase(str(target))
    else:
        from pinseal_ingest.storage.sqlite import SQLiteDatabase

        db = SQLiteDatabase(target)
    try:
        prepare(db)
    except BaseException:
        db.close()
        raise
    return db


def retrying(db: Database, work: Callable[[], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run `work` (which opens its own transactions) again while it loses races to concurrent writers.

    Each attempt starts from a rolled-back transaction and sees what the winner committed, so the retry
    decides with the database's word, not with anything this process remembered. Bounded: a race lost
    `attempts` times in a row is raised (the gateway's retry then comes back later).
    """
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as exc:
            if attempt == attempts or not db.is_retryable(exc):
                raise
            prepare = getattr(exc, "prepare", None)
            if prepare is not None:
                prepare()
            log.debug("attempt %d lost a race (%s): running it again", attempt, exc)
    raise AssertionError("unreachable")
