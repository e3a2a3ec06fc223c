"""Anchoring against a real Hardhat node: both modes end to end, proofs verified through the CLI, forged
and tampered proofs rejected, a reorg re-anchored, a stuck transaction replaced, a taken nonce recovered, and
the gas an anchor costs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from anchor_fixtures import Fleet, GatewayBatch, confirm_all, make_anchorer, public_hex
from eth_account import Account

from pinseal_anchor import evm, outbox
from pinseal_anchor.anchorer import Anchorer
from pinseal_anchor.cli import add_commands
from pinseal_anchor.client import ChainClient
from pinseal_anchor.cost import daily_cost, measure_anchor_gas
from pinseal_anchor.proof import anchor_proof, anchored_proof
from pinseal_anchor.verify import ProofError, verify_anchored_proof
from pinseal_devkit.hardhat import HardhatNode

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="pinseal-ingest")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def proof_of(anchorer: Anchorer, gb: GatewayBatch, index: int) -> dict[str, Any]:
    part = anchor_proof(anchorer.db, gb.hash)
    assert part is not None
    return anchored_proof(gb.proof(index), gb.bundles[index], part)


def fleet_batches(n: int = 3) -> tuple[Fleet, list[GatewayBatch]]:
    fleet = Fleet()
    return fleet, [fleet.make_batch() for _ in range(n)]


@pytest.mark.parametrize("mode", ["calldata", "contract"])
def test_anchor_and_verify_end_to_end(
    chain: HardhatNode, tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = None
    if mode == "contract":  # deployed through the CLI, from a key made by the CLI
        key = tmp_path / "deployer" / "key"
        assert run_cli("anchor", "keygen", "--key", str(key)) == 0
        chain.fund(capsys.readouterr().out.strip())
        assert run_cli("anchor", "deploy", "--rpc", chain.url, "--key", str(key), "--chain-id", "31337") == 0
        contract = capsys.readouterr().out.strip()
        assert ChainClient(chain.url).w3.eth.get_code(contract) == bytes.fromhex(
            evm.artifact()["deployedBytecode"][2:]
        )
        assert run_cli("anchor", "deploy", "--rpc", chain.url, "--key", str(key), "--chain-id", "1") == 1
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund, mode=mode, contract=contract)
    fleet, batches = fleet_batches()
    source.add(*(b.hash for b in batches))
    confirm_all(anchorer, chain)
    (anchor,) = outbox.in_state(anchorer.db, "confirmed")
    assert anchor.leaf_count == 3 and anchor.mode == mode

    address = anchorer.account.address
    doc = proof_of(anchorer, batches[1], 4)
    device = fleet.devices[4 % 3].key
    result = verify_anchored_proof(
        doc,
        rpc_url=chain.url,
        anchor_address=address.lower(),
        contract=contract,
        device_key=device.public_key(),
        gateway_key=fleet.gateway.public_key(),
    )
    assert result.block_number == anchor.block_number and result.gateway_signature_checked
    assert result.confirmations >= 2 and result.block_timestamp > 0

    path = tmp_path / "proof.json"
    path.write_text(json.dumps(doc))
    base = ["verify-proof", str(path), "--rpc", chain.url, "--anchor-address", address]
    base += ["--device-key", public_hex(device)] + (["--contract", contract] if contract else [])
    assert run_cli(*base) == 0
    assert run_cli(*base, "--gateway-key", public_hex(fleet.gateway), "--json") == 0
    # the device key of another device: the bundle's signature does not hold
    other = ["--device-key", public_hex(fleet.devices[(4 + 1) % 3].key)]
    assert (
        run_cli(*base[: -2 - (2 if contract else 0)], *other, *(["--contract", contract] if contract else []))
        == 1
    )
    # depth the node has not reached yet; another chain than the one required
    assert run_cli(*base, "--confirmations", "1000") == 1
    assert run_cli(*base, "--chain-id", "31337") == 0 and run_cli(*base, "--chain-id", "8453") == 1
    if contract:  # without the contract to trust, a contract anchor cannot be checked
        assert run_cli(*base[:-2]) == 1


def test_forged_root_by_another_address_is_rejected(chain: HardhatNode, tmp_path: Path) -> None:
    """An attacker anchors a root of a forged batch from its own key, writing a perfect-looking document;
    against the real anchoring address it fails, whatever the document says."""
    honest, _ = make_anchorer(tmp_path / "honest", chain.url, fund=chain.fund)
    forger, source = make_anchorer(tmp_path / "forger", chain.url, fund=chain.fund)
    fleet, batches = fleet_batches(2)
    source.add(*(b.hash for b in batches))
    confirm_all(forger, chain)
    doc = proof_of(forger, batches[0], 0)
    key = fleet.devices[0].key.public_key()
    # the forger's own address verifies (it did anchor it) ...
    verify_anchored_proof(doc, rpc_url=chain.url, anchor_address=forger.account.address, device_key=key)
    # ... the network's does not
    with pytest.raises(ProofError, match=r"sent by .*not the anchoring address"):
        verify_anchored_proof(doc, rpc_url=chain.url, anchor_address=honest.account.address, device_key=key)


def test_tampered_documents_are_rejected(chain: HardhatNode, tmp_path: Path) -> None:
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund)
    fleet, batches = fleet_batches(3)
    source.add(*(b.hash for b in batches))
    confirm_all(anchorer, chain)
    doc = proof_of(anchorer, batches[2], 1)
    key = fleet.devices[1].key.public_key()
    address = anchorer.account.address

    def check(mutated: dict[str, Any], match: str) -> None:
        with pytest.raises(ProofError, match=match):
            verify_anchored_proof(mutated, rpc_url=chain.url, anchor_address=address, device_key=key)

    def with_anchor(**fields: Any) -> dict[str, Any]:
        return {**doc, "anchor": {**doc["anchor"], **fields}}

    flipped = doc["anchor"]["path"][0][:-1] + ("0" if doc["anchor"]["path"][0][-1] != "0" else "1")
    check(with_anchor(path=[flipped, *doc["anchor"]["path"][1:]]), "path does not lead to the anchor root")
    check(with_anchor(leaf_index=0), "path does not lead to the anchor root")
    check(with_anchor(root="00" * 32), "path does not lead to the anchor root")
    check(with_anchor(block_number=1), "not the document's block")
    check(with_anchor(tx_hash="11" * 32), "not in a block")
    check(with_anchor(chain_id=1), "claims chain 1")
    check(with_anchor(mode="contract"), "give the contract")
    other_batch = {**doc["batch"], "header": batches[0].header.hex()}
    check({**doc, "batch": other_batch}, "path does not lead")
    check({**doc, "bundle": batches[2].bundles[2].hex()}, "bundle")
    # a contract anchor claimed for a calldata transaction: the contract is no log of it
    with pytest.raises(ProofError, match="called"):
        verify_anchored_proof(
            with_anchor(mode="contract"),
            rpc_url=chain.url,
            anchor_address=address,
            device_key=key,
            contract=Account.create().address,
        )


def test_reorg_below_depth_reanchors(chain: HardhatNode, tmp_path: Path) -> None:
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund, confirmations=3)
    fleet, batches = fleet_batches(2)
    source.add(*(b.hash for b in batches))
    snapshot = chain.snapshot()
    assert anchorer.tick()  # sealed and sent; automine put it in a block
    assert anchorer.tick()  # its receipt seen: 1 deep, not 3
    (sent,) = outbox.in_state(anchorer.db, "sent")
    assert sent.block_hash is not None
    chain.revert(snapshot)  # the block is gone; the chain grows another way
    chain.fund(anchorer.account.address)
    chain.mine(2)
    confirm_all(anchorer, chain)
    (confirmed,) = outbox.in_state(anchorer.db, "confirmed")
    # re-sent as the same signed transaction (its nonce was open again): one root, one mined transaction
    assert confirmed.block_hash != sent.block_hash and confirmed.nonce == sent.nonce
    assert len(outbox.txs_of(anchorer.db, confirmed.id)) == 1
    doc = proof_of(anchorer, batches[0], 0)
    result = verify_anchored_proof(
        doc,
        rpc_url=chain.url,
        anchor_address=anchorer.account.address,
        device_key=fleet.devices[0].key.public_key(),
    )
    assert result.block_hash == confirmed.block_hash


def test_stuck_transaction_is_replaced_with_bumped_fees(chain: HardhatNode, tmp_path: Path) -> None:
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund, confirmations=1, replace_after_s=0)
    _, batches = fleet_batches(1)
    source.add(batches[0].hash)
    chain.automine(False)
    try:
        assert anchorer.tick()  # sent, waits in the mempool
        assert anchorer.tick()  # stuck: replaced
        (anchor,) = outbox.in_state(anchorer.db, "sent")
        first, second = sorted(outbox.txs_of(anchorer.db, anchor.id), key=lambda t: t.sent_at)[-2:]
    finally:
        chain.automine(True)
    assert first.nonce == second.nonce
    assert second.max_fee * 8 >= first.max_fee * 9 and second.priority_fee * 8 >= first.priority_fee * 9
    assert len([t for t in chain.mempool() if t["from"].lower() == anchorer.account.address.lower()]) == 1
    chain.mine(1)
    confirm_all(anchorer, chain)
    (done,) = outbox.in_state(anchorer.db, "confirmed")
    assert done.tx_hash == second.tx_hash


def test_replacement_refused_as_underpriced_is_bumped_again(
    chain: HardhatNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that wants a bigger bump than ours (Hardhat asks 10%; here we bump 5%): the refused replacement
    does not wedge the anchor; the next one bumps over it and is taken."""
    monkeypatch.setattr(evm, "FEE_BUMP_NUM", 21)
    monkeypatch.setattr(evm, "FEE_BUMP_DEN", 20)
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund, confirmations=1, replace_after_s=0)
    source.add(fleet_batches(1)[1][0].hash)
    chain.automine(False)
    try:
        assert anchorer.tick()  # sent
        assert anchorer.tick()  # replaced +5%: refused
        (anchor,) = outbox.in_state(anchorer.db, "sent")
        assert "underpriced" in (anchor.last_error or "")
        assert anchorer.tick()  # the original still waits: replaced +5% over the refused one: taken
        txs = outbox.txs_of(anchorer.db, anchor.id)
        assert len(txs) == 3 and len({t.nonce for t in txs}) == 1
        (waiting,) = [t for t in chain.mempool() if t["from"].lower() == anchorer.account.address.lower()]
        assert waiting["hash"] == "0x" + txs[0].tx_hash.hex()
    finally:
        chain.automine(True)
    chain.mine(1)
    confirm_all(anchorer, chain)
    assert outbox.get(anchorer.db, anchor.id).tx_hash == txs[0].tx_hash


