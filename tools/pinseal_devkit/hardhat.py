"""A real Hardhat 2 node (npm, pinned in package.json) on a free loopback port, for the anchoring tests and
benchmarks (beside postgres.py: the dev kit's private servers).

Started in its own process group (so stop kills the node and any child), with helpers for what the tests do
to a chain: fund an address, mine, snapshot/revert (reorgs), switch automine off (stuck transactions),
SIGSTOP/SIGCONT (an RPC outage) and restart (a new chain under the same chain id 31337).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pinseal_gateway.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
HARDHAT_DIR = ROOT / "anchor" / "hardhat"
HARDHAT_BIN = ROOT / "node_modules" / ".bin" / "hardhat"
CHAIN_ID = 31337


class HardhatNode:
    """`hardhat node` on 127.0.0.1:`port`; its output goes to `log_path`."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> HardhatNode:
        env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "HARDHAT_DISABLE_TELEMETRY": "true"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(HARDHAT_BIN), "node", "--hostname", "127.0.0.1", "--port", str(self.port)],
                cwd=HARDHAT_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"hardhat node exited: {self.log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                if int(self.rpc("eth_chainId", timeout_s=1), 16) == CHAIN_ID:
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hardhat node did not answer on {self.url} within {timeout_s:.0f} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        pgid = process.pid  # start_new_session: the node leads its own group
        if self.paused:
            os.killpg(pgid, signal.SIGCONT)
            self.paused = False
        os.killpg(pgid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            process.wait(5)

    def restart(self) -> None:
        """Stop and start on the same port: a new chain (new genesis, no transactions) with the same id."""
        self.stop()
        self.start()

    def pause(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)
        self.paused = False

    # --- JSON-RPC ----------------------------------------------------------------------------------

    def rpc(self, method: str, *params: Any, timeout_s: float = 10) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(self.url, body, {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def fund(self, address: str, wei: int = 10**20) -> None:
        self.rpc("hardhat_setBalance", address, hex(wei))

    def mine(self, blocks: int = 1) -> None:
        self.rpc("hardhat_mine", hex(blocks))

    def head(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot: str) -> None:
        assert self.rpc("evm_revert", snapshot) is True

    def automine(self, on: bool) -> None:
        self.rpc("evm_setAutomine", on)

    def mempool(self) -> list[dict[str, Any]]:
        block = self.rpc("eth_getBlockByNumber", "pending", True)
        return list(block["transactions"]) if block else []


@contextmanager
def running_node(log_path: Path) -> Iterator[HardhatNode]:
    """A started node for a `with` block (the tests' fixtures), stopped however the block ends; a clear
    error when node_modules lacks Hardhat."""
    if not HARDHAT_BIN.exists():
        raise RuntimeError(f"{HARDHAT_BIN} missing: run `make setup` (npm ci)")
    node = HardhatNode(log_path)
    try:
        yield node.start()
    finally:
        node.stop()
