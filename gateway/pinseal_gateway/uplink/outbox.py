"""Drain the durable uplink outbox: strictly in batch order, one batch at a time, backoff with jitter.

All state lives in the `uplink_outbox` table (attempts, next_attempt_at, last_error, sent_at), so a
restart resumes at the first batch the network has not confirmed, waiting out its backoff. The body is
read from the table and sent byte for byte every time: a batch is never re-encoded, so the network
can never see one batch as two different ones. A batch leaves the outbox (sent_at set) only after the
network confirmed it holds it.

The one exception is a batch the network refused as a whole (413, 422: it stored nothing of it): the
same bytes can never pass, so it and its unsent successors are superseded and resealed from the same
number (`reseal.py`) rather than retried. The network never held the old bytes, so it still sees each
batch number once; the old headers stay in `superseded_batches`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pinseal_gateway.stopping import sleep_unless_stopped
from pinseal_gateway.storage import WritePause, is_storage_error
from pinseal_gateway.store import batches
from pinseal_gateway.uplink import RefusedBundle, SendOutcome, SendResult, UplinkBackend
from pinseal_gateway.uplink.reseal import TakeOut, reseal_from

if TYPE_CHECKING:
    from pinseal_gateway.context import GatewayContext

log = logging.getLogger(__name__)

POLL_S = 1.0
"""How often an empty (or halted) outbox looks for new batches."""
SEND_TIMEOUT_S = 120.0
"""Safety net around one backend call; backends have their own, shorter timeouts."""


def backoff_delay(
    failures: int, initial_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the `failures`-th consecutive failure of one batch.

    Exponential with full jitter: uniform in [initial_s, min(max_s, initial_s * 2**failures)]. The
    ceiling doubles per failure so an outage costs few requests; the jitter spreads a fleet of
    gateways that all lost the network at the same moment, so they do not return in lockstep.
    """
    if failures < 1:
        return 0.0
    ceiling = min(max_s, initial_s * 2.0 ** min(failures, 64))
    ceiling = max(ceiling, initial_s)
    return initial_s + rand() * (ceiling - initial_s)


def make_backend(ctx: GatewayContext) -> UplinkBackend | None:
    """The backend `config.uplink.kind` names; None for "none" (no uplink task at all)."""
    cfg = ctx.config.uplink
    if cfg.kind == "none":
        return None
    if cfg.kind == "http":
        from pinseal_gateway.uplink.http import HttpUplink

        return HttpUplink(cfg.url)
    if cfg.kind == "mqtt":
        from pinseal_gateway.uplink.mqtt import MqttUplink

        kid_hex = ctx.gateway_kid.hex()
        return MqttUplink(
            cfg.mqtt_host,
            cfg.mqtt_port,
            cfg.mqtt_topic.format(gateway_kid=kid_hex),
            client_id=f"pinseal-uplink-{kid_hex}",
        )
    raise ValueError(f"unknown uplink kind {cfg.kind!r}")


