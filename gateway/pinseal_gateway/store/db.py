"""One SQLite database, one thread that touches it.

Every read and write runs in a single dedicated thread, so writes are serialized without locks and
SQLite never sees the same connection from two threads; asyncio code awaits `run`, the CLI calls
`run_sync`. WAL lets other processes (the CLI while the daemon runs) read and write concurrently, and
`synchronous=FULL` makes a commit durable before `run` returns: the gateway acks only after that.
Functions passed to `run` manage their own transaction with `with conn:`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pinseal_gateway.store import batches, bundles, devices, rejections
from pinseal_protocol.private_files import prepare_private_db

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 3  # 2: device_state.linear; 3: uint64 columns may hold 8-byte BLOBs (bundles.to_u64)
BUSY_TIMEOUT_S = 30.0


def _connect(path: Path) -> sqlite3.Connection:
    prepare_private_db(path)  # folder 0700, files 0600: password hashes and readings
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level="DEFERRED", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Create every table (ours and the batcher's) and bring an older schema up to this one;
    `user_version` marks the schema."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database schema {version} is newer than this gateway ({SCHEMA_VERSION})")
    with conn:
        for schema in (devices.SCHEMA, bundles.SCHEMA, batches.SCHEMA, rejections.SCHEMA):
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
        state_columns = {row[1] for row in conn.execute("PRAGMA table_info(device_state)")}
        if "linear" not in state_columns:
            # schema 1: every device starts non-linear, i.e. its chain is walked with queries as before
            log.info("database schema %d -> %d: device_state.linear", version, SCHEMA_VERSION)
            conn.execute("ALTER TABLE device_state ADD COLUMN linear INTEGER NOT NULL DEFAULT 0")
        if 0 < version < 3:
            # Schema 3 changes no table: every schema-2 value (an INTEGER below 2**63) is already in the
            # schema-3 form. The version moves so that a schema-2 gateway, which would read a BLOB seq
            # as garbage, refuses this file instead of corrupting its chain state.
            log.info("database schema %d -> %d: seq, boot and bt above 2**63 as 8-byte BLOBs", version, 3)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class Database:
    """The gateway's SQLite database and the one thread that uses it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinseal-db")
        self._conn: sqlite3.Connection = self._executor.submit(_connect, self.path).result()
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in the database thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn, *args)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking `run`, for the CLI and other non-async callers."""
        return self._executor.submit(fn, self._conn, *args).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._executor.submit(self._conn.close).result()
        finally:
            self._executor.shutdown(wait=True)
