"""Per-source token buckets: burst, refill, independence of sources, a bounded table of sources."""

from __future__ import annotations

from pinseal_protocol.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_rate_per_source():
    clock = Clock()
    buckets = TokenBuckets(2.0, 10, clock=clock)
    assert sum(buckets.allow("a") for _ in range(100)) == 10
    assert sum(buckets.allow("b") for _ in range(5)) == 5  # another source has its own budget
    clock.t += 1.0
    assert sum(buckets.allow("a") for _ in range(100)) == 2
    clock.t += 1000.0
    assert sum(buckets.allow("a") for _ in range(100)) == 10  # refills to the burst, not beyond


def test_the_table_of_sources_stays_bounded():
    clock = Clock()
    buckets = TokenBuckets(1.0, 3, max_sources=100, clock=clock)
    for i in range(10_000):
        buckets.allow(i)
        assert len(buckets) <= 100
    busy = TokenBuckets(0.0, 1, max_sources=100, clock=clock)  # nobody refills: oldest go first
    for i in range(1000):
        busy.allow(i)
    assert len(busy) <= 100 and not busy.allow(999)
