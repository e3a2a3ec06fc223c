"""A verified group into the database in one transaction: history, bundles, readings, rejections, state.

Runs in the database thread. `GroupCommitter.commit` classifies each verified bundle against the
device's history (new, duplicate, conflict, replay), writes everything in ONE transaction (one fsync
per group is what makes thousands of bundles per second possible), and reports per message what
happened (`MessageOutcome`) with the contiguous seq its ack will carry, read right after the commit.

If writing raises anything but a database error, one of the messages is at fault: the group is
written again with each message in its own savepoint, so that message alone becomes an
`internal_error` rejection and every other one still commits and is acked.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pinseal_gateway import faults
from pinseal_gateway.link import Message
from pinseal_gateway.storage import is_storage_error
from pinseal_gateway.store import bundles as store
from pinseal_gateway.store.rejections import RejectionPolicy
from pinseal_gateway.verify import EVIDENCE_LIMIT, Checked, Rejection, topic_kid
from pinseal_protocol.errors import Conflict, Replayed
from pinseal_protocol.history import StoredBundle, Verdict
from pinseal_protocol.rejection import NOTIFIED_REASONS

log = logging.getLogger(__name__)


@dataclass(slots=True)
class MessageOutcome:
    """What the commit did with one message of a group (and, once signed, the ack it earned)."""

    message: Message
    status: str  # "accepted", "duplicate" or "rejected"
    reason: str | None = None
    detail: str = ""
    kid: bytes | None = None
    n_readings: int = 0
    chain_gap: bool = False
    time_flag: str | None = None
    bundle_hash: bytes | None = None
    ack_seq: int | None = None  # the contiguous seq the ack carries, read right after the commit
    next_seq: int | None = None  # set on a rejection the device is told of (docs/protocol.md §5.1)
    ack: bytes | None = None  # the signed ack, or the signed rejection


@dataclass(slots=True)
class CommittedGroup:
    """A group's outcomes, in message order, and when it committed (the time its acks carry)."""

    outcomes: list[MessageOutcome] = field(default_factory=list)
    last_seen: dict[bytes, float] = field(default_factory=dict)
    commit_time: int = 0


