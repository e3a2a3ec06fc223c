"""After a group's commit: its metrics and log lines, so a flood of rejections never becomes a log flood."""

from __future__ import annotations

import logging
import time

from pinseal_gateway.metrics import Metrics
from pinseal_gateway.store.commit import CommittedGroup

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0  # per (kid, reason): one rejection log line, then a summary at most this often


class RejectionLog:
    """Logs rejections with their key id without letting a flood turn into a log flood."""

    def __init__(self) -> None:
        self._last: dict[tuple[bytes | None, str], tuple[float, int]] = {}

    def log(self, kid: bytes | None, reason: str, detail: str, now: float) -> None:
        key = (kid, reason)
        last, suppressed = self._last.get(key, (0.0, 0))
        if now - last < LOG_EVERY_S:
            self._last[key] = (last, suppressed + 1)
            return
        if len(self._last) > 10000:
            self._last.clear()
        self._last[key] = (now, 0)
        extra = f" (+{suppressed} more since last report)" if suppressed else ""
        log.warning("rejected %s from %s: %s%s", reason, kid.hex() if kid else "?", detail, extra)


class GroupReport:
    """Counts a committed group's outcomes into the metrics and logs what an operator should see."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._rejection_log = RejectionLog()

    def record(self, result: CommittedGroup, replies_sent: int) -> None:
        """`replies_sent`: signed acks and signed rejections published for this group."""
        metrics = self._metrics
        rejections_sent = 0
        now = time.time()
        accepted = readings = 0
        for outcome in result.outcomes:
            if outcome.status == "rejected":
                reason = outcome.reason or "rejected"
                metrics.rejected.labels(reason).inc()
                if reason == "conflict":
                    metrics.conflicts.inc()
                self._rejection_log.log(outcome.kid, reason, outcome.detail, now)
                if outcome.ack is not None:
                    metrics.rejections_sent.labels(reason).inc()
                    rejections_sent += 1
                continue
            if outcome.status == "duplicate":
                metrics.duplicates.inc()
                continue
            accepted += 1
            readings += outcome.n_readings
            if outcome.chain_gap:
                metrics.chain_gaps.inc()
                assert outcome.kid is not None
                log.info("chain gap before a bundle of %s (stored, flagged)", outcome.kid.hex())
            if outcome.time_flag:
                metrics.time_flags.labels(outcome.time_flag).inc()
        acks_sent = replies_sent - rejections_sent
        if acks_sent:
            metrics.acks_sent.inc(acks_sent)
        metrics.bundles_accepted.inc(accepted)
        metrics.readings_accepted.inc(readings)
        metrics.group_size.observe(len(result.outcomes))
        for kid, seen in result.last_seen.items():
            metrics.device_last_seen.labels(kid.hex()).set(seen)
        if acks_sent:
            for outcome in result.outcomes:
                if outcome.ack is not None and outcome.kid is not None and outcome.status != "rejected":
                    metrics.last_ack[outcome.kid] = result.commit_time
                    metrics.device_last_ack.labels(outcome.kid.hex()).set(result.commit_time)
