"""The PinsealAnchor contract: its Solidity source and the committed solc artifact (used without npm)."""
