"""Private files for the host tools' SQLite databases (gateway and ingest alike).

Both databases hold what others must not read (MQTT password hashes, every reading), and a service's
usual umask (022) would create them world-readable in a world-listable folder. The database file is
created 0600 before SQLite opens it: SQLite gives its -wal, -shm and -journal files the permissions of
the database file, so they follow without touching the process-wide umask (which other threads share).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("pinseal_protocol.private_files")

SIDE_FILES = ("-wal", "-shm", "-journal")


def prepare_private_db(path: Path) -> None:
    """Create `path`'s folder (0700) and the empty database file (0600) if missing; tighten an existing
    database or side file that group or others can access, with a warning naming it.

    An existing folder is left alone: it may be shared (a working directory), and with the files 0600
    it only shows their names.
    """
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    if not path.exists():
        # Never open (and close) a database file that exists: closing any descriptor of a file drops
        # every POSIX lock this process holds on it, so a second connection's open would silently
        # release the first one's SQLite locks (another process then read stale WAL pages for good).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        try:
            current = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if current & 0o077:
            os.chmod(file, 0o600)
            log.warning("%s was readable by others (mode %04o): tightened to 0600", file, current)