def test_nonce_taken_by_another_transaction_is_resent(chain: HardhatNode, tmp_path: Path) -> None:
    """Someone else with the key (an operator's manual transaction) replaces the anchor's in the mempool."""
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund, confirmations=1)
    _, batches = fleet_batches(1)
    source.add(batches[0].hash)
    chain.automine(False)
    try:
        assert anchorer.tick()
        (anchor,) = outbox.in_state(anchorer.db, "sent")
        (ours,) = outbox.txs_of(anchorer.db, anchor.id)
        other = anchorer.account.sign_transaction(
            {
                "type": 2,
                "chainId": 31337,
                "nonce": ours.nonce,
                "to": Account.create().address,
                "value": 1,
                "gas": 21000,
                "maxFeePerGas": ours.max_fee * 3,
                "maxPriorityFeePerGas": ours.priority_fee * 3,
            }
        )
        chain.rpc("eth_sendRawTransaction", "0x" + bytes(other.raw_transaction).hex())
        chain.mine(1)
    finally:
        chain.automine(True)
    confirm_all(anchorer, chain)
    (done,) = outbox.in_state(anchorer.db, "confirmed")
    txs = outbox.txs_of(anchorer.db, done.id)
    assert done.tx_hash == txs[0].tx_hash and txs[0].nonce == ours.nonce + 1


