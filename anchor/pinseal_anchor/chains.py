"""The EVM chains an anchor can go to, each with the confirmation depth after which it counts as final.

One client (web3.py over JSON-RPC) serves all of them: they differ only in chain id, block time and how deep
a block must be before it will not be reorganised away. The depth is what the anchorer waits for before it
calls an anchor confirmed, and what `verify-proof` requires by default; a deployment can override it
(`Anchorer(confirmations=...)`, `verify-proof --confirmations N`).

Why each depth (blocks, not seconds: the chain's own block count is what a receipt and a verifier see):

- ethereum (1), sepolia: 64. Proof-of-stake finalises a block two epochs (2 x 32 slots of 12 s) after it;
  64 blocks, about 13 minutes, is that finality. Shallower reorgs of 1-2 blocks do happen.
- base (8453), base-sepolia: 300. An OP Stack rollup: the sequencer's 2 s blocks are final only once their
  batch is posted to Ethereum, which happens every few minutes; 300 blocks (10 minutes) is past that.
- polygon (137), amoy: 256. Polygon PoS now finalises through Heimdall milestones within seconds, but it has
  had reorgs of up to 157 blocks (February 2023); 256 blocks of 2 s, about 9 minutes, stays clear of those.
- iotex (4689): 3. Roll-DPoS commits each 5 s block by BFT consensus, so a produced block is final; 3 covers
  a lagging RPC node behind a load balancer.
- peaq (3338): 10. A Polkadot parachain: its 6 s blocks are final once the relay chain's GRANDPA finalises
  them, typically within a minute (10 blocks).
- hardhat (31337): 2. The tests' local node; small so that a test can reorganise below it quickly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChainProfile:
    """A chain's id, its default confirmation depth and its block time (for the cost and latency figures)."""

    name: str
    chain_id: int
    confirmations: int
    block_time_s: float
    testnet: bool = False


PROFILES: tuple[ChainProfile, ...] = (
    ChainProfile("ethereum", 1, 64, 12.0),
    ChainProfile("base", 8453, 300, 2.0),
    ChainProfile("polygon", 137, 256, 2.0),
    ChainProfile("iotex", 4689, 3, 5.0),
    ChainProfile("peaq", 3338, 10, 6.0),
    ChainProfile("sepolia", 11155111, 64, 12.0, testnet=True),
    ChainProfile("base-sepolia", 84532, 300, 2.0, testnet=True),
    ChainProfile("amoy", 80002, 256, 2.0, testnet=True),
    ChainProfile("hardhat", 31337, 2, 1.0, testnet=True),
)

BY_NAME = {p.name: p for p in PROFILES}
BY_ID = {p.chain_id: p for p in PROFILES}

DEFAULT_UNKNOWN_CONFIRMATIONS = 64
"""For a chain without a profile: Ethereum's finality depth, the cautious choice."""


def profile(name_or_id: str | int) -> ChainProfile:
    """The profile of a chain by name (`"base"`) or chain id (`8453`); ValueError names the known ones."""
    found = BY_ID.get(name_or_id) if isinstance(name_or_id, int) else BY_NAME.get(name_or_id)
    if found is None:
        known = ", ".join(f"{p.name} ({p.chain_id})" for p in PROFILES)
        raise ValueError(f"unknown chain {name_or_id!r}: known are {known}")
    return found


def default_confirmations(chain_id: int) -> int:
    """The profile's confirmation depth for this chain id, or Ethereum's for an unknown chain."""
    known = BY_ID.get(chain_id)
    return known.confirmations if known else DEFAULT_UNKNOWN_CONFIRMATIONS
