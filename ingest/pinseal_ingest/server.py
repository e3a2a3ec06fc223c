"""Running the ingest until SIGTERM or SIGINT, then shutting down cleanly.

Clean means: stop accepting connections, let in-flight requests finish (their batches either commit
or roll back, never half), then close the database. A gateway whose request was cut off retries with
the same body, which the idempotent POST turns into "stored" or "duplicate".
"""

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from pinseal_ingest.api import MAX_BODY, create_app
from pinseal_ingest.service import IngestService

log = logging.getLogger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"listen address is HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


async def serve(
    db_path: str | Path,
    host: str,
    port: int,
    *,
    max_body: int = MAX_BODY,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until `stop` is set, or until SIGTERM/SIGINT when no event is given.

    `reuse_port`: one of several worker processes on the same port (SO_REUSEPORT: the kernel spreads
    the connections over them; see workers.py)."""
    service = IngestService(db_path)
    runner = web.AppRunner(create_app(service, max_body=max_body), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        addresses = [f"{a[0]}:{a[1]}" for a in runner.addresses]
        log.info("pinseal-ingest listening on %s, database %s", ", ".join(addresses), service.database)
        if on_ready is not None:
            on_ready(addresses)
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        service.close()
