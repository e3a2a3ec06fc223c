"""Anchoring as a long-lived task of a host program (the network ingest, or a gateway configured to
anchor its own batches): the settings it reads, and a supervised thread that runs the anchorer.

The thread opens its own database connection (connections are not shared between threads), waits until
it may lead (`lead`: the ingest elects one anchorer per network; a gateway always leads), and runs the
anchorer. Whatever ends that run other than a stop (a bug, the database going away) is logged and retried
after RESTART_AFTER_S with a new connection: anchoring never stops silently while its program runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pinseal_anchor.anchorer import Anchorer, LeafSource
from pinseal_anchor.chains import profile
from pinseal_anchor.client import ChainClient
from pinseal_anchor.keyfile import load_key
from pinseal_anchor.sql import Database

log = logging.getLogger("pinseal_anchor.service")

RESTART_AFTER_S = 30.0
MODES = ("calldata", "contract")


@dataclass(frozen=True)
class AnchorSettings:
    """Where and how to anchor; checked when made, so a program refuses a bad configuration at start."""

    rpc: str
    key: Path
    chain_id: int
    interval_s: float = 600.0
    mode: str = "calldata"
    contract: str | None = None
    confirmations: int | None = None

    def __post_init__(self) -> None:
        if not self.rpc.startswith(("http://", "https://")):
            raise ValueError(f"the anchoring RPC is an http(s):// URL, not {self.rpc!r}")
        if self.interval_s <= 0:
            raise ValueError("the anchoring interval must be positive")
        if self.mode not in MODES:
            raise ValueError(f"the anchoring mode is calldata or contract, not {self.mode!r}")
        if self.mode == "contract" and not self.contract:
            raise ValueError("contract mode needs the contract's address")
        if self.confirmations is not None and self.confirmations < 1:
            raise ValueError("confirmations is at least 1")


def chain_id_of(text: str | int) -> int:
    """A chain id from a number or a profile name (`base`, `peaq`, ...); ValueError names the known ones."""
    if isinstance(text, int):
        return text
    return int(text) if text.strip().isdigit() else profile(text.strip()).chain_id


class AnchoringThread:
    """The supervised thread: `start()`, and `stop()` at the program's shutdown."""

    def __init__(
        self,
        settings: AnchorSettings,
        connect: Callable[[], Database],
        leaves: Callable[[Database], LeafSource],
        *,
        lead: Callable[[Database, threading.Event], bool] | None = None,
        close: Callable[[Database], None] | None = None,
    ) -> None:
        self.settings = settings
        self.account = load_key(
            settings.key
        )  # at once: a missing or loose key file stops the program's start
        self._connect = connect
        self._leaves = leaves
        self._lead = lead
        self._close = close
        self._stop = threading.Event()
        self.leading = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="pinseal-anchor", daemon=True)

    def start(self) -> AnchoringThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_once()
            except Exception:
                log.exception("anchoring stopped on an error: starting again in %.0f s", RESTART_AFTER_S)
                self._stop.wait(RESTART_AFTER_S)

    def _run_once(self) -> None:
        database = self._connect()
        try:
            if self._lead is not None and not self._lead(database, self._stop):
                return
            settings = self.settings
            anchorer = Anchorer(
                database,
                self._leaves(database),
                ChainClient(settings.rpc, settings.chain_id),
                self.account,
                interval_s=settings.interval_s,
                confirmations=settings.confirmations,
                mode=settings.mode,
                contract=settings.contract,
                poll_s=min(5.0, settings.interval_s),
            )
            self.leading.set()
            anchorer.run(self._stop)
        finally:
            self.leading.clear()
            if self._close is not None:
                self._close(database)
