"""A gateway anchoring its own batches on an EVM chain ([anchor] in the configuration; off by default).

The network's ingest anchors every batch it stores; this is for an owner who wants their own batches on a
chain under their own key, whatever the network does. pinseal_anchor does the work (outbox in the gateway's
own SQLite file, on its own connection; leaves are the gateway's batch hashes in batch order); this module
only turns the [anchor] section into its settings and ties the anchoring thread to the gateway's life.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pinseal_gateway.config import ConfigError, GatewayConfig

if TYPE_CHECKING:
    from pinseal_anchor.service import AnchorSettings
    from pinseal_gateway.context import GatewayContext

log = logging.getLogger(__name__)


def settings(config: GatewayConfig) -> AnchorSettings:
    """The anchoring settings of an enabled [anchor] section; ConfigError when they cannot be used."""
    try:
        from pinseal_anchor.service import AnchorSettings, chain_id_of
    except ImportError as exc:
        raise ConfigError(
            "anchor.enabled needs the anchoring package: pip install 'pinseal[gateway,anchor]'"
        ) from exc
    section = config.anchor
    try:
        return AnchorSettings(
            rpc=section.rpc,
            key=config.data_dir / section.key_file,
            chain_id=chain_id_of(section.chain),
            interval_s=section.interval_s,
            mode=section.mode,
            contract=section.contract or None,
            confirmations=section.confirmations or None,
        )
    except ValueError as exc:
        raise ConfigError(f"[anchor]: {exc}") from exc


async def run_anchoring(ctx: GatewayContext, stop: asyncio.Event) -> None:
    """Anchor until the gateway stops (a background task of the daemon)."""
    from pinseal_anchor import outbox
    from pinseal_anchor.service import AnchoringThread
    from pinseal_anchor.sql import SqliteDatabase

    db_path = ctx.config.db_path
    thread = AnchoringThread(
        settings(ctx.config),
        lambda: SqliteDatabase(db_path),
        lambda db: outbox.unanchored_from(db, "batches", "hash", ["batch_no"]),
        close=lambda db: db.close(),  # type: ignore[attr-defined]
    ).start()
    log.info("anchoring this gateway's batches as %s", thread.account.address)
    try:
        await stop.wait()
    finally:
        await asyncio.get_running_loop().run_in_executor(None, thread.stop)
