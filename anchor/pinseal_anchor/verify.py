"""Checking an anchored proof document end to end: device signature, gateway batch, anchor path, chain.

Nothing in the document is trusted as an anchor: the device's key, the anchoring address and the contract
come from the caller (the `verify-proof` command line), never from the document. A document is only a set
of claims, each checked against those and against the chain the caller's RPC serves; otherwise anyone could
anchor a forged root from their own address and write that address into a document. What a verifier learns
when it holds: this exact bundle, signed by this device, was committed (through a gateway batch and the
ingest's anchor tree) in a transaction the anchoring address sent, in a block that is canonical and at least
N deep; the block's timestamp is the time the reading existed by.

Every failure raises `ProofError` with a message naming what did not hold; the document is untrusted JSON,
so each field is checked for type and size before use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_utils.address import is_address, to_checksum_address

from pinseal_anchor import evm
from pinseal_anchor.chains import default_confirmations
from pinseal_anchor.client import ChainClient, RpcError
from pinseal_anchor.tree import root_from_path
from pinseal_protocol import batch, bundle, cose, dcbor, merkle
from pinseal_protocol.errors import RejectedMessage

MAX_PATH = 64
MAX_INT = 2**63 - 1
MAX_DOCUMENT = 1 << 20


class ProofError(Exception):
    """The proof does not hold (or cannot be checked); the message says what failed."""


@dataclass(frozen=True)
class VerifiedProof:
    """What a verified proof shows."""

    bundle_hash: bytes
    batch_hash: bytes
    anchor_root: bytes
    chain_id: int
    mode: str
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    block_timestamp: int  # the reading existed by this time (the block's, in seconds since the epoch)
    confirmations: int
    gateway_signature_checked: bool
    checks: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "holds": True,
            "bundle_hash": self.bundle_hash.hex(),
            "batch_hash": self.batch_hash.hex(),
            "anchor_root": self.anchor_root.hex(),
            "chain_id": self.chain_id,
            "mode": self.mode,
            "tx_hash": self.tx_hash.hex(),
            "block_number": self.block_number,
            "block_hash": self.block_hash.hex(),
            "block_timestamp": self.block_timestamp,
            "confirmations": self.confirmations,
            "gateway_signature_checked": self.gateway_signature_checked,
            "checks": self.checks,
        }


# --- untrusted fields --------------------------------------------------------------------------------


def _hex(value: Any, name: str, size: int | None = None) -> bytes:
    if isinstance(value, str) and value.startswith("0x"):
        value = value[2:]
    if not isinstance(value, str) or value != value.lower() or len(value) % 2:
        raise ProofError(f"{name} must be lowercase hex")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise ProofError(f"{name} must be lowercase hex") from exc
    if raw.hex() != value or (size is not None and len(raw) != size):
        raise ProofError(f"{name} must be {size} bytes of hex" if size else f"{name} must be hex")
    return raw


def _uint(value: Any, name: str) -> int:
    if not dcbor.is_uint(value) or value > MAX_INT:
        raise ProofError(f"{name} must be an integer in 0..{MAX_INT}")
    return int(value)


def _path(value: Any, name: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > MAX_PATH:
        raise ProofError(f"{name} must be a list of at most {MAX_PATH} hashes")
    return [_hex(h, name, 32) for h in value]


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProofError(f"{name} must be a JSON object")
    return value


def load_document(doc: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(doc, str | bytes):
        if len(doc) > MAX_DOCUMENT:
            raise ProofError(f"the proof document is larger than {MAX_DOCUMENT} bytes")
        try:
            doc = json.loads(doc)
        except (ValueError, RecursionError) as exc:
            raise ProofError(f"the proof document is not JSON ({exc})") from exc
    doc = _object(doc, "the proof document")
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        raise ProofError(f"unsupported proof document version {doc.get('version')!r} (this verifier reads 1)")
    return doc


# --- the off-chain part ------------------------------------------------------------------------------


def _header_fields(header: bytes) -> tuple[bytes, int]:
    """(root, count) of a batch header whose signature is not being checked (no gateway key given): the
    anchor commits to the header's exact bytes, so its fields still bind; only who signed them is
    unchecked."""
    try:
        message = cose.decode_sign1(header)
        fields = bundle.int_fields(dcbor.decode(message.payload))
    except RejectedMessage as exc:
        raise ProofError(f"the batch header is not a valid COSE_Sign1 ({exc})") from exc
    if fields.get(batch.K_VERSION) not in batch.VERSIONS:
        raise ProofError(f"unsupported batch header version {fields.get(batch.K_VERSION)!r}")
    root, count = fields.get(batch.K_ROOT), fields.get(batch.K_COUNT)
    if (
        not isinstance(root, bytes)
        or len(root) != 32
        or not dcbor.is_uint(count)
        or not 1 <= count <= MAX_INT
    ):
        raise ProofError("the batch header lacks a 32-byte root or a count")
    return root, int(count)


def _check_batch(
    batch_doc: Mapping[str, Any], body: bytes, gateway_key: Ed25519PublicKey | None, checks: list[str]
) -> bytes:
    """The bundle's path to the batch header's root; returns the header's bytes."""
    bundle_hash = _hex(batch_doc.get("bundle_hash"), "batch.bundle_hash", 32)
    header = _hex(batch_doc.get("header"), "batch.header")
    if len(header) > batch.MAX_HEADER_SIZE:
        raise ProofError(f"the batch header is larger than {batch.MAX_HEADER_SIZE} bytes")
    if batch.bundle_hash(body) != bundle_hash:
        raise ProofError("the bundle's bytes do not hash to the batch proof's bundle_hash")
    if gateway_key is not None:
        try:
            batch.verify_proof_document(dict(batch_doc), gateway_key, body)
        except RejectedMessage as exc:
            raise ProofError(f"the batch proof does not hold with the gateway key given: {exc}") from exc
        checks.append("batch header signed by the given gateway key; bundle path leads to its root")
        return header
    root, count = _header_fields(header)
    index = _uint(batch_doc.get("leaf_index"), "batch.leaf_index")
    size = _uint(batch_doc.get("tree_size"), "batch.tree_size")
    path = _path(batch_doc.get("path"), "batch.path")
    if size != count:
        raise ProofError(f"batch.tree_size {size} differs from the header's count {count}")
    if not merkle.verify_inclusion_hash(batch.bundle_leaf_hash(bundle_hash), index, size, path, root):
        raise ProofError("the bundle's path does not lead to the batch header's root")
    checks.append(
        "bundle path leads to the batch header's root (gateway signature not checked: no gateway key)"
    )
    return header


