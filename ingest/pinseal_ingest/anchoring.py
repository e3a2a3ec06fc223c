"""The ingest's anchoring: every interval, the batches stored since the last anchor, sealed into one root
on an EVM chain (pinseal_anchor does the chain and runs the thread; this module is the ingest's part).

One anchorer per network, however many workers and hosts: it runs in the process started by
`pinseal-ingest run` (the supervisor when there are workers), and on PostgreSQL only while it holds a
session advisory lock, so of several hosts configured to anchor, one does and another takes over when that
host stops (its connection, and with it the lock, goes).

Which batches are pending is read from the ingest's own tables, starting at the newest anchored batch's
receive time less WATERMARK_MARGIN_S, through the index on batches.received_at: a seal costs the batches
of one interval, not a scan of every batch ever stored. (A batch's receive time is taken when its
transaction starts, and no transaction lasts an hour.)
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pinseal_ingest import db as ingest_db
from pinseal_ingest.storage import Database

if TYPE_CHECKING:
    from pinseal_anchor.service import AnchoringThread, AnchorSettings

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 600.0
WATERMARK_MARGIN_S = 3600.0
LEADER_LOCK = 0x70696E616E63686F  # pg_advisory_lock key of the one anchorer ("pinancho")
LEAD_RETRY_S = 5.0  # a standby asks this often: one cheap query, and a takeover within seconds


def add_run_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group(
        "anchoring (docs/anchoring.md): --anchor-rpc, --anchor-key, --anchor-chain together"
    )
    group.add_argument("--anchor-rpc", help="JSON-RPC URL of the chain's node")
    group.add_argument("--anchor-key", help="the anchoring key file (0600; `pinseal-ingest anchor keygen`)")
    group.add_argument(
        "--anchor-chain", help="chain id or profile name (base, ethereum, polygon, iotex, peaq, ...)"
    )
    group.add_argument(
        "--anchor-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="seconds between roots (default %(default)s)",
    )
    group.add_argument("--anchor-mode", choices=("calldata", "contract"), default="calldata")
    group.add_argument("--anchor-contract", help="the PinsealAnchor contract (contract mode)")
    group.add_argument("--anchor-confirmations", type=int, help="depth (default: the chain profile's)")


def settings_from_args(args: argparse.Namespace) -> AnchorSettings | None:
    """The anchoring settings, None when not asked for; ValueError for a half-given or bad one."""
    given = [args.anchor_rpc, args.anchor_key, args.anchor_chain]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("anchoring needs --anchor-rpc, --anchor-key and --anchor-chain together")
    from pinseal_anchor.service import AnchorSettings, chain_id_of

    return AnchorSettings(
        rpc=args.anchor_rpc,
        key=Path(args.anchor_key),
        chain_id=chain_id_of(args.anchor_chain),
        interval_s=args.anchor_interval,
        mode=args.anchor_mode,
        contract=args.anchor_contract,
        confirmations=args.anchor_confirmations,
    )


def unanchored_batches(database: Database) -> Callable[[int], list[bytes]]:
    """`pending_leaves(limit)`: stored batch hashes without an anchor, oldest first, from the watermark."""

    def pending_leaves(limit: int) -> list[bytes]:
        newest = database.scalar(
            "SELECT MAX(b.received_at) FROM batches b JOIN anchor_leaves a ON a.leaf = b.hash"
            " WHERE a.anchor_id = (SELECT MAX(id) FROM anchor_anchors)"
        )
        floor = -1.0 if newest is None else float(newest) - WATERMARK_MARGIN_S
        rows = database.execute(
            "SELECT b.hash FROM batches b WHERE b.received_at >= ? AND NOT EXISTS"
            " (SELECT 1 FROM anchor_leaves a WHERE a.leaf = b.hash) ORDER BY b.received_at, b.hash LIMIT ?",
            (floor, limit),
        )
        return [bytes(row[0]) for row in rows]

    return pending_leaves


def lead(database: Database, stop: threading.Event) -> bool:
    """Wait (until stopped) to be the network's one anchorer; True once this process is."""
    if database.dialect != "postgresql":
        return True  # one SQLite file, one host: its one `run` process anchors
    while not stop.is_set():
        if database.scalar("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK,)):
            log.info("this ingest process anchors for the network")
            return True
        stop.wait(LEAD_RETRY_S)
    return False


def start(target: str, settings: AnchorSettings) -> AnchoringThread:
    """The ingest's anchoring thread, running."""
    from pinseal_anchor.service import AnchoringThread

    return AnchoringThread(
        settings,
        lambda: ingest_db.connect(target),  # type: ignore[arg-type, return-value]
        unanchored_batches,  # type: ignore[arg-type]
        lead=lead,  # type: ignore[arg-type]
        close=lambda database: database.close(),  # type: ignore[attr-defined]
    ).start()
