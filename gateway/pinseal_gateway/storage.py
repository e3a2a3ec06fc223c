"""Writers that pause while the database cannot write (a full disk above all) and resume by themselves.

A full disk is an operating condition, not a bug, so it must neither stop the gateway nor lose anything:
the pipeline's store keeps its group (nothing uncommitted is acked; the broker keeps the rest), the
batcher keeps its bundles unsealed and the uplink keeps its batch queued. Each retries with backoff and
says so once: one log line when its pause starts, a reminder at most every `LOG_EVERY_S` while it lasts,
one line when it ends, and `pinseal_gateway_storage_full{part}` = 1 meanwhile
(`pinseal_gateway_storage_write_failures{part, error}` counts the failed tries). Without that a writer
retrying a failing write in a loop wrote a traceback per try (issue 11 #3: 20,000 in 23 s).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from pinseal_gateway.metrics import Metrics

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
STORAGE_RETRY_MAX_S = 5.0
"""Longest wait between two tries of a paused writer: a failed write costs next to nothing, and the
gateway should be back within seconds of space returning."""


def is_storage_error(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot write now (full, locked, I/O), not that the data is bad.

    Such errors are retried; any other exception is a bug in handling the data at hand.
    """
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL: "database or disk is full"."""
    if not isinstance(exc, sqlite3.Error):
        return False
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


class WritePause:
    """One writer's pause: backoff between tries, metrics, and log lines once per state change."""

    def __init__(
        self,
        metrics: Metrics,
        part: str,
        *,
        initial_s: float = 0.5,
        max_s: float = STORAGE_RETRY_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.part = part
        self.initial_s = initial_s
        self.max_s = max(max_s, initial_s)
        self.clock = clock
        self._since: float | None = None
        self._failures = 0
        self._last_log = 0.0
        self._delay = initial_s
        metrics.storage_full.labels(part).set(0)

    def failed(self, exc: BaseException) -> float:
        """Record one failed try; returns how long to wait before the next."""
        now = self.clock()
        full = is_disk_full(exc)
        self.metrics.storage_write_failures.labels(self.part, "full" if full else "other").inc()
        self.metrics.storage_full.labels(self.part).set(1 if full else 0)
        if self._since is None:
            self._since, self._failures, self._last_log, self._delay = now, 1, now, self.initial_s
            if full:
                log.error(
                    "storage full: %s paused (%s); it keeps what it holds and retries until space returns",
                    self.part,
                    exc,
                )
            else:
                log.error(
                    "%s failed; retrying with backoff (repeats logged every %.0f s)",
                    self.part,
                    LOG_EVERY_S,
                    exc_info=exc,
                )
            return self._delay
        self._failures += 1
        self._delay = min(self._delay * 2, self.max_s)
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.error(
                "%s still paused after %.0f s and %d failed tries: %s",
                self.part,
                now - self._since,
                self._failures,
                exc,
            )
        return self._delay

    def succeeded(self) -> None:
        """A write went through: end the pause (if any) and say so."""
        if self._since is None:
            return
        log.warning(
            "storage writable again: %s resumed after %.1f s and %d failed tries",
            self.part,
            self.clock() - self._since,
            self._failures,
        )
        self.metrics.storage_full.labels(self.part).set(0)
        self._since = None
        self._failures = 0
