# Choosing a link: several transports in order of preference behind the one Transport interface, so the app
# never knows which carried a bundle.
#
# The first transport that links within link_timeout_s carries the outbox. While a less preferred one does,
# the preferred ones are tried again every retry_s (started, given link_timeout_s, stopped again if they did
# not link), and the outbox moves back as soon as one links. A link that has been down for link_timeout_s is
# given up for the next that links. Only the current link sends, one bundle at a time, and a switch waits for
# the send in progress to end: a bundle is never in flight on two links at once. One sent on a link that went
# away before its ack is sent again on the next (the app resends until a verified ack names it), and the
# gateway stores a bundle once, by its hash, whatever links carried it. Acks are taken from every started
# link: an ack is signed, so where it came from does not matter.
import asyncio
import time

from micropython import const

from pinseal.transport import Transport, end_task

_CHECK_MS = const(200)


class Links(Transport):
    """links: [(name, transport), ...], most preferred first."""

    def __init__(self, links, link_timeout_ms, retry_ms):
        self.links = links
        self.link_timeout_ms = link_timeout_ms
        self.retry_ms = retry_ms
        self.current = -1  # index into links, -1 while none carries the outbox
        self._task = None
        self._sending = asyncio.Lock()
        for _name, t in links:
            t.on_ack = self._ack

    def _ack(self, ack_bytes):
        if self.on_ack is not None:
            self.on_ack(ack_bytes)

    @property
    def connected(self):
        return self.current >= 0 and self.links[self.current][1].connected

    @property
    def resend_ms(self):
        return self.links[self.current][1].resend_ms if self.current >= 0 else 15000

    @property
    def name(self):
        return self.links[self.current][0] if self.current >= 0 else None

    async def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._choose())

    async def stop(self):
        task = self._task
        self._task = None
        await end_task(task)
        for _name, t in self.links:
            await t.stop()
        self.current = -1

    async def send(self, bundle_bytes, topic=None):
        async with self._sending:
            if self.current < 0:
                raise OSError(113)  # EHOSTUNREACH: no link carries the outbox now; the app tries again
            # never waits for ever on a link that went away: the chooser cannot switch during a send
            try:
                await asyncio.wait_for_ms(
                    self.links[self.current][1].send(bundle_bytes, topic), self.link_timeout_ms
                )
            except asyncio.TimeoutError:
                raise OSError(110)  # ETIMEDOUT

    async def _linked_within(self, t, timeout_ms):
        await t.start()
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while not t.connected:
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return False
            await asyncio.sleep_ms(_CHECK_MS)
        return True

    async def _switch(self, i):
        async with self._sending:
            old = self.current
            self.current = i
        last = self.links[old][0] if old >= 0 else "none"
        print("pinseal: link %s -> %s" % (last, self.links[i][0]))
        if old >= 0:
            await self.links[old][1].stop()

    async def _choose(self):
        down_since = None
        tried_ms = time.ticks_ms()
        while True:
            now = time.ticks_ms()
            cur = self.current
            if cur >= 0 and self.links[cur][1].connected:
                down_since = None
            elif cur >= 0 and down_since is None:
                down_since = now
            lost = down_since is not None and time.ticks_diff(now, down_since) >= self.link_timeout_ms
            retry = cur > 0 and time.ticks_diff(now, tried_ms) >= self.retry_ms
            if cur < 0 or lost or retry:
                # the more preferred ones (all of them when none links, or the current one is lost)
                end = len(self.links) if cur < 0 or lost else cur
                for i in range(end):
                    if i == cur:
                        continue
                    t = self.links[i][1]
                    if await self._linked_within(t, self.link_timeout_ms):
                        await self._switch(i)
                        down_since = None
                        break
                    await t.stop()
                tried_ms = time.ticks_ms()
            await asyncio.sleep_ms(_CHECK_MS)