class OutboxDrainer:
    """One step of the drain loop at a time, so tests can drive it without sleeping."""

    def __init__(
        self,
        ctx: GatewayContext,
        backend: UplinkBackend,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.ctx = ctx
        self.backend = backend
        self.clock = clock
        self.rand = rand
        self.send_timeout_s = send_timeout_s
        self.halted: str | None = None
        """Set to the reason once the uplink hit a permanent error; nothing more is sent."""

    async def step(self) -> float:
        """Try the next due batch; returns how long to wait before the next step (0 = at once)."""
        if self.halted is not None:
            return POLL_S
        db = self.ctx.db
        entry = await db.run(batches.next_unsent)
        self.ctx.metrics.outbox_depth.set(await db.run(batches.outbox_depth))
        if entry is None:
            return POLL_S
        wait = entry.next_attempt_at - self.clock()
        if wait > 0:  # capped: a clock stepped backwards must not park the uplink for long
            return min(wait, self.ctx.config.uplink.backoff_max_s)
        result = await self._send(entry)
        return await self._settle(entry, result)

    async def _send(self, entry: batches.OutboxEntry) -> SendResult:
        try:
            async with asyncio.timeout(self.send_timeout_s):
                return await self.backend.send(entry.batch_hash, entry.body)
        except TimeoutError:
            return SendResult.retry(f"no answer within {self.send_timeout_s:g} s")
        except Exception as exc:  # a backend bug must not kill the uplink; the batch stays queued
            log.exception("uplink backend failed on batch %s", entry.batch_no)
            return SendResult.retry(f"{type(exc).__name__}: {exc}")

    async def _settle(self, entry: batches.OutboxEntry, result: SendResult) -> float:
        db = self.ctx.db
        metrics = self.ctx.metrics
        if result.outcome is SendOutcome.SENT:
            await db.run(batches.mark_sent, entry.batch_no, self.clock())
            metrics.uplink_sent.inc()
            metrics.outbox_depth.set(await db.run(batches.outbox_depth))
            log.info(
                "uplink: batch %s (%s) confirmed %s", entry.batch_no, entry.batch_hash.hex(), result.detail
            )
            return 0.0
        metrics.uplink_failures.inc()
        if result.outcome is SendOutcome.TOO_LARGE:
            return await self._resplit(entry, result)
        if result.outcome is SendOutcome.REFUSED:
            return await self._take_out_refused(entry, result)
        if result.outcome is SendOutcome.CONFLICT:
            return await self._halt(
                entry, f"conflict: the network holds a different batch {entry.batch_no}: {result.detail}"
            )
        if result.outcome is SendOutcome.RESEND_FROM and result.expected is not None:
            if 0 <= result.expected < entry.batch_no:
                reopened = await db.run(batches.reopen_from, result.expected)
                if reopened:
                    log.warning(
                        "uplink: the network's chain ends before batch %s; resending %s batches from %s",
                        entry.batch_no,
                        reopened,
                        result.expected,
                    )
                    await db.run(
                        batches.record_error, entry.batch_no, f"chain_gap: expected {result.expected}"
                    )
                    return 0.0
                return await self._halt(
                    entry, f"chain_gap: the network expects batch {result.expected}, no longer in the outbox"
                )
            log.error(
                "uplink: batch %s: the network expects batch %s, which does not precede it; retrying",
                entry.batch_no,
                result.expected,
            )
        return await self._backoff(entry, result)

    async def _resplit(self, entry: batches.OutboxEntry, result: SendResult) -> float:
        """413: reseal the chain from this batch in batches under the network's limit.

        The cap is the limit the network named, else half this body, and never above `batch.max_bytes`:
        it shrinks strictly on every 413, so the splitting ends. A batch of one bundle over the limit
        can never be delivered there: that bundle is dead-lettered (`too_large`).
        """
        leaves = await self.ctx.db.run(batches.batch_bundle_hashes, entry.batch_no)
        cap = (
            result.limit
            if result.limit is not None and result.limit < len(entry.body)
            else len(entry.body) // 2
        )
        cap = min(cap, self.ctx.config.batch.max_bytes)
        take_out = []
        if len(leaves) <= 1:
            take_out = [TakeOut(h, result.reason or "too_large", result.detail, held=False) for h in leaves]
        return await self._reseal(entry, result, take_out, max_bytes=cap)

    async def _take_out_refused(self, entry: batches.OutboxEntry, result: SendResult) -> float:
        """422: take the refused bundles out and reseal the chain from this batch without them.

        A bundle the network already holds counts as delivered; any other refusal is dead-lettered.
        A 422 naming no bundle of this batch is bisected: the first new batch holds half of this one,
        so each such refusal halves it until the refused bundle is alone, then dead-lettered with the
        network's reason. Either way the same bytes are never sent again.
        """
        leaves = await self.ctx.db.run(batches.batch_bundle_hashes, entry.batch_no)
        take_out = match_refused(result.refused, leaves)
        first_max = None
        if not take_out:
            if len(leaves) <= 1:
                take_out = [TakeOut(h, result.reason or "refused", result.detail, held=False) for h in leaves]
            else:
                first_max = (len(leaves) + 1) // 2
                log.warning(
                    "uplink: batch %s refused without naming a bundle (%s); bisecting it",
                    entry.batch_no,
                    result.detail,
                )
        return await self._reseal(entry, result, take_out, first_max_bundles=first_max)

    async def _reseal(
        self,
        entry: batches.OutboxEntry,
        result: SendResult,
        take_out: list[TakeOut],
        *,
        max_bytes: int | None = None,
        first_max_bundles: int | None = None,
    ) -> float:
        ctx, cfg = self.ctx, self.ctx.config.batch
        why = f"{result.outcome.value}: {result.detail}"
        try:
            done = await ctx.db.run(
                functools.partial(
                    reseal_from,
                    take_out=take_out,
                    max_bundles=cfg.max_bundles,
                    max_bytes=cfg.max_bytes if max_bytes is None else max_bytes,
                    first_max_bundles=first_max_bundles,
                    why=why,
                    now=self.clock(),
                ),
                ctx.gateway_key,
                ctx.gateway_kid,
                cfg.mode,
                entry.batch_no,
            )
        except Exception:  # the store is untouched (one transaction): back off and ask the network again
            log.exception("uplink: resealing from batch %s failed", entry.batch_no)
            return await self._backoff(entry, result)
        ctx.metrics.uplink_resealed_batches.inc(done.superseded)
        for t in done.taken_out:
            if t.held:
                ctx.metrics.uplink_held_elsewhere.inc()
                log.info("uplink: bundle %s is already held by the network: delivered", t.bundle_hash.hex())
            else:
                ctx.metrics.uplink_dead_letters.labels(reason=t.reason).inc()
                log.error(
                    "uplink: bundle %s refused by the network (%s: %s): dead-lettered, not sent again",
                    t.bundle_hash.hex(),
                    t.reason,
                    t.detail,
                )
        ctx.metrics.outbox_depth.set(await ctx.db.run(batches.outbox_depth))
        log.warning(
            "uplink: batch %s refused (%s); resealed %s unsent batches as %s from batch %s",
            entry.batch_no,
            why,
            done.superseded,
            len(done.sealed),
            entry.batch_no,
        )
        return 0.0

    async def _backoff(self, entry: batches.OutboxEntry, result: SendResult) -> float:
        cfg = self.ctx.config.uplink
        failures = entry.attempts + 1
        delay = backoff_delay(failures, cfg.backoff_initial_s, cfg.backoff_max_s, self.rand)
        error = f"{result.outcome.value}: {result.detail}"
        await self.ctx.db.run(batches.mark_failed, entry.batch_no, error, self.clock() + delay)
        level = logging.ERROR if result.outcome is SendOutcome.REJECTED else logging.WARNING
        log.log(
            level,
            "uplink: batch %s attempt %s failed (%s); next attempt in %.1f s",
            entry.batch_no,
            failures,
            error,
            delay,
        )
        return delay

    async def _halt(self, entry: batches.OutboxEntry, reason: str) -> float:
        """Stop for good: sending anything else now could fork the gateway's chain upstream."""
        self.halted = reason
        await self.ctx.db.run(batches.record_error, entry.batch_no, reason)
        log.critical(
            "UPLINK STOPPED at batch %s (%s): %s. No further batch will be sent; an operator must "
            "resolve this with the network before restarting.",
            entry.batch_no,
            entry.batch_hash.hex(),
            reason,
        )
        return POLL_S


async def run_uplink(
    ctx: GatewayContext,
    stop: asyncio.Event,
    *,
    backend: UplinkBackend | None = None,
    clock: Callable[[], float] = time.time,
    rand: Callable[[], float] = random.random,
) -> None:
    """The uplink task: drain the outbox until `stop` is set (returns at once for kind "none")."""
    if backend is None:
        backend = make_backend(ctx)
        if backend is None:
            log.info('uplink disabled (kind = "none"); batches stay in the outbox')
            return
    drainer = OutboxDrainer(ctx, backend, clock=clock, rand=rand)
    pause = WritePause(ctx.metrics, "uplink")
    try:
        while not stop.is_set():
            try:
                wait = await drainer.step()
            except Exception as exc:
                # The outbox's bookkeeping (mark_sent, mark_failed) could not be written, e.g. on a full
                # disk: the batch stays unsent in the outbox and goes again once the database writes
                # (the network answers a batch it already holds as sent). Anything else is a bug.
                if not is_storage_error(exc):
                    raise
                wait = pause.failed(exc)
            else:
                pause.succeeded()
            await sleep_unless_stopped(stop, wait)
    finally:
        await backend.close()


def match_refused(refused: Sequence[RefusedBundle], leaves: Sequence[bytes]) -> list[TakeOut]:
    """The refused bundles that are leaves of the batch sent, by hash, else by index (hash absent).

    A hash that is not a leaf is ignored, index and all: the answer is not about this batch's bytes.
    """
    in_batch = set(leaves)
    found: dict[bytes, TakeOut] = {}
    for r in refused:
        if r.bundle_hash is not None:
            leaf = r.bundle_hash if r.bundle_hash in in_batch else None
        else:
            leaf = (
                leaves[r.bundle_index]
                if r.bundle_index is not None and r.bundle_index < len(leaves)
                else None
            )
        if leaf is not None and leaf not in found:
            found[leaf] = TakeOut(leaf, r.reason, r.detail, r.held)
    return list(found.values())
