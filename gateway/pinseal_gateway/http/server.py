"""The gateway's HTTP face (aiohttp): `/metrics` for Prometheus, `/status` for owners, `/proofs/<hash>`,
the read-only API under `/api/` (`http.api`) and the dashboard at `/` (`http.dashboard`).

Read-only, on loopback by default; beyond loopback every route needs the password (`http.auth`).
"""

from __future__ import annotations

import logging

from aiohttp import web

from pinseal_gateway import proofs
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.http import api, dashboard
from pinseal_gateway.http.auth import basic_auth_middleware, read_password_file
from pinseal_gateway.http.context import CTX_KEY
from pinseal_gateway.http.status import build_status

log = logging.getLogger(__name__)


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
    """Every route; raises `auth.PasswordFileError` when a password is configured but unusable."""
    middlewares = []
    password_path = ctx.config.http_password_path
    if password_path is not None:
        password = read_password_file(password_path)
        middlewares.append(basic_auth_middleware(ctx.config.http.username, password))
    app = web.Application(middlewares=middlewares)
    app[CTX_KEY] = ctx
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/status", _status)
    app.router.add_get("/proofs/{bundle_hash}", _proof)
    api.add_routes(app)
    if ctx.config.http.dashboard:
        dashboard.add_routes(app)
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
    host = ctx.config.http.host
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "dashboard and API on http://%s:%d/ (/api/..., /status, /metrics, /proofs/<bundle-hash>)%s",
        shown,
        port,
        ""
        if ctx.config.http_password_path is None
        else f", password required (user {ctx.config.http.username})",
    )
    return runner, port
