"""pinseal_anchor: batch roots sealed into one Merkle root, anchored on an EVM chain (docs/anchoring.md)."""
