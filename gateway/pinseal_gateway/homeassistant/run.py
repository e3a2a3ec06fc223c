"""The gateway's Home Assistant task: follow committed readings and the devices' health, publish them.

Every `publish_every_s`: read the registry and the readings committed since the last cycle, and as
often as the silence watch checks, which devices are silent (`silence.silent_devices`, the same rule
the gateway logs and reports; a device that just reported is online at once); then publish
what changed (discovery configs of new devices, availability that flipped, the latest state of devices
that reported). After a (re)connect or Home Assistant's birth message, everything is published again.

A failure here is Home Assistant's problem, never ingest's: a cycle that raises is logged (once per
distinct error) and the next one tries again; the task ends only when the gateway stops.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from pinseal_gateway import silence
from pinseal_gateway.homeassistant import feed
from pinseal_gateway.homeassistant.discovery import (
    OFFLINE,
    ONLINE,
    DeviceState,
    Topics,
    device_configs,
)
from pinseal_gateway.homeassistant.publisher import HaPublisher
from pinseal_gateway.keys import KeyFileError, read_secret
from pinseal_gateway.stopping import sleep_unless_stopped
from pinseal_gateway.store import devices as device_store

if TYPE_CHECKING:
    from pinseal_gateway.config import GatewayConfig
    from pinseal_gateway.context import GatewayContext

log = logging.getLogger(__name__)


def gateway_version() -> str:
    try:
        return metadata.version("pinseal")
    except metadata.PackageNotFoundError:
        return "unknown"


def make_publisher(config: GatewayConfig) -> HaPublisher:
    """The client for `[homeassistant]`: the gateway's own broker or the external one named there."""
    ha = config.homeassistant
    if ha.broker == "pinseal":
        host, port, tls, ca_file = config.mqtt.host, config.mqtt.port, False, ""
    else:
        host, port, tls, ca_file = ha.host, ha.port, ha.tls, ha.ca_file
    path = config.ha_publisher_password_path
    password: str | None = None
    if path.exists():
        password = read_secret(path).decode("utf-8").strip()
    else:
        hint = (
            "run `pinseal-gateway broker-config --out DIR` to create it and the broker's login"
            if ha.broker == "pinseal"
            else "write the password of homeassistant.username on that broker into it (mode 0600)"
        )
        log.warning("Home Assistant discovery: no password file at %s; %s", path, hint)
    topics = Topics(ha.discovery_prefix, ha.state_prefix)
    return HaPublisher(
        topics,
        host=host,
        port=port,
        username=ha.username,
        password=password,
        client_id=ha.username,
        tls=tls,
        ca_file=ca_file,
    )


@dataclass(frozen=True)
class Snapshot:
    """One cycle's reading of the database."""

    devices: list[device_store.Device]
    silent: set[bytes] | None  # None: not checked this cycle
    records: list[feed.StoredRecord]
    rowid: int


class HaMirror:
    """What Home Assistant has been told in this connection, and the devices' latest verified state."""

    def __init__(self, publisher: HaPublisher, version: str) -> None:
        self.publisher = publisher
        self.version = version
        self.states: dict[bytes, DeviceState] = {}
        self.announced: dict[bytes, str | None] = {}  # kid -> label its configs were published with
        self.availability: dict[bytes, str] = {}
        self.silent: set[bytes] = set()
        self.rowid = 0

    def take(self, records: list[feed.StoredRecord]) -> set[bytes]:
        """Merge records into the states; returns the devices whose state changed. A device with a
        reading just committed is not silent, whenever silence was last checked."""
        changed = set()
        self.silent.difference_update(record.kid for record in records)
        for record in records:
            state = self.states.get(record.kid)
            if state is None:
                state = self.states[record.kid] = DeviceState()
            if state.apply(
                record.seq, record.time if record.wall_clock else None, record.name, record.unit, record.value
            ):
                changed.add(record.kid)
        return changed

    def publish(self, snapshot: Snapshot, changed: set[bytes], everything: bool) -> int:
        """Publish what Home Assistant does not know yet; returns the number of messages."""
        if everything:
            self.announced.clear()
            self.availability.clear()
            changed = set(self.states)
        topics = self.publisher.topics
        sent = 0
        for device in snapshot.devices:
            kid, kid_hex = device.kid, device.kid.hex()
            if kid not in self.announced or self.announced[kid] != device.label:
                for topic, payload in device_configs(topics, kid_hex, device.label, self.version):
                    self.publisher.publish(topic, payload)
                    sent += 1
                self.announced[kid] = device.label
            available = OFFLINE if device.revoked or kid in self.silent else ONLINE
            if self.availability.get(kid) != available:
                self.publisher.publish(topics.availability(kid_hex), available)
                self.availability[kid] = available
                sent += 1
            if kid in changed and kid in self.states:
                self.publisher.publish(topics.state(kid_hex), self.states[kid].payload())
                sent += 1
        return sent


def _read(
    conn: sqlite3.Connection, config: GatewayConfig, rowid: int, now: float, check_silence: bool
) -> Snapshot:
    """The registry, the new readings and, when `check_silence`, which devices are silent (the costly
    part: a query per device, ~28 ms for 1,000 devices, so on the silence watch's cadence only)."""
    devices = device_store.list_devices(conn)
    silent = None
    if check_silence:
        cfg = config.devices
        found = silence.silent_devices(conn, now, cfg.expected_interval_s, cfg.silent_after_intervals)
        silent = {d.kid for d in found}
    return Snapshot(devices, silent, *feed.latest_after(conn, rowid))


async def run_homeassistant(ctx: GatewayContext, stop: asyncio.Event) -> None:
    """Publish to Home Assistant until `stop` (a background task of the daemon when enabled)."""
    config = ctx.config
    try:
        publisher = make_publisher(config)
    except (KeyFileError, OSError, ValueError) as exc:  # an unsafe password file, an unreadable CA file
        log.error("Home Assistant discovery off until restart: %s", exc)
        await stop.wait()
        return
    mirror = HaMirror(publisher, gateway_version())
    started = False
    silence_every_s = silence.check_every_s(config.devices.expected_interval_s)
    next_silence_check = 0.0
    publisher.start()
    last_error = ""
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            try:
                if not started:  # the latest state from before a restart, for the first publish
                    records, mirror.rowid = await ctx.db.run(feed.recent)
                    mirror.take(records)
                    started = True
                check_silence = loop.time() >= next_silence_check
                snapshot = await ctx.db.run(_read, config, mirror.rowid, time.time(), check_silence)
                if snapshot.silent is not None:
                    mirror.silent = snapshot.silent
                    next_silence_check = loop.time() + silence_every_s
                changed = mirror.take(snapshot.records)
                mirror.rowid = snapshot.rowid
                if publisher.connected:
                    mirror.publish(snapshot, changed, publisher.take_republish())
                last_error = ""
            except Exception as exc:  # never let Home Assistant stop the gateway
                if repr(exc) != last_error:
                    log.error("Home Assistant discovery: cycle failed (retrying): %r", exc, exc_info=exc)
                    last_error = repr(exc)
            await sleep_unless_stopped(stop, config.homeassistant.publish_every_s)
    finally:
        await loop.run_in_executor(None, publisher.stop)
