"""Devices that are registered but have stopped reporting ("online but not reporting").

DePIN owners' most common complaint is a device that looks fine (powered, on the network) yet earns
nothing because its readings stopped arriving. The gateway knows each device's expected interval, so
it can say so first: a device is silent once its last accepted bundle is older than
`silent_after_intervals` expected intervals. A device that never sent anything counts from the time it
was registered, so a unit that was added but never came up is reported too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pinseal_gateway.stopping import sleep_unless_stopped
from pinseal_gateway.store import devices as device_store

if TYPE_CHECKING:
    from pinseal_gateway.context import GatewayContext

log = logging.getLogger(__name__)

MAX_CHECK_EVERY_S = 30.0


@dataclass(frozen=True)
class SilentDevice:
    kid: bytes
    label: str | None
    last_seen: float | None
    """Time of the last accepted bundle; None if the device never sent one."""
    expected_interval_s: float
    silent_for_s: float
    """Seconds since the last bundle (or since registration, for a device never heard from)."""


def silent_devices(
    conn: sqlite3.Connection, now: float, default_interval_s: float, silent_after_intervals: float
) -> list[SilentDevice]:
    """Registered, non-revoked devices whose last bundle is older than their silence threshold.

    Last bundle as `store.devices.last_heard` reads it; the per-device interval is
    `devices.expected_interval_s`, else `default_interval_s`. Ordered by key id.
    """
    silent = []
    for device in device_store.last_heard(conn):
        expected = expected_interval_s(conn, device.kid, device.expected_interval_s, default_interval_s)
        since = device.last_seen if device.last_seen is not None else device.added_at
        silent_for = now - since
        if silent_for > silent_after_intervals * expected:
            silent.append(SilentDevice(device.kid, device.label, device.last_seen, expected, silent_for))
    return silent


def expected_interval_s(
    conn: sqlite3.Connection, kid: bytes, registered_s: int | None, default_s: float
) -> float:
    """The interval a device is judged by: the one it registered with (else the config's default), or
    the one it has been keeping if that is longer. Registrations used to carry the sampling interval, and a
    board that bundles 16 readings then sends 16 times less often: judged by what it registered, a healthy
    board flapped between "silent" and "no longer silent" every bundle."""
    registered = float(registered_s or default_s)
    learned = device_store.learned_interval_s(conn, kid)
    return registered if learned is None else max(registered, learned)


class SilenceTracker:
    """Remembers who was silent at the last check, so each change is logged once, not every check."""

    def __init__(self) -> None:
        self.silent: dict[bytes, SilentDevice] = {}

    def update(self, current: list[SilentDevice]) -> tuple[list[SilentDevice], list[bytes]]:
        """Record this check; returns (newly silent devices, key ids that reported again)."""
        now_silent = {d.kid: d for d in current}
        new = [d for kid, d in now_silent.items() if kid not in self.silent]
        recovered = [kid for kid in self.silent if kid not in now_silent]
        self.silent = now_silent
        return new, recovered


def check_every_s(default_interval_s: float) -> float:
    """A device is late by whole intervals, so checking a few times per interval is precise enough."""
    return max(1.0, min(MAX_CHECK_EVERY_S, default_interval_s / 2))


async def run_silence_watch(
    ctx: GatewayContext,
    stop: asyncio.Event,
    *,
    clock: Callable[[], float] = time.time,
    every_s: float | None = None,
) -> None:
    """Check for silent devices until `stop`; log each newly silent and each recovered device once."""
    tracker = SilenceTracker()
    while not stop.is_set():
        await check_once(ctx, tracker, clock())
        # afresh each round: a SIGHUP may have changed the expected interval
        interval = check_every_s(ctx.config.devices.expected_interval_s) if every_s is None else every_s
        await sleep_unless_stopped(stop, interval)


async def check_once(ctx: GatewayContext, tracker: SilenceTracker, now: float) -> list[SilentDevice]:
    """One check: query, log the changes, set the `devices_silent` gauge."""
    cfg = ctx.config.devices
    current = await ctx.db.run(silent_devices, now, cfg.expected_interval_s, cfg.silent_after_intervals)
    new, recovered = tracker.update(current)
    for device in new:
        label = f" ({device.label})" if device.label else ""
        if device.last_seen is None:
            log.warning(
                "device %s%s silent: never reported since it was registered %.0f s ago (expected every %g s)",
                device.kid.hex(),
                label,
                device.silent_for_s,
                device.expected_interval_s,
            )
        else:
            log.warning(
                "device %s%s silent: no bundle for %.0f s (expected every %g s)",
                device.kid.hex(),
                label,
                device.silent_for_s,
                device.expected_interval_s,
            )
    for kid in recovered:
        log.info("device %s no longer silent", kid.hex())
    ctx.metrics.devices_silent.set(len(current))
    return current
