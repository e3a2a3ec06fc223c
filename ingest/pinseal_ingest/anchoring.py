"""The ingest's anchoring: every interval, the batches stored since the last anchor, sealed into one root
on an EVM chain (pinseal_anchor does the chain; this module runs it for the ingest).

One anchorer per network, however many workers and hosts: it runs in the process started by
`pinseal-ingest run` (the supervisor when there are workers), and on PostgreSQL only while it holds a
session advisory lock, so of several hosts configured to anchor, one does and another takes over when that
host stops (its connection, and with it the lock, goes). It has its own database connection and runs in a
supervised thread: a failure is logged, waited out and retried, never a silent stop of anchoring.

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
from dataclasses import dataclass
from pathlib import Path

from pinseal_ingest import db as ingest_db
from pinseal_ingest.storage import Database

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 600.0
WATERMARK_MARGIN_S = 3600.0
LEADER_LOCK = 0x70696E616E63686F  # pg_advisory_lock key of the one anchorer ("pinancho")
RESTART_AFTER_S = 30.0


@dataclass(frozen=True)
class AnchorConfig:
    rpc: str
    key: Path
    chain_id: int
    interval_s: float = DEFAULT_INTERVAL_S
    mode: str = "calldata"
    contract: str | None = None
    confirmations: int | None = None


def add_run_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group(
        "anchoring (docs/anchoring.md): all of --anchor-rpc, --anchor-key and --anchor-chain"
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


def config_from_args(args: argparse.Namespace) -> AnchorConfig | None:
    """The anchoring configuration, None when not asked for; ValueError for a half-given one."""
    given = [args.anchor_rpc, args.anchor_key, args.anchor_chain]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("anchoring needs --anchor-rpc, --anchor-key and --anchor-chain together")
    from pinseal_anchor.chains import profile

    try:
        chain_id = int(args.anchor_chain)
    except ValueError:
        chain_id = profile(args.anchor_chain).chain_id
    if args.anchor_interval <= 0:
        raise ValueError("--anchor-interval must be positive")
    return AnchorConfig(
        rpc=args.anchor_rpc,
        key=Path(args.anchor_key),
        chain_id=chain_id,
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


class AnchorService:
    """The supervised anchoring thread of one ingest process."""

    def __init__(self, target: str, config: AnchorConfig) -> None:
        from pinseal_anchor.keyfile import load_key

        self.target = target
        self.config = config
        self.account = load_key(config.key)  # now: a missing or loose key file stops `run` at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="pinseal-ingest-anchor", daemon=True)
        self.leader = threading.Event()

    def start(self) -> AnchorService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_once()
            except Exception:
                log.exception("anchoring stopped on an error: restarting in %.0f s", RESTART_AFTER_S)
                self.leader.clear()
                self._stop.wait(RESTART_AFTER_S)

    def _run_once(self) -> None:
        from pinseal_anchor.anchorer import Anchorer
        from pinseal_anchor.client import ChainClient

        database = ingest_db.connect(self.target)
        try:
            if not self._lead(database):
                return
            anchorer = Anchorer(
                database,
                unanchored_batches(database),
                ChainClient(self.config.rpc, self.config.chain_id),
                self.account,
                interval_s=self.config.interval_s,
                confirmations=self.config.confirmations,
                mode=self.config.mode,
                contract=self.config.contract,
                poll_s=min(5.0, self.config.interval_s),
            )
            self.leader.set()
            anchorer.run(self._stop)
        finally:
            self.leader.clear()
            database.close()

    def _lead(self, database: Database) -> bool:
        """Wait (until stopped) to be the network's one anchorer; True once this process is."""
        if database.dialect != "postgresql":
            return True  # one SQLite file, one host: its one `run` process anchors
        while not self._stop.is_set():
            if database.scalar("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK,)):
                log.info("this ingest process anchors for the network")
                return True
            self._stop.wait(min(30.0, self.config.interval_s))
        return False
