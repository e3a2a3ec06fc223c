"""The key under which every HTTP handler finds the running gateway's shared context."""

from __future__ import annotations

from aiohttp import web

from pinseal_gateway.context import GatewayContext

CTX_KEY: web.AppKey[GatewayContext] = web.AppKey("ctx", GatewayContext)
