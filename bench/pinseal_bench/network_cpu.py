"""CPU time of a process tree from /proc, for the network benchmark's CPU-ms per reading.

A tree is a root pid and every live process below it: the ingest's supervisor and its workers, or the
PostgreSQL postmaster and its backends. Each process counts utime + stime plus cutime + cstime, the CPU of
children it has already reaped: a backend or worker that exits between two samples then still counts
(its whole life moves into its parent's cutime when reaped, its CPU before the first sample having been
counted in the first sample under its own pid), so the difference of two samples is the tree's CPU in
between, whichever processes came and went.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (fields[0] is the state), None if gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children_map() -> dict[int, list[int]]:
    """ppid -> pids of every live process (one pass over /proc)."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """root and its live descendants."""
    children = children_map() if children is None else children
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def process_ms(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in ms (0 if it is gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # fields[11..14] are /proc stat fields 14..17: utime, stime, cutime, cstime (clock ticks)
    return sum(int(v) for v in fields[11:15]) * 1000 / CLK_TCK


def tree_ms(root: int) -> float:
    """CPU ms of a process tree (see the module's docstring for exited members)."""
    return sum(process_ms(pid) for pid in tree(root))
