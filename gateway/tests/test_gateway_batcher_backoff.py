"""Issue 11 #3: a seal that keeps failing must not turn the batcher into a busy loop and a log flood.

The failure is real, not simulated: the context's key id is not its key's, which `seal_batch` refuses
on every try, exactly as a full disk fails every try until space returns.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import batcher
from pinseal_gateway.config import from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.store.db import Database

GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
RUN_S = 1.5
INTERVAL_S = 0.05


def test_a_failing_seal_backs_off_and_is_logged_once(tmp_path: Path, monkeypatch, caplog) -> None:
    db = Database(tmp_path / "gateway.sqlite")
    config = from_mapping({"uplink": {"kind": "none"}})
    config = replace(config, batch=replace(config.batch, interval_s=INTERVAL_S, max_bundles=1000))
    ctx = GatewayContext(config, db, GATEWAY_KEY, bytes(16), Metrics())  # not GATEWAY_KEY's key id
    tries = 0
    real_seal_once = batcher.seal_once

    async def counted(*args: object) -> object:
        nonlocal tries
        tries += 1
        return await real_seal_once(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(batcher, "seal_once", counted)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(batcher.run_batcher(ctx, stop))
        await asyncio.sleep(RUN_S)
        stop.set()
        await asyncio.wait_for(task, 5)

    try:
        with caplog.at_level(logging.INFO):
            asyncio.run(main())
    finally:
        db.close()
    # Once per interval at most (the backoff never waits longer than one interval here), not per spin.
    assert 3 <= tries <= RUN_S / INTERVAL_S + 5
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors[:5]]
    assert "batcher" in errors[0].getMessage()
