"""HTTP basic auth for a gateway that listens beyond loopback.

On loopback (the default) there is no password: whoever can reach 127.0.0.1 is already on the gateway.
On any other address `http.password_file` is required (config validation refuses the config otherwise),
and the gateway refuses to start when the file is missing, empty or readable by anyone but its owner: a
world-readable dashboard password protects nothing. Every route is behind it (the dashboard, the API,
`/metrics`: Prometheus sends basic auth too). Basic auth sends the password in clear text: on a LAN
you trust, or behind a TLS reverse proxy (docs/gateway.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from pinseal_gateway.config import ConfigError

REALM = 'Basic realm="pinseal gateway", charset="UTF-8"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PasswordFileError(ConfigError):
    """The dashboard's password file cannot be used; the message says what to do."""


def read_password_file(path: Path) -> str:
    """The first line of a 0600 file (owner-only), or PasswordFileError saying how to fix it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PasswordFileError(
            f"http.password_file {path}: {exc.strerror or exc}. Create it: "
            f"openssl rand -base64 18 > {path} && chmod 600 {path}"
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PasswordFileError(
            f"http.password_file {path} is mode {stat.S_IMODE(mode):o}, readable beyond its owner: "
            f"chmod 600 {path}"
        )
    password = text.splitlines()[0].strip() if text.strip() else ""
    if len(password) < 8:
        raise PasswordFileError(
            f"http.password_file {path}: the password (its first line) needs 8 characters or more"
        )
    return password


def basic_auth_middleware(
    username: str, password: str
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware that lets a request through only with this username and password."""
    expected = f"{username}:{password}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        given = b""
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
        if not hmac.compare_digest(given, expected):
            return web.Response(
                status=401, text="pinseal gateway: password required\n", headers={"WWW-Authenticate": REALM}
            )
        return await handler(request)

    return middleware
