"""The network benchmark's anchoring cost: transactions and gas per day at the anchorer's default interval.

The measurement is the anchoring package's (`pinseal_anchor.cost`: one anchor of each mode sent to a real
Hardhat node, gas read from the receipts); this module only starts the node with the anchoring tests'
harness and asks. Without `pinseal_anchor` (a checkout before anchoring landed) the result is None with
a note saying so, and the rest of the benchmark stands.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "anchor" / "tests" / "hardhat_node.py"
FALLBACK_INTERVAL_S = 600.0


def _harness() -> Any:
    spec = importlib.util.spec_from_file_location("pinseal_bench_hardhat_node", HARNESS)
    if spec is None or spec.loader is None:
        raise ImportError(f"no Hardhat harness at {HARNESS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def default_interval_s() -> float:
    """The anchorer's own default interval (so the figure follows the code)."""
    from pinseal_anchor.anchorer import Anchorer

    default = inspect.signature(Anchorer).parameters.get("interval_s")
    if default is None or default.default is inspect.Parameter.empty:
        return FALLBACK_INTERVAL_S
    return float(default.default)


def anchor_cost() -> tuple[dict[str, Any] | None, str]:
    """({mode: daily cost, "gas_per_tx": ..., "interval_s": ...}, note) or (None, why not)."""
    try:
        from eth_account import Account
        from pinseal_anchor.cost import daily_cost, measure_anchor_gas
    except ImportError as exc:
        return None, f"not measured: pinseal_anchor is not importable here ({exc.name})"
    try:
        harness = _harness()
        with tempfile.TemporaryDirectory(prefix="pinseal-anchor-bench-") as tmp:
            node = harness.HardhatNode(Path(tmp) / "hardhat.log").start()
            try:
                account = Account.create()
                node.fund(account.address)
                gas = measure_anchor_gas(node.url, account)
            finally:
                node.stop()
        interval = default_interval_s()
        result: dict[str, Any] = {"interval_s": interval, "gas_per_tx": gas}
        for mode in ("calldata", "contract"):
            result[mode] = daily_cost(interval, gas[mode])
        return result, "measured on a local Hardhat node (pinseal_anchor.cost)"
    except Exception as exc:  # the anchoring part is reported, not allowed to sink the benchmark
        return None, f"not measured: {type(exc).__name__}: {exc}"