# --- the whole proof ---------------------------------------------------------------------------------


def verify_anchored_proof(
    doc: Mapping[str, Any] | str | bytes,
    *,
    rpc_url: str,
    anchor_address: str,
    contract: str | None = None,
    device_key: Ed25519PublicKey,
    gateway_key: Ed25519PublicKey | None = None,
    min_confirmations: int | None = None,
    chain_id: int | None = None,
    client: ChainClient | None = None,
) -> VerifiedProof:
    """Check an anchored proof end to end against the trust anchors given; ProofError names what failed.

    `chain_id`, if given, is the chain the anchor must be on (else the document's, which the RPC must serve).
    The RPC itself is trusted: a node the verifier does not control can answer anything (a fork can even
    impersonate the anchoring address), so it is the verifier's own node or a provider it trusts.
    """
    if not is_address(anchor_address):
        raise ProofError(f"the anchoring address {anchor_address!r} is not an EVM address")
    if contract is not None and not is_address(contract):
        raise ProofError(f"the contract address {contract!r} is not an EVM address")
    checks: list[str] = []
    doc = load_document(doc)
    body = _hex(doc.get("bundle"), "bundle")
    if len(body) > bundle.MAX_SIZE:
        raise ProofError(f"the bundle is larger than {bundle.MAX_SIZE} bytes")
    try:
        bundle.verify_bundle(body, device_key)
    except RejectedMessage as exc:
        raise ProofError(f"the bundle does not verify with the given device key: {exc}") from exc
    checks.append("bundle signed by the given device key")
    header = _check_batch(_object(doc.get("batch"), "batch"), body, gateway_key, checks)
    batch_hash = batch.batch_hash(header)

    part = _object(doc.get("anchor"), "anchor")
    root = _hex(part.get("root"), "anchor.root", 32)
    index = _uint(part.get("leaf_index"), "anchor.leaf_index")
    size = _uint(part.get("tree_size"), "anchor.tree_size")
    path = _path(part.get("path"), "anchor.path")
    if root_from_path(batch_hash, index, size, path) != root:
        raise ProofError("the batch hash's path does not lead to the anchor root")
    checks.append("batch hash's path leads to the anchor root")
    claimed_chain = _uint(part.get("chain_id"), "anchor.chain_id")
    if chain_id is not None and claimed_chain != chain_id:
        raise ProofError(f"the anchor is on chain {claimed_chain}, not the required chain {chain_id}")
    chain_id = claimed_chain
    mode = part.get("mode")
    if mode not in ("calldata", "contract"):
        raise ProofError(f"anchor.mode {mode!r} is neither calldata nor contract")
    tx_hash = _hex(part.get("tx_hash"), "anchor.tx_hash", 32)
    block_number = _uint(part.get("block_number"), "anchor.block_number")
    block_hash = _hex(part.get("block_hash"), "anchor.block_hash", 32)
    if mode == "contract" and contract is None:
        raise ProofError("the anchor was made through a contract: give the contract's address (--contract)")

    wanted = default_confirmations(chain_id) if min_confirmations is None else min_confirmations
    client = client or ChainClient(rpc_url)
    try:
        return _check_chain(
            client,
            anchor_address=anchor_address,
            contract=contract,
            root=root,
            mode=mode,
            chain_id=chain_id,
            tx_hash=tx_hash,
            block_number=block_number,
            block_hash=block_hash,
            wanted=wanted,
            result=VerifiedProof(
                bundle_hash=batch.bundle_hash(body),
                batch_hash=batch_hash,
                anchor_root=root,
                chain_id=chain_id,
                mode=mode,
                tx_hash=tx_hash,
                block_number=block_number,
                block_hash=block_hash,
                block_timestamp=0,
                confirmations=0,
                gateway_signature_checked=gateway_key is not None,
                checks=checks,
            ),
        )
    except RpcError as exc:
        raise ProofError(f"cannot check the chain: {exc}") from exc


