"""The gateway's HTTP face (aiohttp): `/metrics` for Prometheus, `/status` for owners, `/proofs/<hash>`.

`build_status` is shared with `pinseal-gateway status`, so the CLI and the API report the same thing:
per device its last valid bundle, contiguous sequence and whether it is silent ("online but not
reporting": silent for longer than `silent_after_intervals` of its expected interval).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from aiohttp import web

from pinseal_gateway import proofs, silence
from pinseal_gateway.config import GatewayConfig
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.store import batches as batch_store
from pinseal_gateway.store import bundles as bundle_store
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store import rejections
from pinseal_gateway.store import status as status_store

log = logging.getLogger(__name__)

CTX_KEY: web.AppKey[GatewayContext] = web.AppKey("ctx", GatewayContext)


def is_silent(last_seen: float | None, added_at: float, interval_s: int, intervals: int, now: float) -> bool:
    """Silent: no valid bundle for `intervals` expected intervals (since registration if none ever)."""
    reference = last_seen if last_seen is not None else added_at
    return now - reference > interval_s * intervals


def build_status(conn: sqlite3.Connection, config: GatewayConfig, now: float | None = None) -> dict[str, Any]:
    """A JSON-ready snapshot of the gateway's devices, counts and outbox."""
    now = time.time() if now is None else now
    states = {s.kid: s for s in bundle_store.all_states(conn)}
    devices = []
    for device in device_store.list_devices(conn):
        state = states.get(device.kid, bundle_store.DeviceState(device.kid))
        interval = silence.expected_interval_s(
            conn, device.kid, device.expected_interval_s, config.devices.expected_interval_s
        )
        devices.append(
            {
                "kid": device.kid_hex,
                "label": device.label,
                "revoked": device.revoked,
                "expected_interval_s": interval,
                "last_seen": state.last_seen,
                "high_seq": state.high_seq,
                "contiguous_seq": state.contiguous_seq,
                "bundles": state.bundles,
                "readings": state.readings,
                "gaps": state.gaps,
                "silent": not device.revoked
                and is_silent(
                    state.last_seen, device.added_at, interval, config.devices.silent_after_intervals, now
                ),
            }
        )
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


async def _metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    return web.Response(body=ctx.metrics.render(), content_type="text/plain", charset="utf-8")


async def _status(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    status = await ctx.db.run(build_status, ctx.config)
    status["broker"] = ctx.broker_link.as_status()  # live state: only the running gateway knows it
    return web.json_response(status)


async def _proof(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    text = request.match_info["bundle_hash"]
    try:
        bundle_hash = bytes.fromhex(text)
    except ValueError:
        bundle_hash = b""
    if len(bundle_hash) != 32:
        return web.json_response({"error": "a bundle hash is 64 hex digits"}, status=400)
    proof = await ctx.db.run(proofs.proof_for, bundle_hash)
    if proof is None:
        return web.json_response({"error": "unknown bundle"}, status=404)
    if proofs.is_pending(proof):
        return web.json_response(proof, status=202)  # stored, not batched yet: ask again later
    return web.json_response(proof)


def make_app(ctx: GatewayContext) -> web.Application:
    app = web.Application()
    app[CTX_KEY] = ctx
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/status", _status)
    app.router.add_get("/proofs/{bundle_hash}", _proof)
    return app


async def start_http(ctx: GatewayContext) -> tuple[web.AppRunner, int]:
    """Serve the API on `http.listen`; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(make_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, ctx.config.http.host, ctx.config.http.port)
    await site.start()
    port = ctx.config.http.port
    server = site._server  # aiohttp exposes no public accessor for the bound port (listen on port 0)
    if server is not None and getattr(server, "sockets", None):
        port = server.sockets[0].getsockname()[1]
    log.info(
        "HTTP API on http://%s:%d (/metrics, /status, /proofs/<bundle-hash>)", ctx.config.http.host, port
    )
    return runner, port
