"""What the gateway keeps of rejected messages: a budget per publisher, and retention.

Every rejection is counted (`rejected_total` by reason), but a stored row costs disk: a registered device
(or its stolen password) publishing garbage as fast as the broker takes it would otherwise grow the
database without limit. So each publisher may store a burst of rejection rows and then one a second;
the rest are tallied by reason as `rate_limited`. The publisher is the MQTT topic, not the bundle's
`kid`: the broker's ACL lets a login publish only on its own topic, while a `kid` in a bundle is
whatever the sender wrote. Rows older than MAX_AGE_S or beyond the newest MAX_ROWS are pruned (at most
once every PRUNE_EVERY_S) and tallied as `pruned`. The tally (table `rejections_unstored`, gauge
`pinseal_gateway_rejections_unstored{reason,why}`) is written in the group's own transaction, so stored
plus tallied is every rejection ever made, across restarts.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Gauge

from pinseal_protocol import retention
from pinseal_protocol.ratelimit import TokenBuckets

SCHEMA = retention.TALLY_SCHEMA

RATE_PER_S = 1.0  # rejection rows a publisher may store per second, sustained
BURST = 200  # ... and at once: a misbehaving device's first rejections are all kept as evidence
MAX_ROWS = 50_000  # with evidence of at most 2 KiB a row: ~100 MB at worst, ~15 MB typically
MAX_AGE_S = 30 * 86400
PRUNE_EVERY_S = 60.0

Row = tuple[
    object, ...
]  # store.INSERT_REJECTION's parameters: kid, topic, reason, detail, received_at, evidence
_TOPIC, _REASON = 1, 2


class RejectionPolicy:
    """Filters a group's rejection rows (database thread) and prunes the table when due."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        rate_per_s: float = RATE_PER_S,
        burst: int = BURST,
        max_rows: int = MAX_ROWS,
        max_age_s: float = MAX_AGE_S,
        prune_every_s: float = PRUNE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._buckets = TokenBuckets(rate_per_s, burst, clock=clock)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.prune_every_s = prune_every_s
        self._wall_clock = wall_clock
        self._next_prune = 0.0
        self._gauge_loaded = False
        self.unstored = Gauge(
            "pinseal_gateway_rejections_unstored",
            "Rejections counted but not in the rejections table, by reason and why (rate_limited, pruned)",
            ["reason", "why"],
            registry=registry,
        )

    def admit(self, conn: sqlite3.Connection, rows: Sequence[Row]) -> list[Row]:
        """The rows to insert; tallies the others and prunes when due, in the caller's transaction."""
        kept: list[Row] = []
        dropped: Tally[tuple[str, str]] = Tally()
        for row in rows:
            if self._buckets.allow(row[_TOPIC]):
                kept.append(row)
            else:
                dropped[(str(row[_REASON]), retention.RATE_LIMITED)] += 1
        changed = bool(dropped)
        if dropped:
            retention.count_unstored(conn, dropped)
        now = self._wall_clock()
        if now >= self._next_prune:
            self._next_prune = now + self.prune_every_s
            changed |= bool(retention.prune(conn, max_rows=self.max_rows, max_age_s=self.max_age_s, now=now))
        if changed or not self._gauge_loaded:
            # Read back inside the transaction: a rolled-back group is set again by its retry.
            for (reason, why), n in retention.unstored(conn).items():
                self.unstored.labels(reason, why).set(n)
            self._gauge_loaded = True
        return kept


def unstored_by_reason(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """For /status: reason -> {why: n} of rejections counted but not (or no longer) in the table."""
    out: dict[str, dict[str, int]] = {}
    for (reason, why), n in sorted(retention.unstored(conn).items()):
        out.setdefault(reason, {})[why] = n
    return out
