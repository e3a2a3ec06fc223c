"""The anchorer: seals pending leaves into roots, sends them to the chain, and follows them to depth.

Each `tick` runs three steps, each safe to interrupt anywhere (the outbox records every step first):

1. seal: once `interval_s` has passed since the last root, the leaves the caller's `source` reports as not
   yet anchored become one pending anchor (root + leaves, one transaction);
2. confirm: every sent anchor is checked against the chain (see `confirm`); one that needs a new
   transaction goes back to pending;
3. send: every pending anchor gets a signed transaction, recorded before it is broadcast.

Confirm runs before send so that an anchor found reorganised, stuck or dropped is re-sent in the same tick.
An RPC error ends the tick (logged, nothing lost: the outbox is as it was after the last completed step)
and `run` waits with exponential backoff before the next one; a thread running `run` never stalls on a
dead node (web3's HTTP timeout bounds every call).

Nonces: the anchorer never keeps a nonce counter of its own: the chain's pending count is asked before each
new transaction, so other transactions from the same key (a manual one, a second anchorer) do not wedge it.
An anchor that is re-sent reuses the nonce of its last transaction while that nonce is still open, with fees
bumped at least 12.5% (a replacement), so one root never costs two mined transactions; it takes a fresh
nonce when another transaction took that one, or when the chain's count is behind it (a nonce gap: a
restarted node, whose chain has forgotten our earlier transactions).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from pinseal_anchor import evm, outbox
from pinseal_anchor.chains import default_confirmations
from pinseal_anchor.client import ChainClient, RpcError
from pinseal_anchor.outbox import Anchor, SentTx
from pinseal_anchor.sql import Database

log = logging.getLogger("pinseal_anchor.anchorer")

LeafSource = Callable[[int], list[bytes]]
"""`pending_leaves(limit)`: up to `limit` batch hashes not anchored yet, in storage order (the caller's)."""


@dataclass(frozen=True)
class AnchorStatus:
    """For metrics and the CLI."""

    pending: int
    sent: int
    confirmed: int
    oldest_unconfirmed_age_s: float | None
    last_confirmed_block: int | None
    leaves_anchored: int
    last_error: str | None
    consecutive_failures: int


class Anchorer:
    """Anchors the leaves of `source` on the chain `client` serves, signed by `account`."""

    def __init__(
        self,
        db: Database,
        source: LeafSource,
        client: ChainClient,
        account: LocalAccount,
        *,
        interval_s: float = 600.0,
        confirmations: int | None = None,
        mode: str = "calldata",
        contract: str | None = None,
        max_leaves: int = 100_000,
        replace_after_s: float = 180.0,
        max_fee_cap: int | None = None,
        poll_s: float = 5.0,
        max_backoff_s: float = 300.0,
    ) -> None:
        if client.chain_id is None:
            raise ValueError("the anchorer's client needs the configured chain id")
        evm.anchor_target(mode, account.address, contract)  # mode and contract are consistent
        self.db = db
        self.source = source
        self.client = client
        self.account = account
        self.chain_id: int = client.chain_id
        self.interval_s = interval_s
        self.confirmations = default_confirmations(self.chain_id) if confirmations is None else confirmations
        if self.confirmations < 1:
            raise ValueError("confirmations is at least 1 (the block holding the transaction)")
        self.mode = mode
        self.contract = contract
        self.max_leaves = max_leaves
        self.replace_after_s = replace_after_s
        self.max_fee_cap = max_fee_cap
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.last_error: str | None = None
        self.failures = 0
        self._gas: dict[str, int] = {}
        outbox.init_schema(db)
        self._last_seal = outbox.last_sealed_at(db)
        self._backlog = False  # the last seal took `max_leaves`: more are waiting, seal again at once

    # --- the loop ----------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> bool:
        """One round of seal, confirm and send; False (and logged) when it failed and should be retried."""
        try:
            self.seal_due(now)
            self.check_chain()
            self.confirm(now)
            self.send(now)
        except RpcError as exc:
            return self._failed(str(exc))
        except Exception as exc:  # a bug must not stop anchoring for good: log it loudly, retry with backoff
            log.exception("anchoring tick failed")
            return self._failed(f"{type(exc).__name__}: {exc}")
        self.last_error = None
        self.failures = 0
        return True

    def _failed(self, error: str) -> bool:
        self.failures += 1
        self.last_error = error
        log.warning(
            "anchoring tick %d failed, retrying after %.0f s: %s", self.failures, self.next_wait(), error
        )
        return False

    def next_wait(self) -> float:
        """Seconds until the next tick: `poll_s`, doubled per consecutive failure up to `max_backoff_s`."""
        if not self.failures:
            return self.poll_s
        return min(self.max_backoff_s, self.poll_s * 2.0 ** min(self.failures, 20))

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set (for a supervised thread)."""
        log.info(
            "anchoring to chain %d as %s, %s mode, every %.0f s",
            self.chain_id,
            self.account.address,
            self.mode,
            self.interval_s,
        )
        while not stop.is_set():
            self.tick()
            stop.wait(self.next_wait())

    # --- 1. seal -----------------------------------------------------------------------------------

    def seal_due(self, now: float | None = None) -> Anchor | None:
        now = time.time() if now is None else now
        waited = self._last_seal is None or now - self._last_seal >= self.interval_s
        if not waited and not self._backlog:
            return None
        return self.seal(now)

    def seal(self, now: float | None = None) -> Anchor | None:
        """Seal the source's unanchored leaves into one pending anchor now (None if there are none)."""
        now = time.time() if now is None else now
        leaves = self.source(self.max_leaves)
        self._last_seal = now
        self._backlog = len(leaves) >= self.max_leaves
        anchor = outbox.seal(self.db, leaves, now)
        if anchor is not None:
            log.info("sealed anchor %d: %d leaves, root %s", anchor.id, anchor.leaf_count, anchor.root.hex())
        return anchor

    # --- the chain under us ------------------------------------------------------------------------

    def check_chain(self) -> None:
        """The RPC serves the configured chain, and the same chain as before.

        Sent anchors recorded for another chain id go back to pending (the configuration moved to another
        chain).
        A changed genesis block means the node was reset or replaced (a restarted development node is a new
        chain with the same id): its transactions are gone, so every sent anchor goes back to pending.
        """
        self.client.check_chain()
        moved = outbox.unconfirmed_to_pending(
            self.db, "the anchorer moved to another chain", except_chain_id=self.chain_id
        )
        if moved:
            log.warning("%d sent anchors were for another chain id: back to pending", moved)
        genesis = self.client.genesis_hash().hex()
        key = f"genesis:{self.chain_id}"
        known = outbox.get_meta(self.db, key)
        if known != genesis:
            if known is not None:
                reset = outbox.unconfirmed_to_pending(self.db, "the chain was reset (new genesis block)")
                log.warning(
                    "chain %d has a new genesis block: %d sent anchors back to pending", self.chain_id, reset
                )
            outbox.set_meta(self.db, key, genesis)

    # --- 2. confirm --------------------------------------------------------------------------------

    def confirm(self, now: float | None = None) -> None:
        """Follow every sent anchor: confirmed at depth, or back to pending when its transaction is lost."""
        for anchor in outbox.in_state(self.db, "sent"):
            self._confirm_one(anchor, time.time() if now is None else now)

    def _confirm_one(self, anchor: Anchor, now: float) -> None:
        txs = outbox.txs_of(self.db, anchor.id)
        receipt = None
        for tx in txs:  # newest first; after a reorg an earlier one may be the one mined
            receipt = self.client.receipt(tx.tx_hash)
            if receipt is not None:
                break
        if receipt is not None:
            if receipt.status != 1:
                outbox.back_to_pending(
                    self.db, anchor.id, f"transaction {receipt.tx_hash.hex()} failed (status 0)"
                )
                return
            if self.client.block_hash(receipt.block_number) != receipt.block_hash:
                log.info("anchor %d: block %d is being reorganised", anchor.id, receipt.block_number)
                outbox.mark_unmined(self.db, anchor.id)
                return
            outbox.mark_mined(self.db, anchor.id, receipt.tx_hash, receipt.block_number, receipt.block_hash)
            depth = self.client.head() - receipt.block_number + 1
            if depth >= self.confirmations:
                outbox.mark_confirmed(self.db, anchor.id, now)
                log.info(
                    "anchor %d confirmed: tx %s in block %d (%d deep)",
                    anchor.id,
                    receipt.tx_hash.hex(),
                    receipt.block_number,
                    depth,
                )
            return
        if anchor.block_hash is not None:
            log.warning(
                "anchor %d: its block %s was reorganised away; re-sending", anchor.id, anchor.block_hash.hex()
            )
            outbox.mark_unmined(self.db, anchor.id)
        self._not_mined(anchor, txs, now)

    def _not_mined(self, anchor: Anchor, txs: list[SentTx], now: float) -> None:
        """No receipt for any of its transactions: wait, replace, re-broadcast or start afresh."""
        if not txs:
            outbox.back_to_pending(self.db, anchor.id, "no transaction recorded")
            return
        last = txs[0]
        # In the node's mempool: the last one, or an earlier one of the same nonce whose replacement the
        # node refused (it asks a higher bump than ours, or a fee cap held the bump back).
        if any(self.client.transaction(tx.tx_hash) is not None for tx in txs if tx.nonce == last.nonce):
            if now - last.sent_at >= self.replace_after_s:
                outbox.back_to_pending(self.db, anchor.id, f"stuck for {now - last.sent_at:.0f} s: replacing")
            return
        mined, pending = self.client.nonces(self.account.address)
        if mined > last.nonce:
            outbox.back_to_pending(self.db, anchor.id, f"nonce {last.nonce} was taken by another transaction")
        elif last.nonce > pending:
            outbox.back_to_pending(
                self.db, anchor.id, f"nonce gap: the chain is at {pending}, we sent {last.nonce}"
            )
        else:  # lost before it reached the node, or dropped from its mempool: the same bytes again
            self._broadcast(anchor, last, "re-broadcast")

    def _broadcast(self, anchor: Anchor, tx: SentTx, what: str) -> None:
        result = self.client.send_raw(tx.raw)
        log.info(
            "anchor %d: %s %s nonce %d max fee %d (%s)",
            anchor.id,
            what,
            tx.tx_hash.hex(),
            tx.nonce,
            tx.max_fee,
            result,
        )
        if result == "nonce_taken":
            outbox.back_to_pending(self.db, anchor.id, f"nonce {tx.nonce} was taken by another transaction")
        elif result == "underpriced":  # another transaction holds the nonce in the mempool: wait, then bump
            outbox.set_error(self.db, anchor.id, f"the node refused {tx.tx_hash.hex()} as underpriced")

    # --- 3. send -----------------------------------------------------------------------------------

    def send(self, now: float | None = None) -> None:
        """A signed transaction for every pending anchor, recorded before it is broadcast."""
        for anchor in outbox.in_state(self.db, "pending"):
            self._send_one(anchor, time.time() if now is None else now)

    def _send_one(self, anchor: Anchor, now: float) -> None:
        sender = self.account.address
        previous = outbox.txs_of(self.db, anchor.id)
        last = next((tx for tx in previous if tx.chain_id == self.chain_id), None)
        mined, pending = self.client.nonces(sender)
        fees = self.client.fees()
        if last is not None and mined <= last.nonce < pending:
            # its nonce is open and something (likely it) waits in the mempool with it: replace
            nonce = last.nonce
            fees = fees.bumped_over(evm.Fees(last.max_fee, last.priority_fee, fees.legacy))
        elif last is not None and last.nonce == pending:
            nonce = last.nonce  # open and free: the node does not have it (a reorg or a dropped one)
            fees = fees.bumped_over(evm.Fees(last.max_fee, last.priority_fee, fees.legacy))
        else:
            nonce = pending
        capped = fees.capped(self.max_fee_cap)
        if capped != fees:
            log.warning("anchor %d: fee %d capped at %d wei per gas", anchor.id, fees.max_fee, capped.max_fee)
            if last is not None and nonce == last.nonce and capped.max_fee <= last.max_fee:
                outbox.set_error(self.db, anchor.id, "fee cap reached: cannot replace its transaction")
                return
        to = evm.anchor_target(self.mode, sender, self.contract)
        data = evm.anchor_data(self.mode, anchor.root)
        tx = evm.transaction(
            chain_id=self.chain_id, nonce=nonce, sender=sender, to=to, data=data, gas=0, fees=capped
        )
        tx["gas"] = self._gas_for(tx)
        signed = self.account.sign_transaction(tx)
        sent = SentTx(
            tx_hash=bytes(signed.hash),
            anchor_id=anchor.id,
            chain_id=self.chain_id,
            nonce=nonce,
            max_fee=capped.max_fee,
            priority_fee=capped.priority_fee,
            mode=self.mode,
            raw=bytes(signed.raw_transaction),
            sent_at=now,
        )
        outbox.mark_sent(self.db, sent)  # first: a crash after the broadcast still finds it by hash
        self._broadcast(anchor, sent, "sent")

    def _gas_for(self, tx: dict[str, object]) -> int:
        """The gas limit of an anchor transaction: estimated once per mode (every anchor costs the same)."""
        if self.mode not in self._gas:
            self._gas[self.mode] = evm.with_margin(self.client.estimate_gas(tx))
        return self._gas[self.mode]

    # --- status ------------------------------------------------------------------------------------

    def anchor_status(self, now: float | None = None) -> AnchorStatus:
        s = outbox.status(self.db, now)
        return AnchorStatus(
            pending=s.pending,
            sent=s.sent,
            confirmed=s.confirmed,
            oldest_unconfirmed_age_s=s.oldest_unconfirmed_age_s,
            last_confirmed_block=s.last_confirmed_block,
            leaves_anchored=s.leaves_anchored,
            last_error=self.last_error,
            consecutive_failures=self.failures,
        )
