"""The ingest's HTTP API (aiohttp): `POST /v1/batches`, lookups, `/metrics`, `/healthz`.

Status codes carry what the gateway's uplink must do next (docs/protocol.md §9.5): 200 drop the batch
from the outbox, 409 `chain_gap` resend from `expected`, other 4xx do not retry the same bytes, 5xx and
timeouts retry. The handlers only translate HTTP; deciding is `accept`'s job.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pinseal_ingest import queries
from pinseal_ingest.accept import Rejection, too_large
from pinseal_ingest.rejections import CLIENT
from pinseal_ingest.service import IngestService
from pinseal_protocol import keys

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
CBOR = "application/cbor"
SERVICE = web.AppKey("service", IngestService)
LIMIT = web.AppKey("max_body", int)


def create_app(service: IngestService, *, max_body: int = MAX_BODY) -> web.Application:
    """The application; `service` stays owned by the caller (closed after the runner's cleanup)."""
    # aiohttp refuses bodies beyond client_max_size itself; the +1 lets our own check answer first.
    app = web.Application(client_max_size=max_body + 1)
    app[SERVICE] = service
    app[LIMIT] = max_body
    app.router.add_post("/v1/batches", post_batch)
    app.router.add_get("/v1/batches/{hash}", get_batch)
    app.router.add_get("/v1/bundles/{hash}", get_bundle)
    app.router.add_get("/v1/bundles/{hash}/proof", get_bundle_proof)
    app.router.add_get("/v1/devices/{kid}/readings", get_device_readings)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_health)
    return app


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


async def post_batch(request: web.Request) -> web.Response:
    service, limit = request.app[SERVICE], request.app[LIMIT]
    CLIENT.set(request.remote)  # whose budget a rejection of this request comes out of (rejections.py)
    if request.content_type != CBOR:
        rejection = Rejection("unsupported_media_type", f"Content-Type must be {CBOR}", status=415)
        await service.reject(rejection)
        return _json(rejection.status, rejection.body())
    if request.content_length is not None and request.content_length > limit:
        rejection = too_large(request.content_length, limit)
        await service.reject(rejection)
        return _json(rejection.status, rejection.body())
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        rejection = too_large(None, limit)
        await service.reject(rejection)
        return _json(rejection.status, rejection.body())
    if len(body) > limit:
        rejection = too_large(len(body), limit)
        await service.reject(rejection)
        return _json(rejection.status, rejection.body())
    try:
        result = await service.submit(body, request.headers.get("Idempotency-Key"))
    except Rejection as rejection:
        log.info("batch rejected: %s", rejection)
        return _json(rejection.status, rejection.body())
    log.info("batch %s %s (%s, %d leaves)", result.batch_hash.hex(), result.status, result.mode, result.count)
    return _json(200, result.body())


def _hash_param(request: web.Request) -> bytes | None:
    text = request.match_info["hash"]
    if len(text) != 64 or text != text.lower():
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


async def _by_hash(
    request: web.Request, find: Callable[[IngestService, bytes], Awaitable[dict[str, Any] | None]]
) -> web.Response:
    """A lookup by the hash in the path: 400 for a malformed one, 404 for an unknown one."""
    key = _hash_param(request)
    if key is None:
        return _json(400, {"reason": "invalid_hash", "detail": "64 lowercase hex digits"})
    found = await find(request.app[SERVICE], key)
    return _json(200, found) if found else _json(404, {"reason": "not_found"})


async def get_batch(request: web.Request) -> web.Response:
    return await _by_hash(request, IngestService.batch_info)


async def get_bundle(request: web.Request) -> web.Response:
    return await _by_hash(request, IngestService.bundle_info)


async def get_bundle_proof(request: web.Request) -> web.Response:
    """The bundle's proof document (queries.bundle_proof): body, batch inclusion proof, anchor."""
    return await _by_hash(request, IngestService.bundle_proof)


def _uint_param(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 20 or not low <= int(text) <= high:
        raise ValueError(f"{name} is an integer from {low} to {high}")
    return int(text)


async def get_device_readings(request: web.Request) -> web.Response:
    """`?after_seq=N&limit=L`: the device's stored bundles after reading N, decoded (queries)."""
    try:
        kid = keys.parse_key_id_hex(request.match_info["kid"])
    except ValueError:
        return _json(400, {"reason": "invalid_kid", "detail": "a key id is 32 lowercase hex digits"})
    try:
        after_seq = _uint_param(request, "after_seq", None, 0, queries.MAX_SEQ)
        limit = _uint_param(request, "limit", queries.DEFAULT_LIMIT, 1, queries.MAX_LIMIT)
    except ValueError as exc:
        return _json(400, {"reason": "invalid_parameter", "detail": str(exc)})
    assert limit is not None
    readings = await request.app[SERVICE].device_readings(kid, after_seq, limit)
    if readings is None:
        return _json(404, {"reason": "unknown_device", "detail": f"device {kid.hex()} is not registered"})
    return _json(200, readings)


async def get_metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_health(request: web.Request) -> web.Response:
    ok = await request.app[SERVICE].healthy()
    return _json(200 if ok else 503, {"status": "ok" if ok else "database unavailable"})
