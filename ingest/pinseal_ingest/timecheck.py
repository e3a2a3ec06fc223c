"""The ingest's own judgement of a bundle's reading times (docs/protocol.md §9.6).

A gateway's time flag is only its signed word, and an old gateway (version 1 batches) sends none, so the
ingest checks the reading times of every bundle whose bytes it verifies. Its reference is the batch's
signed receive window, clamped to the ingest's own clock: a reading cannot be later than the gateway
received it (nor later than now), and a reading older than the age limit when the window opened was
already that old when the gateway received it. The window, not the ingest's clock, is the reference for
age so that a backlog delivered days after an outage is not called stale for the outage.
"""

from dataclasses import dataclass

from pinseal_protocol.bundle import Bundle

TIME_SOURCES_WITH_CLOCK = (1, 2)  # NTP or gateway ack time: Unix seconds; 0 (since boot) is not judged


@dataclass(frozen=True)
class TimeLimits:
    """The plausibility window; the same defaults as the gateway's `[verify]` section."""

    max_future_s: int = 300
    max_age_s: int = 30 * 86400


def time_flag(
    bundle: Bundle,
    first_received: int,
    last_received: int,
    now: float,
    limits: TimeLimits = TimeLimits(),
) -> str | None:
    """'future' / 'stale' when a reading's time is implausible (the gateway's flags), else None."""
    if bundle.time_source not in TIME_SOURCES_WITH_CLOCK:
        return None
    times = [reading.time for reading in bundle.readings]
    if max(times) > min(last_received, now) + limits.max_future_s:
        return "future"
    if min(times) < min(first_received, now) - limits.max_age_s:
        return "stale"
    return None
