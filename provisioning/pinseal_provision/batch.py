"""Many boards: one after another or several ports at once, each with its own report.

A production run provisions a tray of boards; one bad cable must not stop the other nineteen. Each board runs
the same function (deploy, enroll, ...) in its own thread with its own serial port, errors are caught per
board and reported with their hint, and the summary says which ports to redo (a rerun of a failed board
continues where it stopped: deploy and enroll are resumable).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pinseal_provision.errors import ProvisionError


@dataclass
class BoardResult:
    port: str
    ok: bool
    duration_s: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_one(port: str, job: Callable[[str], dict[str, Any]]) -> BoardResult:
    started = time.monotonic()
    try:
        detail = job(port)
    except ProvisionError as exc:
        return BoardResult(port, False, time.monotonic() - started, error=str(exc), hint=exc.hint)
    except Exception as exc:  # a bug must not end the tray either; keep its traceback for the report
        return BoardResult(
            port,
            False,
            time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
            hint=traceback.format_exc(),
        )
    return BoardResult(port, True, time.monotonic() - started, detail=detail)


def run_batch(
    ports: Sequence[str],
    job: Callable[[str], dict[str, Any]],
    *,
    parallel: int = 1,
    on_done: Callable[[BoardResult], None] | None = None,
) -> list[BoardResult]:
    """Run `job(port)` for every port (`parallel` at a time); results in the order of `ports`."""
    results: dict[str, BoardResult] = {}

    def task(port: str) -> None:
        result = run_one(port, job)
        results[port] = result
        if on_done is not None:
            on_done(result)

    if parallel <= 1:
        for port in ports:
            task(port)
    else:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="provision") as pool:
            list(pool.map(task, ports))
    return [results[p] for p in ports]
