"""Deploying the PinsealAnchor contract from the committed artifact (`pinseal-ingest anchor deploy`)."""

from __future__ import annotations

import time

from eth_account.signers.local import LocalAccount

from pinseal_anchor import evm
from pinseal_anchor.client import ChainClient, RpcError


def deploy_contract(client: ChainClient, account: LocalAccount, *, timeout_s: float = 120.0) -> str:
    """Deploy the contract from `account`, wait for its receipt; returns the contract's address."""
    return deploy_contract_gas(client, account, timeout_s=timeout_s)[0]


def deploy_contract_gas(
    client: ChainClient, account: LocalAccount, *, timeout_s: float = 120.0
) -> tuple[str, int]:
    """Deploy the contract; returns its address and the deployment's gas used."""
    chain_id = client.check_chain()
    bytecode = bytes.fromhex(evm.artifact()["bytecode"][2:])
    _, nonce = client.nonces(account.address)
    fees = client.fees()
    tx = {"from": account.address, "data": bytecode, "value": 0, "nonce": nonce, "chainId": chain_id}
    gas = int(
        client._call(
            "eth_estimateGas", client.w3.eth.estimate_gas, {"from": account.address, "data": bytecode}
        )
    )
    tx["gas"] = evm.with_margin(gas)
    if fees.legacy:
        tx["gasPrice"] = fees.max_fee
    else:
        tx.update(type=2, maxFeePerGas=fees.max_fee, maxPriorityFeePerGas=fees.priority_fee)
    signed = account.sign_transaction(tx)
    client.send_raw(bytes(signed.raw_transaction))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = client._call("eth_getTransactionReceipt", client.w3.eth.get_transaction_receipt, signed.hash)
        if found is not None and found.get("contractAddress"):
            if int(found["status"]) != 1:
                raise RpcError(f"the deployment {bytes(signed.hash).hex()} failed")
            return str(found["contractAddress"]), int(found["gasUsed"])
        time.sleep(0.5)
    raise RpcError(f"the deployment {bytes(signed.hash).hex()} was not mined within {timeout_s:.0f} s")
