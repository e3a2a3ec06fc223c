"""One `make run` per state folder (and one `make hil-arm64` per arm64 tree, which uses it too).

Two runs on the same folder start boards from the same flash images, so the same device keys and counters
publish twice: the gateway then sees conflicting bundles from each device, and both copies of every board
stay wedged for good. The lock is an advisory `flock` on a file in the folder, held for the run's life
(the kernel drops it when the process dies, so a crashed run never leaves a stale lock); the file says who
holds it, for the message the second run prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO, Any

LOCK_NAME = "run.lock"


class FolderBusy(RuntimeError):
    """Another process holds the state folder's lock."""


def holder(path: Path) -> dict[str, Any]:
    """What the lock file says about the process holding it ({} if unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_state_folder(
    workdir: Path, command: str = "make run", elsewhere: str = "give this one its own folder with --workdir"
) -> IO[str]:
    """Take the folder's lock or raise FolderBusy naming the holder; keep the returned file open.

    `command` is what the holder is called in the message, `elsewhere` how to run a second one anyway."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held open for the run's life: the lock lives with it
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        who = holder(path)
        since = time.strftime("%H:%M:%S", time.localtime(who["started"])) if "started" in who else "?"
        raise FolderBusy(
            f"{workdir} is in use by another {command} (pid {who.get('pid', '?')}, started {since}, "
            f"command {who.get('command', '?')}): stop that one first (Ctrl-C in its terminal, or "
            f"kill {who.get('pid', '<pid>')}), or {elsewhere}"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "started": time.time(), "command": command}))
    handle.flush()
    return handle
