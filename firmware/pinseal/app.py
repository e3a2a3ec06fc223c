# The application: sample -> outbox -> seal -> send -> ack, as asyncio tasks that keep each other going.
#
# Every reading is in the flash outbox before anything else happens to it; a bundle is sealed once and
# resent byte for byte until a verified gateway ack covers it (a broker PUBACK is not an ack); the watchdog
# is fed only while readings are still being taken, so a stuck loop ends in a reset, whose cause the next
# bundle reports.
import asyncio
import hashlib
import time

from micropython import const

from pinseal import reading, wifi
from pinseal.timekeeper import TimeKeeper
from pinseal.wire import WireError, ack, bundle, senml

_ACK_QUEUE = const(4)


class App:
    """The running application.

    Built by pinseal.startup.create_app: setup code that leaves RAM once the app exists."""

    def __init__(self, cfg, key, kids, counters, outbox, sampler, transport):
        self.cfg = cfg
        self.key = key
        self.kid, self.gateway_kid = kids
        self.counters = counters
        self.outbox = outbox
        self.sampler = sampler
        self.transport = transport
        transport.on_ack = self._on_ack
        self.clock = TimeKeeper(cfg["time"]["ntp_host"], cfg["time"]["resync_s"])
        self.cause = 255  # set by startup from machine.reset_cause()
        self.readings_per_bundle = cfg["bundling"]["readings"]
        self.interval_ms = cfg["sampling"]["interval_s"] * 1000
        self.max_wait_ms = cfg["bundling"]["max_wait_s"] * 1000
        self.gateway_pk = cfg["gateway"]["public_key"]
        self._pending_since = None
        self._acks = []
        self._seal = asyncio.Event()
        self._send = asyncio.Event()
        self._acked = asyncio.Event()
        self._ack_arrived = asyncio.Event()
        # One signature or verification at a time: each holds a few KB of big integers and buffers while it
        # runs, and on a 100 KB board the two together were the heap's high-water mark. An ack waits for
        # the seal in progress (about a second on a board); nothing waits for long.
        self._crypto = asyncio.Lock()
        self.progress_ms = time.ticks_ms()
        self.stats = {"readings": 0, "bundles": 0, "acks": 0, "bad_acks": 0, "sent": 0, "rejected": 0}

    # -- sampling ------------------------------------------------------------------------------------------
    async def sample_once(self):
        """The seq of the reading taken and stored, or None when the board has nothing to read."""
        records = await self.sampler.reading()
        if not records:
            # No sensor and no battery (a profile without them, or no /board.json at all): a reading needs
            # a record (SenML), and one stored without would stop every seal after it, at each boot again.
            # Nothing is recorded; the loop is still alive for the watchdog.
            self.progress_ms = time.ticks_ms()
            return None
        time_s, source = self.clock.now()
        seq = self.counters.next_seq()
        self.outbox.add_reading(seq, reading.encode(self.counters.boot, time_s, source, records))
        self.stats["readings"] += 1
        self.progress_ms = time.ticks_ms()
        if self._pending_since is None:
            self._pending_since = self.progress_ms
        return seq

    async def sample_loop(self):
        while True:
            due = time.ticks_add(time.ticks_ms(), self.interval_ms)
            await self.sample_once()
            self._seal.set()
            await asyncio.sleep_ms(max(0, time.ticks_diff(due, time.ticks_ms())))

    # -- sealing -------------------------------------------------------------------------------------------
    def _status(self):
        return (self.sampler.battery_mv, _rssi(), self.clock.uptime_s(), self.outbox.dropped(), self.cause)

    async def _next_group(self, force):
        """The next run of pending readings to seal now, or None: consecutive seq, one boot, one time source,
        at most N, read from the outbox N at a time (a backlog of thousands never sits in RAM at once).

        A run holds each reading's seq, boot, source, record count and outbox bytes, not its decoded
        records: those are decoded again, one per task step, while the payload is written, so nothing
        decoded stays live while the signature is computed. Each reading is decoded in a task step of its
        own: a decoded reading is ~700 B of objects, and on a board that collects only when the heap is
        full 16 of them at once were the difference between fitting and not.
        """
        group = []
        for seq, data in self.outbox.pending_readings(self.readings_per_bundle):
            boot, _time_s, source, records = reading.decode(data)
            if group and (seq != group[-1][0] + 1 or boot != group[0][1] or source != group[0][2]):
                break  # the run ended before N: seal what it has
            group.append((seq, boot, source, data, len(records)))
            records = None
            await asyncio.sleep_ms(0)
        else:
            if not group:
                return None
            if len(group) < self.readings_per_bundle and not force and not self._waited_long():
                return None
        return group

    def _waited_long(self):
        return self._pending_since is not None and time.ticks_diff(time.ticks_ms(), self._pending_since) >= (
            self.max_wait_ms
        )

    async def seal_pending(self, force=False):
        """Seal every full run (and partial ones when forced or overdue); returns the number of bundles."""
        sealed = 0
        while True:
            async with self._crypto:
                job = await self._prepare_next(force)
                if job is None:
                    break
                await self._sign_and_store(job)
                job = None  # a frame keeps what its variables hold: the payload would outlive the seal
            sealed += 1
        # what is left arrived during this pass: its wait starts now
        self._pending_since = time.ticks_ms() if self.outbox.pending_count() else None
        if sealed:
            self._send.set()
        return sealed

    async def _prepare_next(self, force):
        """The next bundle to sign, as (first seq, last seq, dropped it reports, prepared), or None.

        The run of readings and their outbox bytes are gone when it returns, so the many task steps of
        the signature hold only the payload (~2.4 KB less at N = 16).
        """
        group = await self._next_group(force)
        if group is None:
            return None
        try:
            return await self._prepare(group)
        except WireError as e:
            if e.reason != "too_large" or len(group) == 1:
                raise
            return await self._prepare(group[: len(group) // 2])  # too many readings for 2,048 bytes

    async def _prepare(self, group):
        first, boot, source = group[0][0], group[0][1], group[0][2]
        status = self._status()
        n_records = 0
        for g in group:
            n_records += g[4]
        enc = bundle.begin(boot, first, self.outbox.chain_head(), status, source, n_records)
        for g in group:
            _boot, time_s, _source, records = reading.decode(g[3])
            senml.write_reading(enc, time_s, records)
            records = None
            await asyncio.sleep_ms(0)
        return first, group[-1][0], status[3], bundle.finish(self.kid, enc)

    async def _sign_and_store(self, job):
        first, last, reported_dropped, prepared = job
        sealed = await bundle.sign(self.key, prepared)
        # the dropped count that went into this bundle is the one it reports (evictions while it was being
        # signed go into the next)
        self.outbox.add_bundle(first, last, sealed, reported_dropped=reported_dropped)
        self.stats["bundles"] += 1
        print("pinseal: sealed readings %d..%d (%d bytes)" % (first, last, len(sealed)))

    async def seal_loop(self):
        while True:
            await asyncio.sleep_ms(min(self.max_wait_ms, 1000) if self._pending_since is not None else 0)
            if self._pending_since is None:
                await self._seal.wait()
            self._seal.clear()
            await self.seal_pending()

    # -- sending -------------------------------------------------------------------------------------------
    async def send_loop(self):
        """Stop and wait: the oldest unacked bundle is (re)sent until an ack covers it, so a backlog drains in
        order and each bundle's bytes are the ones sealed."""
        while True:
            oldest = self.outbox.oldest_bundle()
            if oldest is None:
                self._send.clear()
                await self._send.wait()
                continue
            if not self.transport.connected:
                await asyncio.sleep_ms(200)
                continue
            data = oldest[2]
            oldest = None
            try:
                await self.transport.send(data)
            except (OSError, ValueError):
                await asyncio.sleep_ms(500)
                continue
            finally:
                # not held while the ack is awaited (and verified, and the next bundle sealed): the outbox
                # has the bytes for a resend
                data = None
            self.stats["sent"] += 1
            self._acked.clear()
            try:
                await asyncio.wait_for_ms(self._acked.wait(), self.transport.resend_ms)
            except asyncio.TimeoutError:
                pass  # no ack: send the same bytes again

    def _on_ack(self, ack_bytes):
        if len(self._acks) < _ACK_QUEUE:
            self._acks.append(bytes(ack_bytes))
            self._ack_arrived.set()

    async def ack_loop(self):
        while True:
            await self._ack_arrived.wait()
            self._ack_arrived.clear()
            while self._acks:
                data = self._acks.pop(0)
                try:
                    async with self._crypto:
                        seq, bundle_hash, time_s, reason = await ack.verify(
                            data, self.gateway_pk, self.kid, self.gateway_kid
                        )
                except (WireError, ValueError) as e:
                    self.stats["bad_acks"] += 1
                    print("pinseal: ack refused:", e)
                    continue
                data = None
                self.clock.from_ack(time_s)
                if reason is not None:
                    # rare, so its code is loaded only when one comes (on a 100 KB board every resident
                    # KB counts)
                    from pinseal.rejected import on_rejection

                    on_rejection(self, seq, bundle_hash, reason)
                    continue
                self.stats["acks"] += 1
                print("pinseal: gateway ack verified, stored through seq", seq)
                # the gateway holds every seq up to seq: a board put back to an older flash image must not
                # count them again (the outbox, which now refuses them, would stop the app)
                self.counters.skip_to(seq + 1)
                if self.outbox.ack(self._covered(seq, bundle_hash)):
                    self._acked.set()

    def _covered(self, seq, bundle_hash):
        """The seq an ack lets the outbox drop up to: its chain seq, or the named bundle when that is the
        oldest.

        The chain seq stops at a gap (a bundle evicted unsent never reaches the gateway), but an ack that
        names a bundle proves the gateway committed that very bundle, so it may go (docs/protocol.md §5).
        """
        oldest = self.outbox.oldest_bundle()
        if oldest is not None and oldest[1] > seq and hashlib.sha256(oldest[2]).digest() == bundle_hash:
            return oldest[1]
        return seq

    # -- links, time, watchdog -----------------------------------------------------------------------------
    async def time_loop(self):
        while True:
            if self.clock.ntp_due() and _wifi_up():
                self.clock.sync_ntp()
            await asyncio.sleep_ms(5000)

    async def watchdog_loop(self, wdt):
        # fed while readings keep coming: three missed intervals (or the watchdog's own timeout) mean stuck
        limit = 3 * self.interval_ms + 5000
        while True:
            if time.ticks_diff(time.ticks_ms(), self.progress_ms) < limit:
                wdt.feed()
            await asyncio.sleep_ms(1000)

    async def run(self, wdt=None):
        # join first so the first readings already have NTP time (they keep the source they were taken with)
        if await wifi.join(self.cfg["wifi"]) and self.cfg["time"]["ntp"]:
            self.clock.sync_ntp()
        await self.seal_pending(force=True)  # what the previous boot left unsealed
        tasks = [
            asyncio.create_task(wifi.keep_joined(self.cfg["wifi"])),
            asyncio.create_task(self.transport.start()),
            asyncio.create_task(self.sample_loop()),
            asyncio.create_task(self.seal_loop()),
            asyncio.create_task(self.send_loop()),
            asyncio.create_task(self.ack_loop()),
        ]
        if self.cfg["time"]["ntp"]:
            tasks.append(asyncio.create_task(self.time_loop()))
        if wdt is not None:
            tasks.append(asyncio.create_task(self.watchdog_loop(wdt)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await self.transport.stop()

    async def run_once(self, send_timeout_ms=30000):
        """Deep-sleep duty cycle: one reading, seal if due, send what is pending while acks come, return."""
        await self.sample_once()
        # RAM does not survive deep sleep: "waited long enough" is counted in sampling intervals instead
        waited_ms = self.outbox.pending_count() * self.interval_ms
        await self.seal_pending(force=waited_ms >= self.max_wait_ms)
        if self.outbox.oldest_bundle() is None:
            return
        if not await wifi.join(self.cfg["wifi"]):
            return
        starter = asyncio.create_task(self.transport.start())
        sender = asyncio.create_task(self.send_loop())
        acker = asyncio.create_task(self.ack_loop())
        deadline = time.ticks_add(time.ticks_ms(), send_timeout_ms)
        while self.outbox.oldest_bundle() is not None and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            await asyncio.sleep_ms(100)
        for t in (starter, sender, acker):
            t.cancel()
        await self.transport.stop()


def _wifi_up():
    return wifi.connected()


def _rssi():
    try:
        import network

        wlan = network.WLAN(network.STA_IF)
        return wlan.status("rssi") if wlan.isconnected() else 0
    except (ImportError, OSError, ValueError, TypeError):
        return 0
