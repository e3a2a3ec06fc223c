"""Transport-agnostic ingest: group, verify, commit, then ack.

Messages are taken in groups (whatever is queued, up to `pipeline.max_group`): the group is verified
in a worker thread, then stored in ONE transaction in the database thread, and only after that commit
are the transport's messages settled (MQTT PUBACK) and the signed acks published. One fsync per group
instead of per bundle is what makes thousands of bundles per second possible. Three stages overlap:
verification of group N+2 (in a worker process, `verify_worker`, so signature checks never wait for
this process's GIL; in the verify thread if the worker is down), the commit of group N+1, and the
signing of group N's acks (in an ack thread, after N's commit returned: never before).

Backpressure: at most `pipeline.queue_size` messages are held between the transport and the commit;
beyond that `submit` waits, and a transport that reads a socket stops reading it until `has_room`
(for MQTT: TCP then stops the broker, which keeps the messages). Everything here runs on the event
loop thread except verification (the verify thread hands whole groups to the worker process), the
database thread (whole groups) and ack signing (one worker, whole groups).

Garbage is rejected with little work (size, decoding and registry checks come before
the signature), so a flood of it costs honest devices little.

Supervision: the verify, store and ack loops run in one task group, so any of them dying takes the
other two (and `run`) down with its exception instead of leaving `submit` waiting for ever; the daemon
then stops with a non-zero status. A message whose own handling raises is not such a death: the group
is stored again one message at a time and that message alone becomes an `internal_error` rejection.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

from pinseal_gateway import faults, verify_worker
from pinseal_gateway.acks import AckSigner
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.stopping import sleep_unless_stopped
from pinseal_gateway.storage import WritePause, is_storage_error
from pinseal_gateway.store import bundles as store
from pinseal_gateway.store import devices as registry_store
from pinseal_gateway.store.rejections import RejectionPolicy
from pinseal_gateway.verify import (
    EVIDENCE_LIMIT,
    Checked,
    Limits,
    Registry,
    RegistryEntry,
    Rejected,
    check_message,
    classify_history,
    topic_kid,
)
from pinseal_protocol.errors import Conflict, Replayed
from pinseal_protocol.fastbundle import FastBundle
from pinseal_protocol.history import StoredBundle, Verdict

log = logging.getLogger(__name__)

REGISTRY_REFRESH_S = 1.0  # a revocation or a new device takes effect within this long
UNKNOWN_REFRESH_S = 0.2  # an unknown kid triggers a registry reload at most this often
LOG_EVERY_S = 10.0  # per (kid, reason): one rejection log line, then a summary at most this often


@dataclass(slots=True)
class Message:
    """One received message; `token` is the transport's handle to settle it (e.g. MQTT mid)."""

    topic: str
    payload: bytes
    received_at: float
    token: object = None


def _max_time(bundle: object) -> int:
    if isinstance(bundle, FastBundle):
        return bundle.max_time
    return max(reading.time for reading in bundle.readings)  # type: ignore[attr-defined]


class Transport(Protocol):
    def settle(self, tokens: Sequence[object]) -> None:
        """The messages are committed or their rejection recorded: the transport may forget them."""

    def publish_acks(self, acks: Sequence[tuple[bytes, bytes]]) -> None:
        """Publish signed acks, (device kid, ack bytes), after their bundles committed."""


@dataclass(slots=True)
class Outcome:
    """What happened to one message of a group."""

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
    ack: bytes | None = None


@dataclass(slots=True)
class GroupResult:
    outcomes: list[Outcome] = field(default_factory=list)
    last_seen: dict[bytes, float] = field(default_factory=dict)
    commit_time: int = 0


def load_registry(conn: sqlite3.Connection) -> tuple[Registry, tuple[object, ...]]:
    """The registry and a fingerprint of the devices table that changes with any add or revoke."""
    from pinseal_protocol import keys

    entries = {
        d.kid: RegistryEntry(keys.load_public_key(d.public_key), d.revoked)
        for d in registry_store.list_devices(conn)
    }
    return Registry(entries), _registry_fingerprint(conn)


def _registry_fingerprint(conn: sqlite3.Connection) -> tuple[object, ...]:
    return tuple(conn.execute("SELECT count(*), max(added_at), total(revoked_at) FROM devices").fetchone())


class _RejectionLog:
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


