"""pinseal_anchor: batch roots sealed into one Merkle root, anchored on an EVM chain (docs/anchoring.md).

py_ecc (imported by eth_account and web3) raises the interpreter's recursion limit to 100,000 when it is
imported. Every process that anchors or verifies also decodes untrusted input (the ingest's HTTP bodies,
registry files), and with that limit a deeply nested document overflows the C stack (a segmentation
fault) instead of raising RecursionError. So it is imported here first, and the limit put back.
"""

import sys as _sys

_limit = _sys.getrecursionlimit()
try:
    import py_ecc  # noqa: F401
except ImportError:  # the anchor extra not installed: the modules that need it say so themselves
    pass
finally:
    _sys.setrecursionlimit(_limit)
