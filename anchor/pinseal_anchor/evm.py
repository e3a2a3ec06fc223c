"""What an anchor transaction is, in either mode, and how its fees are chosen and bumped.

- calldata (the default): an EIP-1559 transaction from the anchoring address to itself, value 0, whose data
  is the 4-byte tag `PSA1` and the 32-byte root. No contract to deploy or trust; the cheapest form (21,000
  gas plus the calldata's); a verifier checks sender, recipient and data of the one transaction it is given.
  Its drawback: nothing indexes it, so finding all anchors of an address needs the anchorer's own records.
- contract: a call of `PinsealAnchor.anchor(root)`, which emits `Anchored(by, root)` and stores nothing:
  a little more gas (the call and one log), a one-time deployment, but every anchor of an address is
  findable with one eth_getLogs filter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from pinseal_anchor.outbox import MODES

TAG = b"PSA1"
"""Calldata mode: the data is TAG + root (36 bytes): an anchor is recognisable among a key's transactions."""

ANCHOR_SELECTOR = function_signature_to_4byte_selector("anchor(bytes32)")
ANCHORED_TOPIC = keccak(text="Anchored(address,bytes32)")
FEE_BUMP_NUM, FEE_BUMP_DEN = 9, 8  # +12.5%: what geth's mempool requires of a replacement (others ask 10%)
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 6, 5  # +20% over the node's estimate; unused gas is not charged


@cache
def artifact() -> dict[str, Any]:
    """The committed solc artifact of PinsealAnchor (abi, bytecode, solc version, source sha256)."""
    text = resources.files("pinseal_anchor.contract").joinpath("PinsealAnchor.json").read_text("utf-8")
    return dict(json.loads(text))


def anchor_data(mode: str, root: bytes) -> bytes:
    """The transaction data that anchors `root` in `mode`."""
    if len(root) != 32:
        raise ValueError("an anchor root is 32 bytes")
    if mode == "calldata":
        return TAG + bytes(root)
    if mode == "contract":
        return ANCHOR_SELECTOR + bytes(root)
    raise ValueError(f"mode is one of {MODES}, not {mode!r}")


def anchor_target(mode: str, sender: str, contract: str | None) -> str:
    """Where an anchor transaction goes: the sender itself (calldata) or the contract."""
    if mode == "calldata":
        return to_checksum_address(sender)
    if mode == "contract":
        if not contract:
            raise ValueError("contract mode needs the contract's address")
        return to_checksum_address(contract)
    raise ValueError(f"mode is one of {MODES}, not {mode!r}")


def topic_address(address: str) -> bytes:
    """An address as an indexed event topic: 12 zero bytes and the 20 address bytes."""
    return bytes(12) + bytes.fromhex(to_checksum_address(address)[2:])


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fee caps in wei; `legacy` for a chain without a base fee (then max_fee is the gas price)."""

    max_fee: int
    priority_fee: int
    legacy: bool = False

    def bumped_over(self, old: Fees) -> Fees:
        """Fees that replace a transaction with `old` fees: each at least 12.5% above it, and no lower than
        these (the node's current) fees."""
        priority = max(self.priority_fee, old.priority_fee * FEE_BUMP_NUM // FEE_BUMP_DEN + 1)
        max_fee = max(self.max_fee, old.max_fee * FEE_BUMP_NUM // FEE_BUMP_DEN + 1, priority)
        return Fees(max_fee, priority, self.legacy)

    def capped(self, cap: int | None) -> Fees:
        if cap is None or self.max_fee <= cap:
            return self
        return Fees(cap, min(self.priority_fee, cap), self.legacy)


def transaction(
    *, chain_id: int, nonce: int, sender: str, to: str, data: bytes, gas: int, fees: Fees
) -> dict[str, Any]:
    """The unsigned transaction (type 2, or type 0 on a chain without EIP-1559)."""
    tx: dict[str, Any] = {
        "chainId": chain_id,
        "nonce": nonce,
        "from": to_checksum_address(sender),
        "to": to_checksum_address(to),
        "value": 0,
        "data": bytes(data),
        "gas": gas,
    }
    if fees.legacy:
        tx["gasPrice"] = fees.max_fee
    else:
        tx["type"] = 2
        tx["maxFeePerGas"] = fees.max_fee
        tx["maxPriorityFeePerGas"] = fees.priority_fee
    return tx


def with_margin(gas: int) -> int:
    return gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN
