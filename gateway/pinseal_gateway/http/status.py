"""`build_status`, shared by `/status` and `pinseal-gateway status`, so the CLI and the API report the same
thing: per device its last valid bundle, contiguous sequence and whether it is silent ("online but not
reporting": silent for longer than `silent_after_intervals` of its expected interval).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from pinseal_gateway import silence
from pinseal_gateway.config import GatewayConfig
from pinseal_gateway.store import batches as batch_store
from pinseal_gateway.store import bundles as bundle_store
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store import rejections
from pinseal_gateway.store import status as status_store


def is_silent(last_seen: float | None, added_at: float, interval_s: int, intervals: int, now: float) -> bool:
    """Silent: no valid bundle for `intervals` expected intervals (since registration if none ever)."""
    reference = last_seen if last_seen is not None else added_at
    return now - reference > interval_s * intervals


@dataclass(frozen=True)
class DeviceHealth:
    device: device_store.Device
    state: bundle_store.DeviceState
    interval_s: float
    """The interval it is judged by (pinseal_gateway.silence.expected_interval_s)."""
    silent: bool
    """Not revoked, and no bundle for `silent_after_intervals` of those intervals."""


def device_health(conn: sqlite3.Connection, config: GatewayConfig, now: float) -> list[DeviceHealth]:
    """Each registered device with its state and whether it is silent: one rule for `/status`, the CLI, the
    API and the dashboard (the API once judged by the registered interval while `/status` learned it)."""
    states = {s.kid: s for s in bundle_store.all_states(conn)}
    out = []
    for device in device_store.list_devices(conn):
        state = states.get(device.kid, bundle_store.DeviceState(device.kid))
        interval = silence.expected_interval_s(
            conn, device.kid, device.expected_interval_s, config.devices.expected_interval_s
        )
        silent = not device.revoked and is_silent(
            state.last_seen, device.added_at, interval, config.devices.silent_after_intervals, now
        )
        out.append(DeviceHealth(device, state, interval, silent))
    return out


def build_status(conn: sqlite3.Connection, config: GatewayConfig, now: float | None = None) -> dict[str, Any]:
    """A JSON-ready snapshot of the gateway's devices, counts and outbox."""
    now = time.time() if now is None else now
    devices = [
        {
            "kid": h.device.kid_hex,
            "label": h.device.label,
            "revoked": h.device.revoked,
            "expected_interval_s": h.interval_s,
            "last_seen": h.state.last_seen,
            "high_seq": h.state.high_seq,
            "contiguous_seq": h.state.contiguous_seq,
            "bundles": h.state.bundles,
            "readings": h.state.readings,
            "gaps": h.state.gaps,
            "silent": h.silent,
        }
        for h in device_health(conn, config, now)
    ]
    totals = status_store.totals(conn)
    return {
        "time": now,
        "devices": devices,
        "counts": {
            "devices": len(devices),
            "devices_silent": sum(1 for d in devices if d["silent"]),
            "bundles": totals.bundles,
            "readings": totals.readings,
            "unbatched": totals.unbatched,
            "batches": totals.batches,
            "rejections": bundle_store.count_by_reason(conn),
            "rejections_unstored": rejections.unstored_by_reason(conn),  # rate-limited or pruned
        },
        "outbox_depth": totals.outbox,
        "uplink": batch_store.uplink_summary(conn),
    }
