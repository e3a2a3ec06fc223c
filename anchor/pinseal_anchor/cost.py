"""What anchoring costs: gas per anchor transaction in each mode, measured on a real node, and per day.

`measure_anchor_gas` sends one anchor of each mode (deploying the contract first) and reads the gas used
from the receipts; the benchmark multiplies by the interval with `daily_cost`. Gas is the chain-independent
figure: the price per gas differs by chain and by hour, so it is an argument, not a constant.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from pinseal_anchor import evm
from pinseal_anchor.client import ChainClient, RpcError
from pinseal_anchor.deploy import deploy_contract_gas
from pinseal_anchor.keyfile import load_key


def _account(key: LocalAccount | Path | str | bytes) -> LocalAccount:
    if isinstance(key, LocalAccount):
        return key
    if isinstance(key, bytes):
        return Account.from_key(key)
    if isinstance(key, str) and key.removeprefix("0x").__len__() == 64 and not Path(key).exists():
        return Account.from_key(key)
    return load_key(key)


def _send_and_wait(client: ChainClient, account: LocalAccount, mode: str, contract: str | None) -> int:
    chain_id = client.check_chain()
    root = hashlib.sha256(f"pinseal cost probe {time.time_ns()}".encode()).digest()
    _, nonce = client.nonces(account.address)
    to = evm.anchor_target(mode, account.address, contract)
    tx = evm.transaction(
        chain_id=chain_id,
        nonce=nonce,
        sender=account.address,
        to=to,
        data=evm.anchor_data(mode, root),
        gas=0,
        fees=client.fees(),
    )
    tx["gas"] = evm.with_margin(client.estimate_gas(tx))
    signed = account.sign_transaction(tx)
    client.send_raw(bytes(signed.raw_transaction))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        receipt = client.receipt(bytes(signed.hash))
        if receipt is not None:
            return receipt.gas_used
        time.sleep(0.2)
    raise RpcError(f"the {mode} probe anchor was not mined within 60 s")


def measure_anchor_gas(
    rpc_url: str, key: LocalAccount | Path | str | bytes, *, contract: str | None = None
) -> dict[str, int]:
    """Gas used by one anchor transaction in each mode: {"calldata": g, "contract": g, "deploy": g}.

    `key` is an account, a key file, or a raw private key (funded on the node); the contract is deployed
    for the measurement unless its address is given ("deploy" is then 0).
    """
    client = ChainClient(rpc_url)
    account = _account(key)
    deploy_gas = 0
    if contract is None:
        contract, deploy_gas = deploy_contract_gas(client, account)
    return {
        "calldata": _send_and_wait(client, account, "calldata", None),
        "contract": _send_and_wait(client, account, "contract", contract),
        "deploy": deploy_gas,
    }


def daily_cost(interval_s: float, gas_per_tx: int, gas_price_wei: int | None = None) -> dict[str, Any]:
    """Anchors, gas (and wei, given a price per gas) per day at one anchor every `interval_s` seconds."""
    if interval_s <= 0:
        raise ValueError("the interval is positive")
    per_day = 86_400 / interval_s
    result: dict[str, Any] = {"anchors_per_day": per_day, "gas_per_day": round(per_day * gas_per_tx)}
    if gas_price_wei is not None:
        result["wei_per_day"] = round(per_day * gas_per_tx * gas_price_wei)
    return result
