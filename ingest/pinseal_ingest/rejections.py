"""What the ingest keeps of refused requests: a budget per source, and retention.

Every refused request is counted (`batches_rejected_total` by reason), but each stored row costs disk
and anyone who can reach the port can send garbage (an anonymous POST flood grew the database 3.5 MB in
6.5 s). A source is the gateway a request names when that gateway is registered (its own batches'
rejections are then kept under its own budget, whatever else arrives), else the client's address (an
IPv6 one by its /64). Each source stores a burst of rows and then one a second, and unregistered sources
share a budget as well; the rest are tallied by reason as `rate_limited`.
Rows older than MAX_AGE_S or beyond the newest MAX_ROWS are pruned at most once every PRUNE_EVERY_S and
tallied as `pruned`. The tally (table `rejections_unstored`, gauge
`pinseal_ingest_rejections_unstored{reason,why}`, `pinseal-ingest stats`) is written in the same
transaction as the row it stands for, so stored plus tallied is every rejection, across restarts.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter as Tally
from collections.abc import Callable, Hashable
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Gauge

from pinseal_ingest import store
from pinseal_ingest.accept import Rejection
from pinseal_ingest.storage import Database
from pinseal_protocol import retention
from pinseal_protocol.ratelimit import TokenBuckets

RATE_PER_S = 1.0  # rejection rows a source may store per second, sustained
BURST = 200  # ... and at once
ANONYMOUS_RATE_PER_S = 10.0  # all unregistered sources together
ANONYMOUS_BURST = 1000
MAX_ROWS = 100_000  # evidence is at most 2 KiB a row
MAX_AGE_S = 30 * 86400
PRUNE_EVERY_S = 60.0
FLUSH_EVERY_S = 1.0

CLIENT: ContextVar[str | None] = ContextVar("pinseal_ingest_client", default=None)
"""The requesting client's address, set by the HTTP handler for the request it serves."""


def client_source(client: str | None) -> Hashable:
    """An IPv4 address as it is; an IPv6 address by its /64, which one host usually holds whole."""
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        return ("client", client)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return ("client", str(address.ipv4_mapped))
        return ("client", str(ipaddress.IPv6Network((address, 64), strict=False)))
    return ("client", str(address))


class RejectionPolicy:
    """Records a rejection (worker thread) if its source has budget, tallies it otherwise.

    A tallied rejection is not worth a transaction (and an fsync) of its own, or a flood would cost one
    per request: tallies wait in memory and are written with the next stored row, or at most every
    FLUSH_EVERY_S, or by `flush` at shutdown. The gauge always shows written plus waiting.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        rate_per_s: float = RATE_PER_S,
        burst: int = BURST,
        anonymous_rate_per_s: float = ANONYMOUS_RATE_PER_S,
        anonymous_burst: int = ANONYMOUS_BURST,
        max_rows: int = MAX_ROWS,
        max_age_s: float = MAX_AGE_S,
        prune_every_s: float = PRUNE_EVERY_S,
        flush_every_s: float = FLUSH_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets = TokenBuckets(rate_per_s, burst, clock=clock)
        self._anonymous = TokenBuckets(anonymous_rate_per_s, anonymous_burst, max_sources=1, clock=clock)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.prune_every_s = prune_every_s
        self.flush_every_s = flush_every_s
        self._next_prune = 0.0
        self._last_flush = 0.0
        self._pending: Tally[tuple[str, str]] = Tally()
        self._written: dict[tuple[str, str], int] | None = None  # the tally as committed
        self.unstored = Gauge(
            "pinseal_ingest_rejections_unstored",
            "Rejections counted but not in the rejections table, by reason and why (rate_limited, pruned)",
            ["reason", "why"],
            registry=registry,
            multiprocess_mode="livemax",  # workers: the table's tally is shared, each adds its waiting ones
        )

    def source(self, conn: Database, rejection: Rejection, client: str | None) -> Hashable:
        kid = rejection.gateway_kid
        if kid is not None and conn.execute("SELECT 1 FROM gateways WHERE kid = ?", (kid,)).fetchone():
            return ("gateway", kid)
        return client_source(client)

    def _allow(self, source: Hashable) -> bool:
        """The source's own budget; unregistered sources also share one budget between them all, so a
        flood from many addresses is bounded too (registered gateways are not held back by it)."""
        if not self._buckets.allow(source):
            return False
        return (isinstance(source, tuple) and source[0] == "gateway") or self._anonymous.allow("anonymous")

    def record(self, conn: Database, rejection: Rejection, now: float, client: str | None) -> bool:
        """Store `rejection` (with waiting tallies and a due prune, one transaction) or tally it; True
        if stored."""
        if not self._allow(self.source(conn, rejection, client)):
            self._pending[(rejection.reason, retention.RATE_LIMITED)] += 1
            if now - self._last_flush >= self.flush_every_s:
                self.flush(conn, now)
            else:
                self._show()
            return False
        self._write(conn, now, rejection)
        return True

    def flush(self, conn: Database, now: float | None = None) -> None:
        """Write the waiting tallies (and prune if due)."""
        self._write(conn, time.time() if now is None else now, None)

    def _write(self, conn: Database, now: float, rejection: Rejection | None) -> None:
        pending = dict(self._pending)
        with conn.transaction():
            if rejection is not None:
                store.record_rejection(
                    conn,
                    reason=rejection.reason,
                    detail=rejection.detail,
                    received_at=now,
                    gateway_kid=rejection.gateway_kid,
                    batch_hash=rejection.batch_hash,
                    bundle_index=rejection.bundle_index,
                    evidence=rejection.evidence,
                )
            retention.count_unstored(conn, pending)
            if now >= self._next_prune:
                retention.prune(conn, max_rows=self.max_rows, max_age_s=self.max_age_s, now=now)
            written = retention.unstored(conn)
        # committed
        if now >= self._next_prune:
            self._next_prune = now + self.prune_every_s
        self._pending -= Tally(pending)
        self._written = written
        self._last_flush = now
        self._show()

    def _show(self) -> None:
        totals = Tally(self._written or {})
        totals.update(self._pending)
        for (reason, why), n in totals.items():
            self.unstored.labels(reason, why).set(n)
