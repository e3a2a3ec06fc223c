"""The network benchmark's anchoring cost: transactions and gas per day at the anchorer's default interval.

The measurement is the anchoring package's (`pinseal_anchor.cost`: one anchor of each mode sent to a real
Hardhat node, gas read from the receipts); this module starts the node (pinseal_devkit.hardhat, as the
anchoring tests do), funds a fresh account and turns gas per transaction into a day at the interval the
anchorer runs with by default. If the node cannot run here (no npm packages), the result is None with a
note saying why, and the rest of the benchmark stands.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

from pinseal_anchor.anchorer import Anchorer
from pinseal_anchor.cost import daily_cost, measure_anchor_gas
from pinseal_devkit.hardhat import running_node

MODES = ("calldata", "contract")


def default_interval_s() -> float:
    """The anchorer's own default interval (so the figure follows the code)."""
    return float(inspect.signature(Anchorer).parameters["interval_s"].default)


def anchor_cost() -> tuple[dict[str, Any] | None, str]:
    """({"interval_s", "gas_per_tx", mode: daily cost}, note) or (None, why not)."""
    from eth_account import Account

    try:
        with (
            tempfile.TemporaryDirectory(prefix="pinseal-anchor-bench-") as tmp,
            running_node(Path(tmp) / "hardhat.log") as node,
        ):
            account = Account.create()
            node.fund(account.address)
            gas = measure_anchor_gas(node.url, account)
    except (OSError, RuntimeError) as exc:  # no node here: reported, not allowed to sink the benchmark
        return None, f"not measured: {type(exc).__name__}: {exc}"
    interval = default_interval_s()
    result: dict[str, Any] = {"interval_s": interval, "gas_per_tx": gas}
    for mode in MODES:
        result[mode] = daily_cost(interval, gas[mode])
    return result, "measured on a local Hardhat node with pinseal_anchor.cost"