def test_each_leaf_is_anchored_once_across_anchors(chain: HardhatNode, tmp_path: Path) -> None:
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund, confirmations=1)
    fleet, batches = fleet_batches(4)
    source.add(*(b.hash for b in batches[:2]))
    confirm_all(anchorer, chain)
    source.add(*(b.hash for b in batches[2:]))
    confirm_all(anchorer, chain)
    anchors = outbox.in_state(anchorer.db, "confirmed")
    assert [a.leaf_count for a in anchors] == [2, 2]
    assert anchors[0].nonce == 0 and anchors[1].nonce == 1
    for i, gb in enumerate(batches):
        doc = proof_of(anchorer, gb, 0)
        assert doc["anchor"]["leaf_index"] == i % 2
        verify_anchored_proof(
            doc,
            rpc_url=chain.url,
            anchor_address=anchorer.account.address,
            device_key=fleet.devices[0].key.public_key(),
            min_confirmations=1,
        )


def test_anchor_gas_figures(chain: HardhatNode) -> None:
    account = Account.create()
    chain.fund(account.address)
    gas = measure_anchor_gas(chain.url, bytes(account.key))
    print(f"\nanchor gas per transaction: {gas}")
    # calldata: 21,000 + the 36 bytes' floor (EIP-7623, 10 gas per token); contract: + a call and one log
    assert 21_000 < gas["calldata"] < gas["contract"] < 30_000 and gas["deploy"] > 0
    for mode in ("calldata", "contract"):
        print(f"{mode}: one anchor every 10 min = {daily_cost(600, gas[mode])['gas_per_day']} gas a day")
    assert daily_cost(600, gas["calldata"])["anchors_per_day"] == 144
    assert evm.anchor_data("calldata", bytes(32))[:4] == b"PSA1"
