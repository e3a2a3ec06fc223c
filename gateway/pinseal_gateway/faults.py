"""Deterministic fault points for the hardening suite (hil_tests), off unless an environment variable names
a file.

A crash test that kills the gateway "about 200 ms after the first publish" tests the scheduler, not the
code: the kill lands anywhere, or nowhere interesting. Instead the suite starts `pinseal-gateway run` with,
for example, PINSEAL_FAULT_HOLD_BEFORE_COMMIT=/tmp/x/held: the first time the store reaches that point
(its group written, the transaction not yet committed) it creates the file and blocks for ever; the test
waits for the file, SIGKILLs the gateway and restarts it. The file also disarms the point: a restarted
gateway with the same environment passes it. Unset (every production run), a hold point is one dict lookup.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

POINTS = {
    "store_commit": "PINSEAL_FAULT_HOLD_BEFORE_COMMIT",  # Pipeline._store_group: written, not committed
    "seal_commit": "PINSEAL_FAULT_HOLD_BEFORE_SEAL_COMMIT",  # seal_batch: batch written, not committed
}

_armed: dict[str, Path] = {
    point: Path(os.environ[var]) for point, var in POINTS.items() if os.environ.get(var)
}


def hold(point: str) -> None:
    """Block this thread for ever at `point` if the suite armed it and its file does not exist yet."""
    path = _armed.get(point)
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    threading.Event().wait()  # until SIGKILL: the transaction stays open and uncommitted
