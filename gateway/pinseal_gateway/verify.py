"""One received message to a verdict: protocol checks, registry, time sanity (`check_message`).

The checks against stored history come later, in the database thread (`store.bundles.classify_history`).

Nothing here raises for bad input: every message becomes `Checked` (verified, maybe time-flagged) or a
`Rejection` (one reason of docs/protocol.md §8, with the evidence the rejections table keeps). A bug in
a decoder is still reported as a rejection (`malformed`, with the exception in the detail and logged),
so one poisonous message can never stop the pipeline or be acked as accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pinseal_gateway.registry import Registry
from pinseal_protocol import bundle as pbundle
from pinseal_protocol.bundle import Bundle, Row
from pinseal_protocol.errors import RejectedMessage, TooLarge, WrongTopic

log = logging.getLogger(__name__)

TOPIC_PREFIX = "pinseal/v1/"
UP_SUFFIX = "/up"
TIME_SOURCES_WITH_CLOCK = (1, 2)  # NTP or gateway ack time: Unix seconds, comparable with ours
EVIDENCE_LIMIT = (
    256  # bytes kept from a rejected message other than a conflict (a flood must not fill the disk)
)


@dataclass(frozen=True, slots=True)
class Limits:
    max_bundle_bytes: int = pbundle.MAX_SIZE
    max_future_s: int = 300
    max_age_s: int = 2592000


@dataclass(slots=True)  # built per bundle twice (worker, gateway): see Bundle on frozen
class Checked:
    """A message whose bundle passed every stateless check, with its readings as table rows.

    The rows are built while verifying (in the verify worker), so the database thread only inserts them.
    """

    bundle: Bundle
    time_flag: str | None  # None, "future" or "stale"
    rows: Sequence[Row]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message refused before any history check: what its row in the rejections table holds.

    Not an exception (protocol's `RejectedMessage` is what the checks raise; this is the verdict).
    """

    reason: str
    detail: str
    kid: bytes | None  # the topic's key id (the authenticated publisher) when it parses
    evidence: bytes


def topic_kid(topic: str) -> bytes | None:
    """The key id in `pinseal/v1/<kid-hex>/up`, or None if the topic is not a device up topic."""
    if not topic.startswith(TOPIC_PREFIX) or not topic.endswith(UP_SUFFIX):
        return None
    text = topic[len(TOPIC_PREFIX) : -len(UP_SUFFIX)]
    if len(text) != 32 or text != text.lower():
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def time_flag(time_source: int, min_time: int, max_time: int, now: float, limits: Limits) -> str | None:
    """'future' / 'stale' when a reading's clock time is implausible; None when fine or not a clock time."""
    if time_source not in TIME_SOURCES_WITH_CLOCK:
        return None
    if max_time > now + limits.max_future_s:
        return "future"
    if min_time < now - limits.max_age_s:
        return "stale"
    return None


def check_message(
    topic: str, payload: bytes, registry: Registry, limits: Limits, now: float
) -> Checked | Rejection:
    """Every check that needs no stored history, in docs/protocol.md §8 order; never raises."""
    kid = topic_kid(topic)
    try:
        if len(payload) > limits.max_bundle_bytes:
            raise TooLarge(f"{len(payload)} bytes > {limits.max_bundle_bytes}")
        if kid is None:
            # Checked after the size (§8 order) but before decoding: a message not on a device's up
            # topic is addressed to nobody we know.
            raise WrongTopic(f"not a device up topic: {topic[:100]!r}")
        bundle = pbundle.verify_bundle(payload, registry.resolve, topic_kid=kid, raw_key=registry.resolve_raw)
    except RejectedMessage as exc:
        return Rejection(exc.reason, exc.detail, kid, bytes(payload[:EVIDENCE_LIMIT]))
    except Exception as exc:  # a decoder bug must not take the gateway down or let the message through
        log.exception(
            "verifier failed on a message from %s; rejecting it as malformed", kid.hex() if kid else "?"
        )
        return Rejection("malformed", f"verifier error: {exc!r}"[:200], kid, bytes(payload[:EVIDENCE_LIMIT]))
    flag = time_flag(bundle.time_source, bundle.min_time, bundle.max_time, now, limits)
    return Checked(bundle, flag, bundle.rows)
