"""The BLE intake: which advertising device to connect to, when, on which slot; the `Link` of its bundles.

Reports from the scanner are judged before anything else (docs/gateway.md "BLE"):

- The advertised key id prefix must belong to a registered, unrevoked device. An unregistered or revoked
  device is never connected to; it is logged once (and counted in `ble_refused_devices`) however often
  it advertises.
- Devices are known by their key id prefix, never by their address: an LE device may change its address
  (a resolvable private address), and the newest report of a prefix is the one connected to.
- A device is connected to when a slot is free (`max_connections`), no session of it is open, and its
  backoff (after a session that failed or went idle, doubling from 0.5 s to `backoff_max_s`) has run
  out. After such a session the device is tried again at the address it was reached at, until it has
  not been reported for `scan_watchdog_s` (a device that left does not hold a slot now and then for
  ever).
- BlueZ reports a device's own connection changes as property changes, which bleak passes on like
  advertisements: a report of the address a session just ended on, within `SETTLE_S`, is not taken for
  the device advertising again.

As the `Link` of the messages it submits, it passes each ack to the session of its device (or keeps the
last few for the device's next session) and counts settlements. Sessions run in their own tasks; the
intake's task runs the scanner and the dispatcher, and both are bounded: a tick of `TICK_S`, a D-Bus
timeout on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from pinseal_gateway.config import BleSection
from pinseal_gateway.intake.ble.backoff import Backoff
from pinseal_gateway.intake.ble.candidates import Candidate, Candidates
from pinseal_gateway.intake.ble.scanner import Scanner
from pinseal_gateway.intake.ble.session import Outcome, Session, SessionResult
from pinseal_gateway.link import Inbox, Message
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.registry import RegistryFollower
from pinseal_protocol import ble_link as bl

log = logging.getLogger(__name__)

TICK_S = 0.1
"""How often the dispatcher looks for a device to connect to (and the registry for changes)."""
SETTLE_S = 1.0
"""After a session, reports of its address this soon are its disconnection, not an advertisement."""
KEPT_ACKS = 8
"""Acks kept for a device whose session ended before they came, delivered at its next session."""
STOP_TIMEOUT_S = 5.0
REFUSALS_REMEMBERED = 4096
"""Refused devices (by prefix, or address when the prefix is malformed) logged once each, this many."""


class BleIntake:
    """Scans, connects, and feeds `inbox` with the bundles of registered BLE devices."""

    def __init__(
        self, config: BleSection, inbox: Inbox, registry: RegistryFollower, metrics: Metrics
    ) -> None:
        self.config = config
        self.inbox = inbox
        self.registry = registry
        self.metrics = metrics
        self.backoff = Backoff(config.backoff_max_s)
        self.scanner = Scanner(
            config.adapter, self._on_report, config.scan_watchdog_s, self._expected, metrics
        )
        self.candidates = Candidates(config.scan_watchdog_s)
        self._sessions: dict[bytes, Session] = {}  # by prefix
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_kid: dict[bytes, Session] = {}
        self._kept_acks: dict[bytes, deque[bytes]] = {}
        self._ended: dict[bytes, tuple[str, float]] = {}  # prefix -> (address, when) of its last session
        self._refused: dict[tuple[bytes, str], None] = {}  # insertion-ordered: the oldest is forgotten first
        self._seen_registered = False
        self._quiet_since = time.monotonic()
        self._room = asyncio.Event()
        self._stop = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # -- life ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Scan and serve devices in the background (a task of the running loop)."""
        self.inbox.on_room(self._room.set)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ble-intake")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The intake's task (after `start`): the daemon watches it."""
        return self._task

    def pause(self) -> None:
        """Take no new bundles (sessions end; the devices keep theirs until a later ack)."""
        self._closing = True
        self._stop.set()

    async def stop(self) -> None:
        """End every session (each disconnects its client) and discovery; after the pipeline's last group."""
        self.pause()
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        # the registry before the first report: a device refused against a registry not yet loaded would
        # not be reported again while its advertisement stays the same (BlueZ reports changes)
        await self.registry.refresh()
        scan = asyncio.create_task(self.scanner.run(self._stop), name="ble-scanner")
        try:
            while not self._stop.is_set():
                await self.registry.refresh()
                self._dispatch(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), TICK_S)
        finally:
            self._stop.set()
            for session_task in list(self._tasks):
                session_task.cancel()
            await asyncio.gather(scan, *self._tasks, return_exceptions=True)

    # -- reports and the registry --------------------------------------------------------------------

    def _expected(self) -> float | None:
        """For the watchdog: since when an advertisement is due (registered devices were seen, and no
        session is open, so some device should be advertising), or None."""
        if not self._seen_registered or self._sessions:
            return None
        return self._quiet_since

    def _on_report(self, device: BLEDevice, adv: AdvertisementData) -> None:
        try:
            prefix = bl.prefix_from_service_data(adv.service_data)
        except bl.BleLinkError as exc:
            self._refuse(device, None, "malformed", str(exc))
            return
        if prefix is None:
            return  # our service, but no key id: not a pinseal device of this protocol
        why = self._registry_says(prefix)
        if why is not None:
            self._refuse(device, prefix, why, "")
            return
        self._seen_registered = True
        now = time.monotonic()
        ended = self._ended.get(prefix)
        if ended is not None and ended[0] == device.address and now - ended[1] < SETTLE_S:
            return  # the session's own disconnection, reported as a property change
        session = self._sessions.get(prefix)
        if session is not None and session.device.address == device.address:
            return
        self.candidates.reported(prefix, device, now)

    def _registry_says(self, prefix: bytes) -> str | None:
        """None if a registered, unrevoked key id has this prefix; else "unregistered" or "revoked"."""
        matches = self.registry.registry.with_prefix(prefix)
        if not matches:
            return "unregistered"
        if all(matches.values()):
            return "revoked"
        return None

    def _first_time(self, key: tuple[bytes, str]) -> bool:
        """Whether `key` is new to the refusal log (which forgets its oldest beyond `REFUSALS_REMEMBERED`:
        a radio advertising ever new prefixes or addresses must not grow it without bound)."""
        if key in self._refused:
            return False
        self._refused[key] = None
        if len(self._refused) > REFUSALS_REMEMBERED:
            del self._refused[next(iter(self._refused))]
        return True

    def _refuse(self, device: BLEDevice, prefix: bytes | None, reason: str, detail: str) -> None:
        if not self._first_time((prefix or device.address.encode(), reason)):
            return
        self.metrics.ble_refused_devices.labels(reason).inc()
        log.warning(
            "BLE: not connecting to %s advertising key id prefix %s: %s%s",
            device.address,
            prefix.hex() if prefix else "-",
            {"unregistered": "no registered device has it", "revoked": "the device is revoked"}.get(
                reason, reason
            ),
            f" ({detail})" if detail else "",
        )

    def _check_kid(self, kid: bytes, prefix: bytes) -> str | None:
        """The session's registry check of the full key id its device's info gave."""
        if not kid.startswith(prefix):
            return f"the info's key id {kid.hex()} does not start with the advertised prefix {prefix.hex()}"
        revoked = self.registry.registry.with_prefix(prefix).get(kid)
        if revoked is None:
            return f"key id {kid.hex()} is not registered"
        if revoked:
            return f"key id {kid.hex()} is revoked"
        return None

    # -- sessions ------------------------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        if self._closing:
            return
        for prefix in self.candidates.waiting(now):
            if len(self._sessions) >= self.config.max_connections:
                return
            if prefix in self._sessions or not self.backoff.due(prefix, now):
                continue
            if self._registry_says(prefix) is not None:  # revoked since it was seen
                self.candidates.drop(prefix)
                continue
            candidate = self.candidates.take(prefix)
            session = Session(
                candidate.device,
                prefix,
                self.config,
                self.metrics,
                self._check_kid,
                self._confirmed,
                self._submit,
            )
            self._sessions[prefix] = session
            self.metrics.ble_sessions.set(len(self._sessions))
            log.debug(
                "BLE slots: %d of %d in use (%s connecting)",
                len(self._sessions),
                self.config.max_connections,
                session.name,
            )
            task = asyncio.create_task(self._serve(session, candidate), name=f"ble-session-{prefix.hex()}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, session: Session, candidate: Candidate) -> None:
        prefix = session.prefix
        try:
            result = await session.run()
        finally:
            del self._sessions[prefix]
            log.debug(
                "BLE slots: %d of %d in use (%s ended)",
                len(self._sessions),
                self.config.max_connections,
                session.name,
            )
            if session.kid is not None and self._by_kid.get(session.kid) is session:
                del self._by_kid[session.kid]
            self.metrics.ble_sessions.set(len(self._sessions))
            now = time.monotonic()
            self._ended[prefix] = (session.device.address, now)
            if not self._sessions:
                self._quiet_since = now
        self._after(session, candidate, result)

    def _after(self, session: Session, candidate: Candidate, result: SessionResult) -> None:
        prefix = session.prefix
        now = time.monotonic()
        self.metrics.ble_connections.labels(result.outcome.value).inc()
        if result.bundles:
            self.backoff.succeeded(prefix)
        if result.outcome is Outcome.DRAINED:
            self.candidates.drained(prefix)
            log.info("BLE %s: %d bundles, outbox empty; disconnected", session.name, result.bundles)
            return
        if result.outcome is Outcome.HUNG_UP:
            # a board hangs up once it has nothing left to send, and advertises again when it has
            self.candidates.drained(prefix)
            log.info("BLE %s: %d bundles; the device hung up between transfers", session.name, result.bundles)
            return
        if result.outcome is Outcome.REFUSED:
            delay = self.backoff.failed(prefix, now)
            if self._first_time((prefix, "info")):
                log.warning(
                    "BLE %s: disconnected after the info read, bundles not taken: %s; next try in %.1f s "
                    "(logged once for this prefix)",
                    session.name,
                    result.detail,
                    delay,
                )
            return
        delay = self.backoff.failed(prefix, now)
        log.info(
            "BLE %s: %s after %d bundles%s; next try in %.1f s",
            session.name,
            result.outcome.value,
            result.bundles,
            f" ({result.detail})" if result.detail else "",
            delay,
        )
        # Retry the same address unless the device was seen anew meanwhile (it may have a new address).
        self.candidates.retry(prefix, candidate)

    def _confirmed(self, session: Session) -> None:
        """The session's key id is confirmed: its device's acks go there now, kept ones first (an ack whose
        session ended before it came spares the device sending that bundle again)."""
        assert session.kid is not None
        self._by_kid[session.kid] = session
        for ack in self._kept_acks.pop(session.kid, ()):
            session.post("ack", ack)

    async def _submit(self, session: Session, bundle: bytes) -> None:
        """A reassembled bundle to the pipeline, on the confirmed device's up topic, once there is room."""
        kid = session.kid
        assert kid is not None
        while not self.inbox.has_room():
            self._room.clear()
            await self._room.wait()
        topic = f"pinseal/v1/{kid.hex()}/up"
        self.inbox.submit_nowait(Message(topic, bundle, time.time(), session, self))

    # -- Link: called by the pipeline (event loop thread) -------------------------------------------

    def settle(self, tokens: Sequence[object]) -> None:
        """The messages' outcomes are committed: their sessions may take the next bundle."""
        for token in tokens:
            if isinstance(token, Session):
                token.post("settled")

    def publish_acks(self, acks: Sequence[tuple[bytes, bytes]]) -> None:
        """Each ack to its device's open session, written from there; else kept for its next session."""
        for kid, ack in acks:
            session = self._by_kid.get(kid)
            if session is not None:
                session.post("ack", ack)
            else:
                self._kept_acks.setdefault(kid, deque(maxlen=KEPT_ACKS)).append(ack)
