"""One JSON-RPC client (web3.py) for every EVM chain profile, with errors reduced to two kinds.

Whatever goes wrong talking to the node (refused, timed out, a JSON-RPC error) is an `RpcError`: the
anchorer logs it and retries next tick, the verifier reports it. `WrongChain` is the one that must stop
sending: the RPC serves another chain than the one configured, and a transaction signed for one chain id
must never be broadcast on a node of another (EIP-155 would make it invalid there anyway, but the anchors'
state would then be judged against the wrong chain). Web3's own retries are off: a tick that fails should
fail fast and let the anchorer's backoff decide when to try again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound
from web3.providers.rpc import HTTPProvider

from pinseal_anchor.evm import Fees


class RpcError(Exception):
    """The node could not be reached or answered with an error."""


class WrongChain(RpcError):
    """The RPC serves another chain id than the configured one."""


@dataclass(frozen=True)
class Receipt:
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    status: int
    sender: str
    to: str | None
    gas_used: int
    logs: tuple[tuple[str, tuple[bytes, ...], bytes], ...]  # (address, topics, data)


@dataclass(frozen=True)
class Transaction:
    tx_hash: bytes
    sender: str
    to: str | None
    data: bytes
    nonce: int
    block_number: int | None
    block_hash: bytes | None


SendResult = str
""""sent"; "known" (the node has it already); "nonce_taken" (mined nonce); "underpriced" (another transaction
with its nonce waits in the mempool and the node wants a higher bump to replace it)."""


class ChainClient:
    """The node at `rpc_url`, expected to serve `chain_id` (None: take whatever it serves)."""

    def __init__(self, rpc_url: str, chain_id: int | None = None, *, timeout_s: float = 10.0) -> None:
        self.rpc_url = rpc_url
        provider = HTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
        )
        self.w3 = Web3(provider)
        self.chain_id = chain_id

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (TransactionNotFound, BlockNotFound):
            return None
        except Exception as exc:  # requests' connection errors, timeouts, Web3RPCError, bad JSON
            raise RpcError(f"{what} at {self.rpc_url}: {type(exc).__name__}: {exc}") from exc

    # --- the chain ---------------------------------------------------------------------------------

    def rpc_chain_id(self) -> int:
        return int(self._call("eth_chainId", lambda: self.w3.eth.chain_id))

    def check_chain(self) -> int:
        """The RPC's chain id, which must be the configured one (WrongChain otherwise)."""
        got = self.rpc_chain_id()
        if self.chain_id is not None and got != self.chain_id:
            raise WrongChain(
                f"the RPC at {self.rpc_url} serves chain {got}, not the configured {self.chain_id}"
            )
        return got

    def head(self) -> int:
        return int(self._call("eth_blockNumber", lambda: self.w3.eth.block_number))

    def block(self, number: int | str) -> dict[str, Any] | None:
        return self._call("eth_getBlockByNumber", self.w3.eth.get_block, number)

    def block_hash(self, number: int) -> bytes | None:
        found = self.block(number)
        return None if found is None else bytes(found["hash"])

    def genesis_hash(self) -> bytes:
        found = self.block_hash(0)
        if found is None:
            raise RpcError(f"the RPC at {self.rpc_url} has no block 0")
        return found

    # --- accounts and fees -------------------------------------------------------------------------

    def nonces(self, address: str) -> tuple[int, int]:
        """(mined, pending) transaction counts of an address: its next nonce without/with its mempool."""
        address = to_checksum_address(address)
        latest = self._call("eth_getTransactionCount", self.w3.eth.get_transaction_count, address, "latest")
        pending = self._call("eth_getTransactionCount", self.w3.eth.get_transaction_count, address, "pending")
        return int(latest), int(pending)

    def balance(self, address: str) -> int:
        return int(self._call("eth_getBalance", self.w3.eth.get_balance, to_checksum_address(address)))

    def fees(self) -> Fees:
        """The node's fees now: max fee = 2 x base fee + tip (room for six full blocks of base fee rises)."""
        latest = self.block("latest")
        if latest is None:
            raise RpcError(f"the RPC at {self.rpc_url} has no latest block")
        base = latest.get("baseFeePerGas")
        if base is None:
            price = int(self._call("eth_gasPrice", lambda: self.w3.eth.gas_price))
            return Fees(price, price, legacy=True)
        tip = int(self._call("eth_maxPriorityFeePerGas", lambda: self.w3.eth.max_priority_fee))
        return Fees(2 * int(base) + tip, tip)

    def estimate_gas(self, tx: dict[str, Any]) -> int:
        call = {k: tx[k] for k in ("from", "to", "data", "value")}
        return int(self._call("eth_estimateGas", self.w3.eth.estimate_gas, call))

    # --- transactions ------------------------------------------------------------------------------

    def send_raw(self, raw: bytes) -> SendResult:
        """Broadcast a signed transaction; a node that knows it already or whose nonce is taken is an answer,
        not an error (the caller decides), every other failure an RpcError."""
        try:
            self.w3.eth.send_raw_transaction(bytes(raw))
            return "sent"
        except Exception as exc:
            text = str(exc).lower()
            if "already known" in text or "known transaction" in text or "already imported" in text:
                return "known"
            if "nonce too low" in text or "nonce has already been used" in text:
                return "nonce_taken"
            if "underpriced" in text:
                return "underpriced"
            raise RpcError(f"eth_sendRawTransaction at {self.rpc_url}: {type(exc).__name__}: {exc}") from exc

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        found = self._call("eth_getTransactionReceipt", self.w3.eth.get_transaction_receipt, bytes(tx_hash))
        if found is None or found.get("blockHash") is None:
            return None
        logs = tuple(
            (str(log["address"]), tuple(bytes(t) for t in log["topics"]), bytes(log["data"]))
            for log in found["logs"]
        )
        return Receipt(
            tx_hash=bytes(found["transactionHash"]),
            block_number=int(found["blockNumber"]),
            block_hash=bytes(found["blockHash"]),
            status=int(found["status"]),
            sender=str(found["from"]),
            to=None if found.get("to") is None else str(found["to"]),
            gas_used=int(found["gasUsed"]),
            logs=logs,
        )

    def transaction(self, tx_hash: bytes) -> Transaction | None:
        found = self._call("eth_getTransactionByHash", self.w3.eth.get_transaction, bytes(tx_hash))
        if found is None:
            return None
        block_hash = found.get("blockHash")
        return Transaction(
            tx_hash=bytes(found["hash"]),
            sender=str(found["from"]),
            to=None if found.get("to") is None else str(found["to"]),
            data=bytes(found["input"]),
            nonce=int(found["nonce"]),
            block_number=None if found.get("blockNumber") is None else int(found["blockNumber"]),
            block_hash=None if block_hash is None else bytes(block_hash),
        )