class GroupCommitter:
    """Commits verified groups; holds the per-device state cache (database thread only)."""

    def __init__(self, rejections: RejectionPolicy) -> None:
        self._states = store.DeviceStates()
        self._rejections = rejections  # budget per publisher, retention

    def commit(
        self, conn: sqlite3.Connection, group: list[Message], checked: Sequence[Checked | Rejection]
    ) -> CommittedGroup:
        """Classify against history and store everything in one transaction; raises database errors."""
        result = CommittedGroup()
        try:
            with conn:
                self._write_group(conn, group, checked, result)
                faults.hold("store_commit")  # test hook (hil_tests): off unless armed
        except Exception as exc:
            self._states.invalidate()  # the cache may hold state of the rolled-back transaction
            if is_storage_error(exc):
                raise
            log.warning("storing a group of %d raised %r; storing it one message at a time", len(group), exc)
            result = CommittedGroup()
            try:
                with conn:
                    self._write_isolated(conn, group, checked, result)
            except BaseException:
                self._states.invalidate()
                raise
        except BaseException:
            self._states.invalidate()
            raise
        result.commit_time = int(time.time())
        states = self._states
        for outcome in result.outcomes:
            if outcome.status != "rejected":
                assert outcome.kid is not None
                # What the ack carries: the device's contiguous seq as this commit left it.
                outcome.ack_seq = states.get(conn, outcome.kid).contiguous_seq
            elif outcome.reason in NOTIFIED_REASONS and outcome.kid is not None:
                # What the signed rejection carries: where the device's counter must continue.
                high = states.peek(conn, outcome.kid).high_seq
                outcome.next_seq = 0 if high is None else high + 1
                if outcome.bundle_hash is None:  # refused before it parsed as a bundle: its bytes' hash
                    outcome.bundle_hash = hashlib.sha256(outcome.message.payload).digest()
        return result

    def _write_isolated(
        self,
        conn: sqlite3.Connection,
        group: list[Message],
        checked: Sequence[Checked | Rejection],
        result: CommittedGroup,
    ) -> None:
        """`_write_group` one message at a time, each in a savepoint; a message whose handling raises
        (other than a database error, which fails the group) is rolled back to its savepoint and
        recorded as an `internal_error` rejection instead."""
        if not conn.in_transaction:
            conn.execute("BEGIN")  # else the first RELEASE would commit on its own
        for message, check in zip(group, checked, strict=True):
            one = CommittedGroup()
            conn.execute("SAVEPOINT pinseal_message")
            try:
                self._write_group(conn, [message], [check], one)
            except Exception as exc:
                conn.execute("ROLLBACK TO pinseal_message")
                self._states.invalidate()  # reloads, inside this transaction, what the others wrote
                if is_storage_error(exc):
                    raise
                kid = topic_kid(message.topic)
                log.error(
                    "internal error storing a message from %s; rejecting it as internal_error",
                    kid.hex() if kid else "?",
                    exc_info=exc,
                )
                detail = f"{type(exc).__name__}: {exc}"[:200]
                evidence = bytes(message.payload[:EVIDENCE_LIMIT])
                one = CommittedGroup()
                self._write_group(conn, [message], [Rejection("internal_error", detail, kid, evidence)], one)
            finally:
                conn.execute("RELEASE pinseal_message")
            result.outcomes.extend(one.outcomes)
            result.last_seen.update(one.last_seen)

    def _write_group(
        self,
        conn: sqlite3.Connection,
        group: list[Message],
        checked: Sequence[Checked | Rejection],
        result: CommittedGroup,
    ) -> None:
        reading_rows: list[tuple[object, ...]] = []
        rejection_rows: list[tuple[object, ...]] = []
        touched: dict[bytes, store.DeviceState] = {}
        states = self._states
        for message, check in zip(group, checked, strict=True):
            if isinstance(check, Rejection):
                rejection_rows.append(
                    (
                        check.kid,
                        message.topic[:200],
                        check.reason,
                        check.detail,
                        message.received_at,
                        check.evidence,
                    )
                )
                result.outcomes.append(
                    MessageOutcome(message, "rejected", check.reason, check.detail, check.kid)
                )
                continue
            bundle = check.bundle
            kid = bundle.kid
            state = states.get(conn, kid)
            try:
                verdict = store.classify_history(conn, state, bundle)
            except (Conflict, Replayed) as exc:
                evidence = bundle.raw if isinstance(exc, Conflict) else bundle.raw[:256]
                rejection_rows.append(
                    (kid, message.topic[:200], exc.reason, exc.detail, message.received_at, evidence)
                )
                result.outcomes.append(
                    MessageOutcome(
                        message, "rejected", exc.reason, exc.detail, kid, bundle_hash=bundle.bundle_hash
                    )
                )
                continue
            if verdict is Verdict.DUPLICATE:
                state = replace(state, last_seen=message.received_at)
                states.put(state)
                touched[kid] = state
                result.outcomes.append(
                    MessageOutcome(message, "duplicate", kid=kid, bundle_hash=bundle.bundle_hash)
                )
                result.last_seen[kid] = message.received_at
                continue
            conn.execute(
                store.INSERT_BUNDLE,
                (
                    bundle.bundle_hash,
                    kid,
                    store.to_u64(bundle.boot),
                    store.to_u64(bundle.seq),
                    store.to_u64(bundle.last_seq),
                    bundle.prev,
                    bundle.n_readings,
                    bundle.time_source,
                    message.received_at,
                    bundle.raw,
                    0,
                    check.time_flag,
                ),
            )
            state, gap = store.with_new_bundle(
                conn, state, StoredBundle.of(bundle), bundle.n_readings, message.received_at
            )
            if gap:
                conn.execute(store.MARK_CHAIN_GAP, (bundle.bundle_hash,))
            states.put(state)
            touched[kid] = state
            reading_rows.extend(store.storable_rows(check.rows, bundle.last_seq, bundle.max_time))
            result.outcomes.append(
                MessageOutcome(
                    message,
                    "accepted",
                    kid=kid,
                    n_readings=bundle.n_readings,
                    chain_gap=gap,
                    time_flag=check.time_flag,
                    bundle_hash=bundle.bundle_hash,
                )
            )
            result.last_seen[kid] = message.received_at
        if reading_rows:
            conn.executemany(store.INSERT_READING, reading_rows)
        if rejection_rows:
            conn.executemany(store.INSERT_REJECTION, self._rejections.admit(conn, rejection_rows))
        if touched:
            conn.executemany(store.UPSERT_STATE, [s.row() for s in touched.values()])
