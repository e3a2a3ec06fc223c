"""`prepare_private_db` on a database another connection of this process has open must not touch its
locks: closing any descriptor of a file drops every POSIX lock the process holds on it. Before the fix it
opened and closed the file every time, so a second connection (the anchorer beside the gateway's store)
released the first one's SQLite locks, and another process went on reading stale pages."""

import sqlite3
import subprocess
import sys
from pathlib import Path

from pinseal_protocol.private_files import prepare_private_db

HOLDS_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    conn.execute("BEGIN EXCLUSIVE")
except sqlite3.OperationalError:
    print("locked")
else:
    print("free")
"""


def other_process_sees(path: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", HOLDS_LOCK, str(path)], capture_output=True, text=True, timeout=30
    ).stdout.strip()


def test_preparing_an_open_database_keeps_its_locks(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    prepare_private_db(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # this process holds the file's write lock
    holder.execute("INSERT INTO t VALUES (1)")
    try:
        assert other_process_sees(path) == "locked"
        prepare_private_db(path)  # what a second connection's open does first
        assert other_process_sees(path) == "locked", "the lock of the open connection was dropped"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
