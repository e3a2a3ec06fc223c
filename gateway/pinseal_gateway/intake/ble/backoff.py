"""Per-device backoff: a device whose sessions fail is retried later and later, up to a bound.

Home Assistant's Bluetooth guidance: never hammer a device (or the adapter) that keeps failing. A session
that delivered a bundle made progress and resets the delay; one that failed doubles it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BACKOFF_MIN_S = 0.5


@dataclass
class Backoff:
    """Retry times by device (the key is the advertised key id prefix: a device's address may change)."""

    max_s: float
    min_s: float = BACKOFF_MIN_S
    _failures: dict[bytes, int] = field(default_factory=dict)
    _not_before: dict[bytes, float] = field(default_factory=dict)

    def failed(self, key: bytes, now: float) -> float:
        """Record a failed session; the delay before the next try."""
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        delay = min(self.max_s, self.min_s * 2 ** min(n - 1, 30))
        self._not_before[key] = now + delay
        return delay

    def succeeded(self, key: bytes) -> None:
        """A session made progress: the next failure starts from the smallest delay again."""
        self._failures.pop(key, None)
        self._not_before.pop(key, None)

    def due(self, key: bytes, now: float) -> bool:
        return now >= self._not_before.get(key, 0.0)