def _same(a: str | None, b: str) -> bool:
    return a is not None and is_address(a) and to_checksum_address(a) == to_checksum_address(b)


def _check_chain(
    client: ChainClient,
    *,
    anchor_address: str,
    contract: str | None,
    root: bytes,
    mode: str,
    chain_id: int,
    tx_hash: bytes,
    block_number: int,
    block_hash: bytes,
    wanted: int,
    result: VerifiedProof,
) -> VerifiedProof:
    checks = list(result.checks)
    served = client.check_chain()
    if served != chain_id:
        raise ProofError(f"the anchor claims chain {chain_id}, the RPC serves chain {served}")
    tx = client.transaction(tx_hash)
    receipt = client.receipt(tx_hash)
    if tx is None or receipt is None:
        raise ProofError(f"transaction {tx_hash.hex()} is not in a block on chain {chain_id}")
    if receipt.block_number != block_number or receipt.block_hash != block_hash:
        raise ProofError(
            f"the transaction is in block {receipt.block_number} ({receipt.block_hash.hex()}), "
            f"not the document's block {block_number} ({block_hash.hex()})"
        )
    block = client.block(block_number)
    if block is None or bytes(block["hash"]) != block_hash:
        raise ProofError(f"block {block_number} {block_hash.hex()} is not the canonical block at that height")
    if receipt.status != 1:
        raise ProofError("the anchoring transaction failed (status 0)")
    if not _same(tx.sender, anchor_address):
        raise ProofError(
            f"the transaction was sent by {tx.sender}, not the anchoring address {anchor_address}"
        )
    checks.append("transaction in a canonical block, sent by the anchoring address")
    if mode == "calldata":
        if not _same(tx.to, anchor_address):
            raise ProofError(
                f"a calldata anchor is sent to the anchoring address itself, this one to {tx.to}"
            )
        if tx.data != evm.anchor_data("calldata", root):
            raise ProofError("the transaction's data is not the anchor tag and the anchor root")
        checks.append("transaction data is the anchor tag and the root")
    else:
        assert contract is not None
        if not _same(tx.to, contract):
            raise ProofError(f"the transaction called {tx.to}, not the anchoring contract {contract}")
        topics = (evm.ANCHORED_TOPIC, evm.topic_address(anchor_address), root)
        if not any(_same(address, contract) and tuple(t) == topics for address, t, _ in receipt.logs):
            raise ProofError("the contract logged no Anchored(anchoring address, root) in this transaction")
        checks.append("the contract logged Anchored(anchoring address, root)")
    depth = client.head() - block_number + 1
    if depth < wanted:
        raise ProofError(f"the block is {depth} deep, fewer than the {wanted} confirmations required")
    checks.append(f"{depth} confirmations (>= {wanted})")
    return VerifiedProof(
        **{
            **result.__dict__,
            "block_timestamp": int(block["timestamp"]),
            "confirmations": depth,
            "checks": checks,
        }
    )
