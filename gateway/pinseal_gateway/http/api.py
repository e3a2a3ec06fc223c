"""The read-only JSON (and CSV) API under `/api/`: devices, a device's readings over a time range, recent
bundles with their proof links, batches with their forwarding state, rejections by reason.

Every response is bounded (`limit`, capped), every bad parameter a 400 whose message says what to send
(`http.query`), and values leave in the units a person reads (`pinseal_gateway.units`) next to the value
exactly as the device signed it.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pinseal_gateway.config import GatewayConfig
from pinseal_gateway.http.context import CTX_KEY
from pinseal_gateway.http.query import QueryError, check_known, parse_kid, parse_limit, parse_readings_query
from pinseal_gateway.http.status import device_health
from pinseal_gateway.store import bundles as bundle_store
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store import rejections, views
from pinseal_gateway.units import human_value, quantity

RECENT_DEFAULT = 50
RECENT_MAX = 500


def iso(t: float | None) -> str | None:
    return (
        None
        if t is None
        else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def reading_json(row: views.ReadingRow) -> dict[str, Any]:
    human = human_value(row.unit, row.value)
    return {
        "seq": row.seq,
        "time": row.time,
        "time_estimated": row.time_estimated,
        "device_time": row.device_time,
        "name": row.name,
        "quantity": quantity(row.name),
        "value": human.value,
        "unit": human.unit,
        "raw_value": row.value,
        "raw_unit": row.unit,
        "error": row.error,
    }


def device_list(
    conn: sqlite3.Connection, config: GatewayConfig, last_ack: Mapping[bytes, float], now: float
) -> list[dict[str, Any]]:
    """Each registered device: status (online, silent, revoked, or new: registered, nothing yet), its last
    reading in display units, battery, when it was last seen and last acked."""
    out = []
    for health in device_health(conn, config, now):
        device, state, interval, silent = health.device, health.state, health.interval_s, health.silent
        if device.revoked:
            status = "revoked"
        elif silent:
            status = "silent"
        elif state.last_seen is None:
            status = "new"
        else:
            status = "online"
        latest = [reading_json(r) for r in views.latest_reading(conn, device.kid)]
        battery = next((r["value"] for r in latest if r["name"].partition(":")[0] == "bat"), None)
        out.append(
            {
                "kid": device.kid_hex,
                "label": device.label,
                "status": status,
                "expected_interval_s": interval,
                "last_seen": state.last_seen,
                "last_ack": last_ack.get(device.kid),
                "bundles": state.bundles,
                "readings": state.readings,
                "gaps": state.gaps,
                "contiguous_seq": state.contiguous_seq,
                "battery_v": battery,
                "last_reading": {"time": latest[0]["time"], "values": latest} if latest else None,
                "links": {
                    "readings": f"/api/devices/{device.kid_hex}/readings",
                    "page": f"/devices/{device.kid_hex}",
                },
            }
        )
    return out


def bundle_json(row: views.BundleRow) -> dict[str, Any]:
    return {
        "hash": row.hash.hex(),
        "kid": row.kid.hex(),
        "seq": row.seq,
        "last_seq": row.last_seq,
        "readings": row.n_readings,
        "received_at": row.received_at,
        "batch_no": row.batch_no if row.batch_no is not None and row.batch_no >= 0 else None,
        "state": row.state,
        "chain_gap": row.chain_gap,
        "time_flag": row.time_flag,
        "proof": f"/proofs/{row.hash.hex()}",
    }


def batch_json(row: views.BatchView) -> dict[str, Any]:
    return {
        "batch_no": row.batch_no,
        "hash": row.hash.hex(),
        "bundles": row.count,
        "created_at": row.created_at,
        "state": row.state,
        "sent_at": row.sent_at,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at if row.sent_at is None else None,
    }


def rejections_json(conn: sqlite3.Connection, limit: int) -> dict[str, Any]:
    return {
        "by_reason": bundle_store.count_by_reason(conn),
        "unstored_by_reason": rejections.unstored_by_reason(conn),
        "recent": [
            {
                "kid": None if r.kid is None else r.kid.hex(),
                "topic": r.topic,
                "reason": r.reason,
                "detail": r.detail,
                "received_at": r.received_at,
            }
            for r in views.recent_rejections(conn, limit)
        ],
    }


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A device-chosen text (a record's name, unit or error) that a spreadsheet would run as a formula
    (`=HYPERLINK(...)`) gets a leading apostrophe; numbers (negative ones too) stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def bad_request(exc: QueryError) -> web.Response:
    return web.json_response({"error": str(exc)}, status=400)


async def devices(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        check_known(request.query, ())
    except QueryError as exc:
        return bad_request(exc)
    now = time.time()
    listed = await ctx.db.run(device_list, ctx.config, dict(ctx.metrics.last_ack), now)
    return web.json_response({"time": now, "devices": listed})


CSV_COLUMNS = (
    "time",
    "time_iso",
    "time_estimated",
    "device_time",
    "seq",
    "name",
    "value",
    "unit",
    "raw_value",
    "raw_unit",
    "error",
)


async def readings(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        kid = parse_kid(request.match_info["kid"])
        query = parse_readings_query(request.query)
    except QueryError as exc:
        return bad_request(exc)
    device = await ctx.db.run(device_store.get_device, kid)
    if device is None:
        return web.json_response({"error": "no such device here (see /api/devices)"}, status=404)
    rows, truncated = await ctx.db.run(views.readings_between, kid, query.start, query.end, query.limit)
    records = [reading_json(r) for r in rows]
    if query.format == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in records:
            writer.writerow([r["time"], iso(r["time"]), *(csv_cell(r[c]) for c in CSV_COLUMNS[2:])])
        headers = {"Content-Disposition": f'attachment; filename="{kid.hex()}-readings.csv"'}
        if truncated:
            headers["X-Pinseal-Truncated"] = "1"  # older readings in the range left out: narrow it
        return web.Response(text=text.getvalue(), content_type="text/csv", charset="utf-8", headers=headers)
    return web.json_response(
        {
            "kid": kid.hex(),
            "label": device.label,
            "from": query.start,
            "to": query.end,
            "limit": query.limit,
            "truncated": truncated,  # True: the newest `limit` records of the range; ask a narrower one
            "readings": records,
        }
    )


async def bundles(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        check_known(request.query, ("limit", "kid"))
        limit = parse_limit(request.query, RECENT_DEFAULT, RECENT_MAX)
        kid = parse_kid(request.query["kid"]) if "kid" in request.query else None
    except QueryError as exc:
        return bad_request(exc)
    rows = await ctx.db.run(views.recent_bundles, limit, kid)
    return web.json_response({"bundles": [bundle_json(r) for r in rows]})


def recent_limit(request: web.Request) -> int:
    """`?limit=` of a recent-rows view, its only parameter (QueryError otherwise)."""
    check_known(request.query, ("limit",))
    return parse_limit(request.query, RECENT_DEFAULT, RECENT_MAX)


async def batches(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        limit = recent_limit(request)
    except QueryError as exc:
        return bad_request(exc)
    rows = await ctx.db.run(views.recent_batches, limit)
    return web.json_response({"batches": [batch_json(r) for r in rows]})


async def rejections_view(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        limit = recent_limit(request)
    except QueryError as exc:
        return bad_request(exc)
    return web.json_response(await ctx.db.run(rejections_json, limit))


async def broker_view(request: web.Request) -> web.Response:
    """The live connection to the MQTT broker (pinseal_gateway.broker_link): no broker, no readings."""
    return web.json_response(request.app[CTX_KEY].broker_link.as_status())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/broker", broker_view)
    app.router.add_get("/api/devices", devices)
    app.router.add_get("/api/devices/{kid}/readings", readings)
    app.router.add_get("/api/bundles", bundles)
    app.router.add_get("/api/batches", batches)
    app.router.add_get("/api/rejections", rejections_view)
