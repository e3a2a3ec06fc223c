"""Intake-agnostic ingest: group, verify, commit, then ack. This module only orchestrates.

Messages are taken in groups (whatever is queued, up to `pipeline.max_group`): the group is verified
(`Verifier`), then committed in ONE transaction in the database thread (`store.commit`), and only
after that commit are the messages settled with the link they came in on (MQTT: PUBACK) and the signed
acks published. Three stages overlap: verification of group N+2, the commit of group N+1, and the
signing of group N's acks (in an ack thread, after N's commit returned: never before).

The pipeline never holds an intake: an intake feeds it as an `Inbox` and each `Message` carries the
`Link` that settles it (see `pinseal_gateway.link`).

Backpressure: at most `pipeline.queue_size` messages are held between the intakes and the commit;
beyond that `submit` waits, and an intake that reads a socket stops reading it until `has_room`
(for MQTT: TCP then stops the broker, which keeps the messages).

Garbage is rejected with little work (size, decoding and registry checks come before
the signature), so a flood of it costs honest devices little.

Supervision: the verify, store and ack loops run in one task group, so any of them dying takes the
other two (and `run`) down with its exception instead of leaving `submit` waiting for ever; the daemon
then stops with a non-zero status. A message whose own handling raises is not such a death: the
committer stores that message alone as an `internal_error` rejection (see `store.commit`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pinseal_gateway.acks import AckSigner
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.group_report import GroupReport
from pinseal_gateway.link import Link, Message
from pinseal_gateway.registry import RegistryFollower
from pinseal_gateway.stopping import sleep_unless_stopped
from pinseal_gateway.storage import WritePause, is_storage_error
from pinseal_gateway.store.commit import CommittedGroup, GroupCommitter
from pinseal_gateway.store.rejections import RejectionPolicy
from pinseal_gateway.verifier import Verifier
from pinseal_gateway.verify import Checked, Limits, Rejection

log = logging.getLogger(__name__)

VerifiedGroup = tuple[list[Message], list[Checked | Rejection]]


class Pipeline:
    """Receives messages from intakes (as their `Inbox`) and drives them through verify, commit and ack."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.max_group = cfg.pipeline.max_group
        self.queue_size = cfg.pipeline.queue_size
        # Received, not yet taken into a group: a deque and a wake-up event rather than an asyncio.Queue,
        # whose put/get bookkeeping cost more per message than everything else the event loop does with it.
        self._queue: deque[Message] = deque()
        self._arrived = asyncio.Event()
        self._held = 0  # messages submitted and not yet settled (event loop only)
        self._room = asyncio.Event()
        self._room_callbacks: list[Callable[[], None]] = []
        self._verified: asyncio.Queue[VerifiedGroup | None] = asyncio.Queue(2)
        self._committed: asyncio.Queue[CommittedGroup | None] = asyncio.Queue()
        limits = Limits(cfg.verify.max_bundle_bytes, cfg.verify.max_future_s, cfg.verify.max_age_s)
        self.verifier = Verifier(limits, use_process=cfg.pipeline.verify_process)
        self.registry = RegistryFollower(ctx.db)
        self._committer = GroupCommitter(RejectionPolicy(ctx.metrics.registry))
        self._ack_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinseal-acks")
        self._signer = AckSigner(ctx.gateway_key)
        self._store_pause = WritePause(ctx.metrics, "store")
        self._report = GroupReport(ctx.metrics)

    # -- Inbox: what intakes call (event loop thread) ------------------------------------------------

    def has_room(self) -> bool:
        """Whether fewer than `queue_size` messages are held between the intakes and the commit."""
        return self._held < self.queue_size

    def on_room(self, callback: Callable[[], None]) -> None:
        """Call `callback` (in the loop) whenever held messages are released and there is room again."""
        self._room_callbacks.append(callback)

    def submit_nowait(self, message: Message) -> None:
        """From the event loop: enqueue now. An intake that cannot wait (it has read the message
        off its socket) checks `has_room` before reading more; one read may overshoot the bound."""
        self._held += 1
        self._queue.append(message)
        if not self._arrived.is_set():
            self._arrived.set()

    async def submit(self, message: Message) -> None:
        """From the event loop (in-process intakes, tests): enqueue, waiting while full."""
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

    # -- running -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then finish the group in flight and return.

        Raises (an ExceptionGroup) as soon as one of the three loops dies: the others are cancelled,
        and whatever was not committed is not settled, so the broker redelivers it.
        """
        await self.registry.refresh(force=True)
        try:
            async with asyncio.TaskGroup() as loops:
                loops.create_task(self._verify_loop(stop), name="pinseal-verify")
                loops.create_task(self._store_loop(stop), name="pinseal-store")
                loops.create_task(self._ack_loop(), name="pinseal-acks")
        finally:
            self._ack_pool.shutdown(wait=True)
            self.verifier.close()

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
        registry = self.registry
        await self.verifier.start(registry.registry, registry.version)
        while not stop.is_set():
            group = await self._next_group(stop)
            if group is None:
                break
            self.ctx.metrics.queue_depth.set(len(self._queue))
            await registry.refresh()
            checked = await self.verifier.check(group, registry.registry, registry.version)
            unknown = any(isinstance(c, Rejection) and c.reason == "unknown_device" for c in checked)
            # A device added a moment ago must not be turned away until the next periodic refresh.
            if unknown and await registry.refresh(unknown=True):
                checked = await self.verifier.check(group, registry.registry, registry.version)
            await self._verified.put((group, checked))
        await self._verified.put(None)  # the store loop ends after the group in flight

    async def _store_loop(self, stop: asyncio.Event) -> None:
        while (item := await self._verified.get()) is not None:
            group, checked = item
            result = await self._commit_with_retry(group, checked, stop)
            if result is None:  # shutting down without a commit: the broker redelivers these
                if group:
                    self._release(len(group))
                continue
            await self._committed.put(result)
        await self._committed.put(None)  # the ack loop ends after the acks of the last commit

    async def _commit_with_retry(
        self, group: list[Message], checked: list[Checked | Rejection], stop: asyncio.Event
    ) -> CommittedGroup | None:
        """The group committed, or None when the gateway stops before the database can write it.

        Only database errors are retried (see `is_storage_error`): on a full disk the store pauses
        (`WritePause`: one log line, the `storage_full` gauge) holding this group, nothing is acked,
        the queue fills and the intakes stop reading, so the broker keeps everything newer; the
        first commit that goes through resumes it. Anything else escaping the commit is a bug that
        stops the gateway rather than stalling it.
        """
        while True:
            try:
                result = await self.ctx.db.run(self._committer.commit, group, checked)
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

    async def _ack_loop(self) -> None:
        """Committed groups, in commit order: sign their acks (ack thread), then publish and settle.

        Signing after the commit but outside the database thread lets the next group's transaction
        run while this one's acks are signed (libsodium releases the GIL: the other core signs).
        """
        loop = asyncio.get_running_loop()
        while (result := await self._committed.get()) is not None:
            await loop.run_in_executor(self._ack_pool, self._sign_acks, result)
            self._finish(result)

    def _sign_acks(self, result: CommittedGroup) -> None:
        """In the ack thread, after the commit: one signed ack per accepted or duplicate bundle, one
        signed rejection per bundle refused for good (docs/protocol.md §5.1), both on the ack topic."""
        sign = self._signer.sign
        commit_time = result.commit_time
        for outcome in result.outcomes:
            if outcome.status != "rejected":
                assert outcome.kid is not None and outcome.bundle_hash is not None
                assert outcome.ack_seq is not None
                outcome.ack = sign(outcome.kid, outcome.ack_seq, outcome.bundle_hash, commit_time)
            elif outcome.next_seq is not None:
                assert outcome.kid is not None and outcome.bundle_hash is not None
                assert outcome.reason is not None
                outcome.ack = self._signer.sign_rejection(
                    outcome.kid, outcome.bundle_hash, commit_time, outcome.reason, outcome.next_seq
                )

    def _finish(self, result: CommittedGroup) -> None:
        """After the commit: each link publishes its acks and settles its messages; then metrics, logs."""
        tokens: dict[Link, list[object]] = {}
        acks: dict[Link, list[tuple[bytes, bytes]]] = {}
        n_acks = 0
        for outcome in result.outcomes:
            message = outcome.message
            link = message.link
            link_tokens = tokens.get(link)
            if link_tokens is None:
                link_tokens = tokens[link] = []
                acks[link] = []
            link_tokens.append(message.token)
            if outcome.ack is not None:
                assert outcome.kid is not None
                acks[link].append((outcome.kid, outcome.ack))
                n_acks += 1
        for link, link_tokens in tokens.items():
            if acks[link]:
                link.publish_acks(acks[link])
            link.settle(link_tokens)
        if result.outcomes:
            self._release(len(result.outcomes))
        self._report.record(result, n_acks)
