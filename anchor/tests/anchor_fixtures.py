"""Helpers for the anchoring tests: real signed bundles and gateway batches, an anchorer on a fresh key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_anchor import outbox
from pinseal_anchor.anchorer import Anchorer
from pinseal_anchor.client import ChainClient
from pinseal_anchor.keyfile import generate_key, load_key
from pinseal_anchor.sql import SqliteDatabase
from pinseal_devkit.hardhat import HardhatNode
from pinseal_devkit.simdevice import SimDevice
from pinseal_protocol import batch, keys

T0 = 1_700_000_000


def ed_key(n: int) -> Ed25519PrivateKey:
    return keys.load_private_key(bytes([n]) * 32)


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    return keys.public_key_bytes(key).hex()


@dataclass
class GatewayBatch:
    header: bytes
    bundles: list[bytes]

    @property
    def hash(self) -> bytes:
        return batch.batch_hash(self.header)

    def proof(self, index: int) -> dict[str, Any]:
        return batch.proof_document(self.header, [batch.bundle_hash(b) for b in self.bundles], index)


class Fleet:
    """Devices 1..n (fixed keys) and one gateway (key 100) making a signed batch chain of their bundles."""

    def __init__(self, devices: int = 3) -> None:
        self.devices = [SimDevice(ed_key(i + 1), epoch_s=T0) for i in range(devices)]
        self.gateway = ed_key(100)
        self.batch_no = 0
        self.prev = batch.ZERO_HASH

    def make_batch(self, per_device: int = 2) -> GatewayBatch:
        bundles = [d.seal() for _ in range(per_device) for d in self.devices]
        hashes = [batch.bundle_hash(b) for b in bundles]
        header = batch.sign_header(
            self.gateway,
            batch_no=self.batch_no,
            prev_hash=self.prev,
            root=batch.batch_root(hashes),
            count=len(bundles),
            first_received=T0,
            last_received=T0 + 60,
            time_flags={},
        )
        self.batch_no += 1
        self.prev = batch.batch_hash(header)
        return GatewayBatch(header, bundles)


class LeafQueue:
    """The `source` an ingest gives the anchorer: its stored batch hashes in storage order, minus the
    anchored ones."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.stored: list[bytes] = []

    def add(self, *hashes: bytes) -> None:
        self.stored.extend(hashes)

    def __call__(self, limit: int) -> list[bytes]:
        done = outbox.anchored_already(self.db, self.stored)
        return [h for h in self.stored if h not in done][:limit]


def make_anchorer(
    tmp: Path, node_url: str, *, fund: Any, timeout_s: float = 3.0, db: Any = None, **kwargs: Any
) -> tuple[Anchorer, LeafQueue]:
    """An anchorer on a fresh SQLite outbox (or `db`) and a freshly generated, funded anchoring key."""
    db = SqliteDatabase(tmp / "anchor.db") if db is None else db
    address = generate_key(tmp / "keys" / "anchor.key")
    fund(address)
    source = LeafQueue(db)
    kwargs.setdefault("interval_s", 0)
    kwargs.setdefault("confirmations", 2)
    client = ChainClient(node_url, 31337, timeout_s=timeout_s)
    return Anchorer(db, source, client, load_key(tmp / "keys" / "anchor.key"), **kwargs), source


def confirm_all(anchorer: Anchorer, chain: HardhatNode, rounds: int = 20) -> None:
    """Tick and mine until nothing is pending or in flight (a test's chain mines only when told)."""
    for _ in range(rounds):
        assert anchorer.tick(), anchorer.last_error
        status = anchorer.anchor_status()
        if status.pending == 0 and status.sent == 0:
            return
        chain.mine(1)
    raise AssertionError(f"not confirmed: {anchorer.anchor_status()}")