class Pipeline:
    """Receives messages from a transport and drives them through verify, commit and ack."""

    def __init__(self, ctx: GatewayContext, transport: Transport | None) -> None:
        self.ctx = ctx
        self.transport = transport
        cfg = ctx.config
        self.limits = Limits(cfg.verify.max_bundle_bytes, cfg.verify.max_future_s, cfg.verify.max_age_s)
        self.max_group = cfg.pipeline.max_group
        self.queue_size = cfg.pipeline.queue_size
        # Received, not yet taken into a group: a deque and a wake-up event rather than an asyncio.Queue,
        # whose put/get bookkeeping cost more per message than everything else the event loop does with it.
        self._queue: deque[Message] = deque()
        self._arrived = asyncio.Event()
        self._held = 0  # messages submitted and not yet settled (event loop only)
        self._room = asyncio.Event()
        self._room_callbacks: list[Callable[[], None]] = []
        self._verified: asyncio.Queue[tuple[list[Message], list[Checked | Rejected]] | None] = asyncio.Queue(
            2
        )
        self._verify_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinseal-verify")
        self._ack_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinseal-acks")
        self.use_worker = cfg.pipeline.verify_process  # False: verify in the verify thread
        self._worker: ProcessPoolExecutor | None = None
        self._worker_version = -1  # the registry version the worker holds
        self._registry_version = 0
        self._committed: asyncio.Queue[GroupResult | None] = asyncio.Queue()
        self._signer = AckSigner(ctx.gateway_key)
        self._states = store.DeviceStates()
        self._registry = Registry()
        self._fingerprint: tuple[object, ...] | None = None
        self._registry_checked = 0.0
        self._rejection_log = _RejectionLog()
        self._store_pause = WritePause(ctx.metrics, "store")
        self._rejections = RejectionPolicy(ctx.metrics.registry)  # budget per publisher, retention
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- input -------------------------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def has_room(self) -> bool:
        """Whether fewer than `queue_size` messages are held between the transport and the commit."""
        return self._held < self.queue_size

    def on_room(self, callback: Callable[[], None]) -> None:
        """Call `callback` (in the loop) whenever held messages are released and there is room again."""
        self._room_callbacks.append(callback)

    def submit_nowait(self, message: Message) -> None:
        """From the event loop: enqueue now. A transport that cannot wait (it has read the message
        off its socket) checks `has_room` before reading more; one read may overshoot the bound."""
        self._held += 1
        self._queue.append(message)
        if not self._arrived.is_set():
            self._arrived.set()

    async def submit(self, message: Message) -> None:
        """From the event loop (in-process transports, tests): enqueue, waiting while full."""
        while not self.has_room():
            self._room.clear()
            await self._room.wait()
        self.submit_nowait(message)

    def _release(self, n: int) -> None:
        self._held -= n
        if self.has_room():
            self._room.set()
            for callback in self._room_callbacks:
                callback()

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- running -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then finish the group in flight and return.

        Raises (an ExceptionGroup) as soon as one of the three loops dies: the others are cancelled,
        and whatever was not committed is not settled, so the broker redelivers it.
        """
        self._loop = asyncio.get_running_loop()
        await self._refresh_registry(force=True)
        try:
            async with asyncio.TaskGroup() as loops:
                loops.create_task(self._verify_loop(stop), name="pinseal-verify")
                loops.create_task(self._store_loop(stop), name="pinseal-store")
                loops.create_task(self._ack_loop(), name="pinseal-acks")
        finally:
            self._verify_pool.shutdown(wait=True)
            self._ack_pool.shutdown(wait=True)
            self._stop_worker(wait=True)

    async def _next_group(self, stop: asyncio.Event) -> list[Message] | None:
        """Up to `max_group` received messages, oldest first, once there is one; None when stopping."""
        queue = self._queue
        if not queue:
            arrived = asyncio.ensure_future(self._arrived.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({arrived, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                arrived.cancel()
            if not queue:
                return None  # stopping
        n = min(len(queue), self.max_group)
        group = [queue.popleft() for _ in range(n)]
        if not queue:
            self._arrived.clear()
        return group

    async def _verify_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._verify_pool, self._start_worker)
        await self._verify_groups(stop, loop)
        await self._verified.put(None)  # the store loop ends after the group in flight

    async def _verify_groups(self, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        while not stop.is_set():
            group = await self._next_group(stop)
            if group is None:
                break
            self.ctx.metrics.queue_depth.set(len(self._queue))
            await self._refresh_registry()
            checked = await loop.run_in_executor(
                self._verify_pool, self._check_in_worker, group, self._registry, self._registry_version
            )
            unknown = any(isinstance(c, Rejected) and c.reason == "unknown_device" for c in checked)
            # A device added a moment ago must not be turned away until the next periodic refresh.
            if unknown and await self._refresh_registry(unknown=True):
                checked = await loop.run_in_executor(
                    self._verify_pool, self._check_in_worker, group, self._registry, self._registry_version
                )
            await self._verified.put((group, checked))

    def _start_worker(self) -> None:
        """In the verify thread: start the worker process now rather than with the first group."""
        if self.use_worker:
            self._check_in_worker([], self._registry, self._registry_version)

    def _check_in_worker(
        self, group: list[Message], registry: Registry, version: int
    ) -> list[Checked | Rejected]:
        """In the verify thread: the group checked by the worker process (see `verify_worker`), or
        here when there is none or it failed (a fresh one is started for the next group)."""
        if not self.use_worker:
            return self._check_group(group, registry)
        items = [(m.topic, m.payload) for m in group]
        now = time.time()
        try:
            if self._worker is None:
                self._worker = verify_worker.new_pool()
                self._worker_version = -1
            send = None if self._worker_version == version else registry.to_raw()
            try:
                packed = self._worker.submit(
                    verify_worker.check_group, version, send, items, self.limits, now
                ).result()
            except verify_worker.StaleRegistry:
                packed = self._worker.submit(
                    verify_worker.check_group, version, registry.to_raw(), items, self.limits, now
                ).result()
            self._worker_version = version
        except Exception as exc:  # a dead or unstartable worker: verify here, try a new one next time
            log.warning("verify worker failed (%r); checking %d messages in-process", exc, len(group))
            self._stop_worker()
            return self._check_group(group, registry)
        return [verify_worker.unpack(p, m.payload) for p, m in zip(packed, group, strict=True)]

    def _stop_worker(self, wait: bool = False) -> None:
        worker, self._worker = self._worker, None
        self._worker_version = -1
        if worker is not None:
            worker.shutdown(wait=wait, cancel_futures=True)

    def _check_group(self, group: list[Message], registry: Registry) -> list[Checked | Rejected]:
        now = time.time()
        limits = self.limits
        return [check_message(m.topic, m.payload, registry, limits, now) for m in group]

    async def _refresh_registry(self, *, force: bool = False, unknown: bool = False) -> bool:
        """Reload the registry if the devices table changed; True when it was reloaded."""
        now = time.monotonic()
        interval = UNKNOWN_REFRESH_S if unknown else REGISTRY_REFRESH_S
        if not force and now - self._registry_checked < interval:
            return False
        self._registry_checked = now
        fingerprint = await self.ctx.db.run(_registry_fingerprint)
        if not force and fingerprint == self._fingerprint:
            return False
        self._registry, self._fingerprint = await self.ctx.db.run(load_registry)
        self._registry_version += 1
        log.info("device registry loaded: %d devices", len(self._registry))
        return True

    async def _store_loop(self, stop: asyncio.Event) -> None:
        while (item := await self._verified.get()) is not None:
            group, checked = item
            result = await self._store_with_retry(group, checked, stop)
            if result is None:  # shutting down without a commit: the broker redelivers these
                if group:
                    self._release(len(group))
                continue
            await self._committed.put(result)
        await self._committed.put(None)  # the ack loop ends after the acks of the last commit

    async def _ack_loop(self) -> None:
        """Committed groups, in commit order: sign their acks (ack thread), then publish and settle.

        Signing after the commit but outside the database thread lets the next group's transaction
        run while this one's acks are signed (libsodium releases the GIL: the other core signs).
        """
        loop = asyncio.get_running_loop()
        while (result := await self._committed.get()) is not None:
            await loop.run_in_executor(self._ack_pool, self._sign_acks, result)
            self._finish(result)

    async def _store_with_retry(
        self, group: list[Message], checked: list[Checked | Rejected], stop: asyncio.Event
    ) -> GroupResult | None:
        """The group committed, or None when the gateway stops before the database can write it.

        Only database errors are retried (see `is_storage_error`): on a full disk the store pauses
        (`WritePause`: one log line, the `storage_full` gauge) holding this group, nothing is acked,
        the queue fills and the transport stops reading, so the broker keeps everything newer; the
        first commit that goes through resumes it. Anything else escaping `_store_group` is a bug that
        stops the gateway rather than stalling it.
        """
        while True:
            try:
                result = await self.ctx.db.run(self._store_group, group, checked)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                if stop.is_set():
                    log.error("store failed during shutdown, %d messages left unacked: %s", len(group), exc)
                    return None
                await sleep_unless_stopped(stop, self._store_pause.failed(exc))
                continue
            self._store_pause.succeeded()
            return result

    def _store_group(
        self, conn: sqlite3.Connection, group: list[Message], checked: list[Checked | Rejected]
    ) -> GroupResult:
        """In the database thread: classify against history, store everything in one transaction.

        If that raises anything but a database error, one of the messages is at fault: the group is
        stored again with each message in its own savepoint (`_write_isolated`), so that message
        becomes an `internal_error` rejection and every other one still commits and is acked.
        """
        result = GroupResult()
        try:
            with conn:
                self._write_group(conn, group, checked, result)
                faults.hold("store_commit")  # test hook (hil_tests): off unless armed
        except Exception as exc:
            self._states.invalidate()  # the cache may hold state of the rolled-back transaction
            if is_storage_error(exc):
                raise
            log.warning("storing a group of %d raised %r; storing it one message at a time", len(group), exc)
            result = GroupResult()
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
        return result

    def _sign_acks(self, result: GroupResult) -> None:
        """In the ack thread, after the commit: one signed ack per accepted or duplicate bundle."""
        sign = self._signer.sign
        commit_time = result.commit_time
        for outcome in result.outcomes:
            if outcome.status != "rejected":
                assert outcome.kid is not None and outcome.bundle_hash is not None
                assert outcome.ack_seq is not None
                outcome.ack = sign(outcome.kid, outcome.ack_seq, outcome.bundle_hash, commit_time)

    def _write_isolated(
        self,
        conn: sqlite3.Connection,
        group: list[Message],
        checked: list[Checked | Rejected],
        result: GroupResult,
    ) -> None:
        """`_write_group` one message at a time, each in a savepoint; a message whose handling raises
        (other than a database error, which fails the group) is rolled back to its savepoint and
        recorded as an `internal_error` rejection instead."""
        if not conn.in_transaction:
            conn.execute("BEGIN")  # else the first RELEASE would commit on its own
        for message, check in zip(group, checked, strict=True):
            one = GroupResult()
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
                one = GroupResult()
                self._write_group(conn, [message], [Rejected("internal_error", detail, kid, evidence)], one)
            finally:
                conn.execute("RELEASE pinseal_message")
            result.outcomes.extend(one.outcomes)
            result.last_seen.update(one.last_seen)

    def _write_group(
        self,
        conn: sqlite3.Connection,
        group: list[Message],
        checked: list[Checked | Rejected],
        result: GroupResult,
    ) -> None:
        reading_rows: list[tuple[object, ...]] = []
        rejection_rows: list[tuple[object, ...]] = []
        touched: dict[bytes, store.DeviceState] = {}
        states = self._states
        for message, check in zip(group, checked, strict=True):
            if isinstance(check, Rejected):
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
                result.outcomes.append(Outcome(message, "rejected", check.reason, check.detail, check.kid))
                continue
            bundle = check.bundle
            kid = bundle.kid
            state = states.get(conn, kid)
            try:
                verdict = classify_history(conn, state, bundle)
            except (Conflict, Replayed) as exc:
                evidence = bundle.raw if isinstance(exc, Conflict) else bundle.raw[:256]
                rejection_rows.append(
                    (kid, message.topic[:200], exc.reason, exc.detail, message.received_at, evidence)
                )
                result.outcomes.append(Outcome(message, "rejected", exc.reason, exc.detail, kid))
                continue
            if verdict is Verdict.DUPLICATE:
                state = replace(state, last_seen=message.received_at)
                states.put(state)
                touched[kid] = state
                result.outcomes.append(Outcome(message, "duplicate", kid=kid, bundle_hash=bundle.bundle_hash))
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
                conn.execute("UPDATE bundles SET chain_gap = 1 WHERE hash = ?", (bundle.bundle_hash,))
            states.put(state)
            touched[kid] = state
            reading_rows.extend(store.storable_rows(check.rows, bundle.last_seq, _max_time(bundle)))
            result.outcomes.append(
                Outcome(
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

    def _finish(self, result: GroupResult) -> None:
        """After the commit: acks out, messages settled, metrics and logs."""
        metrics = self.ctx.metrics
        acks: list[tuple[bytes, bytes]] = []
        now = time.time()
        accepted = readings = 0
        for outcome in result.outcomes:
            if outcome.status == "rejected":
                reason = outcome.reason or "rejected"
                metrics.rejected.labels(reason).inc()
                if reason == "conflict":
                    metrics.conflicts.inc()
                self._rejection_log.log(outcome.kid, reason, outcome.detail, now)
                continue
            assert outcome.kid is not None and outcome.ack is not None
            acks.append((outcome.kid, outcome.ack))
            if outcome.status == "duplicate":
                metrics.duplicates.inc()
                continue
            accepted += 1
            readings += outcome.n_readings
            if outcome.chain_gap:
                metrics.chain_gaps.inc()
                log.info("chain gap before a bundle of %s (stored, flagged)", outcome.kid.hex())
            if outcome.time_flag:
                metrics.time_flags.labels(outcome.time_flag).inc()
        transport = self.transport
        assert transport is not None, "set the pipeline's transport before running it"
        if acks:
            transport.publish_acks(acks)
            metrics.acks_sent.inc(len(acks))
        transport.settle([o.message.token for o in result.outcomes])
        if result.outcomes:
            self._release(len(result.outcomes))
        metrics.bundles_accepted.inc(accepted)
        metrics.readings_accepted.inc(readings)
        metrics.group_size.observe(len(result.outcomes))
        for kid, seen in result.last_seen.items():
            metrics.device_last_seen.labels(kid.hex()).set(seen)
