"""Per-source token buckets, for deciding what a flood may still write (gateway and ingest alike).

A source (an MQTT topic, a gateway key id, a client address) earns `rate_per_s` tokens a second up to
`burst`; each admitted event spends one. The table of sources is bounded too, or a flood of distinct
sources would grow it without limit: beyond `max_sources`, sources whose bucket has refilled (the same as
never seen) go first, then the least recently inserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class TokenBuckets:
    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        *,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s < 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate_per_s >= 0, burst >= 1 and max_sources >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_sources = max_sources
        self.clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # source -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Hashable) -> bool:
        """Spend one of `source`'s tokens if it has one."""
        now = self.clock()
        tokens, at = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._evict(now)
        return allowed

    def _evict(self, now: float) -> None:
        full = [
            s
            for s, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate_per_s >= self.burst
        ]
        for source in full:
            del self._buckets[source]
        excess = len(self._buckets) - self.max_sources
        if excess > 0:  # every source is busy: forget the least recently used tenth at once
            for source in list(self._buckets)[: max(excess, self.max_sources // 10)]:
                del self._buckets[source]
