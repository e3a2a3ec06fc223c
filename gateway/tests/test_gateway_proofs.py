"""Inclusion proofs: every bundle of a batch provable with the document and the gateway public key only."""

import functools
import json

import host_bundles
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import batcher, proofs
from pinseal_gateway.store.db import Database
from pinseal_protocol import batch, bundle, keys, merkle
from pinseal_protocol.errors import BadProof, RejectedMessage

GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
GATEWAY_KID = keys.key_id(GATEWAY_KEY.public_key())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes([10]) * 32)
DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
T0 = 1_760_000_000

make_bundles = functools.partial(host_bundles.make_bundles, DEVICE_KEY, boot=2)
store_bundles = functools.partial(
    host_bundles.store_bundles, public_key=DEVICE_KEY.public_key(), received_at=T0 + 1.0
)


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "gateway.sqlite")
    yield database
    database.close()


def seal(db: Database) -> None:
    assert db.run_sync(batcher.seal_batch, GATEWAY_KEY, GATEWAY_KID, "bundles", 1000, T0 + 5) is not None


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_every_bundle_of_a_batch_has_a_verifying_proof(db, n):
    raws = make_bundles(n)
    db.run_sync(store_bundles, raws)
    seal(db)
    public = GATEWAY_KEY.public_key()
    for index, raw in enumerate(raws):
        answer = db.run_sync(proofs.proof_for, bundle.bundle_hash(raw))
        assert answer is not None and not proofs.is_pending(answer)
        # JSON-ready: what the CLI prints and HTTP serves is what a third party checks
        doc = json.loads(json.dumps(answer))
        header = batch.verify_proof_document(doc, public, bundle_bytes=raw)
        assert header.batch_no == 0 and header.count == n
        assert doc["leaf_index"] == index and doc["tree_size"] == n
        # and by hand, with the RFC 9162 module alone: leaf = bundle hash, root from the signed header
        path = [bytes.fromhex(h) for h in doc["path"]]
        assert merkle.verify_inclusion(bundle.bundle_hash(raw), index, n, path, header.root)


def test_proofs_in_a_later_batch_name_that_batch(db):
    first, second = make_bundles(3), make_bundles(4, start_seq=50)
    db.run_sync(store_bundles, first)
    seal(db)
    db.run_sync(store_bundles, second)
    seal(db)
    doc = db.run_sync(proofs.proof_for, bundle.bundle_hash(second[2]))
    header = batch.verify_proof_document(json.dumps(doc), GATEWAY_KEY.public_key(), second[2])
    assert header.batch_no == 1 and header.count == 4 and doc["leaf_index"] == 2


def test_unknown_bundle_is_none_and_unbatched_is_pending(db):
    raws = make_bundles(2)
    db.run_sync(store_bundles, raws)
    assert db.run_sync(proofs.proof_for, bytes(32)) is None
    answer = db.run_sync(proofs.proof_for, bundle.bundle_hash(raws[0]))
    assert proofs.is_pending(answer)
    assert answer == {
        "status": "pending",
        "bundle_hash": bundle.bundle_hash(raws[0]).hex(),
        "received_at": T0 + 1.0,
    }
    assert not proofs.is_pending(None)
    seal(db)
    assert not proofs.is_pending(db.run_sync(proofs.proof_for, bundle.bundle_hash(raws[0])))


def test_a_tampered_or_foreign_proof_fails(db):
    raws = make_bundles(7)
    db.run_sync(store_bundles, raws)
    seal(db)
    doc = db.run_sync(proofs.proof_for, bundle.bundle_hash(raws[3]))
    public = GATEWAY_KEY.public_key()

    with pytest.raises(BadProof):
        batch.verify_proof_document({**doc, "leaf_index": 4}, public)
    with pytest.raises(BadProof):
        batch.verify_proof_document({**doc, "bundle_hash": bundle.bundle_hash(raws[4]).hex()}, public)
    with pytest.raises(BadProof):
        batch.verify_proof_document(doc, public, bundle_bytes=raws[4])
    with pytest.raises(RejectedMessage):
        batch.verify_proof_document(doc, OTHER_KEY.public_key())
