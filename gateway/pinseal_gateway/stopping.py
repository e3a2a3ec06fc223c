"""Waiting that ends early when the daemon stops: every background task's idle time goes through here,
so SIGTERM never waits out a batch interval, a backoff or a silence-check period."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; return True as soon as `stop` is set (False when the time ran out)."""
    if seconds <= 0:
        await asyncio.sleep(0)  # still let other tasks run
        return stop.is_set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()
