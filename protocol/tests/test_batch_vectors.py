"""The batch vectors (protocol/vectors/batch/): both header versions, both modes, each defect's reason."""

import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from vector_files import VECTORS_DIR

from pinseal_devkit.vectors.batch_cases import batch_vectors, flags_from_json
from pinseal_devkit.vectors.writer import main as write_vectors
from pinseal_protocol import batch, bundle, keys
from pinseal_protocol.errors import RejectedMessage

BATCH_DIR = VECTORS_DIR / "batch"
VECTORS = {p.stem: json.loads(p.read_text()) for p in sorted(BATCH_DIR.glob("batch_*.json"))}
ACCEPTED = sorted(n for n, v in VECTORS.items() if v["expect"] == "accept")
REJECTED = sorted(n for n, v in VECTORS.items() if v["expect"] != "accept")


def receive(vector: dict[str, Any]) -> tuple[batch.BatchHeader, list[bytes], dict[int, str]]:
    """What a receiver does with the uplink: decode, verify the header, check leaves, flags, bundles."""
    gateway = keys.load_public_key(bytes.fromhex(vector["public_key"]))
    device = keys.load_public_key(bytes.fromhex(vector["device"]["public_key"]))
    uplink = batch.decode_uplink(bytes.fromhex(vector["uplink"]))
    header = batch.verify_header(uplink.header, gateway)
    leaves = batch.check_leaves(header, uplink)
    flags = batch.check_time_flags(header, uplink)
    for raw in uplink.bundles or ():
        bundle.verify_bundle(raw, device)
    return header, leaves, flags


def test_both_versions_and_modes_are_covered() -> None:
    accepted = {(VECTORS[n]["input"]["version"], VECTORS[n]["input"]["mode"]) for n in ACCEPTED}
    assert accepted == {(1, "bundles"), (1, "proofs"), (2, "bundles"), (2, "proofs")}
    assert {VECTORS[n]["expect"] for n in REJECTED} == {"bad_proof", "invalid_payload", "unsupported_version"}


def test_files_are_what_the_generator_makes(tmp_path: Path) -> None:
    assert batch_vectors() == VECTORS, "run `make vectors` (and review the diff)"
    assert write_vectors([str(tmp_path)], echo=lambda _line: None) == 0
    written = {p.name: p.read_bytes() for p in (tmp_path / "batch").glob("*.json")}
    assert written == {p.name: p.read_bytes() for p in BATCH_DIR.glob("*.json")}


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_batch_vectors(name: str) -> None:
    vector = VECTORS[name]
    i = vector["input"]
    header, leaves, flags = receive(vector)
    assert header.version == i["version"] and header.batch_hash.hex() == vector["batch_hash"]
    assert (header.batch_no, header.first_received, header.last_received) == (
        i["batch_no"],
        i["first_received"],
        i["last_received"],
    )
    assert leaves == [hashlib.sha256(bytes.fromhex(b)).digest() for b in i["bundles"]]
    assert header.root.hex() == vector["root"]
    assert flags == (flags_from_json(i["time_flags"]) or {})


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_batch_vectors(name: str) -> None:
    vector = VECTORS[name]
    with pytest.raises(RejectedMessage) as info:
        receive(vector)
    assert info.value.reason == vector["expect"], str(info.value)


@pytest.mark.parametrize("name", sorted(n for n, v in VECTORS.items() if v["reproducible"]))
def test_reproducible_batch_vectors_are_what_a_gateway_makes(name: str) -> None:
    vector = VECTORS[name]
    i = vector["input"]
    bundles = [bytes.fromhex(b) for b in i["bundles"]]
    flags = flags_from_json(i["time_flags"])
    header = batch.sign_header(
        keys.load_private_key(bytes.fromhex(vector["seed"])),
        batch_no=i["batch_no"],
        prev_hash=bytes.fromhex(i["prev"]),
        root=batch.batch_root([batch.bundle_hash(b) for b in bundles]),
        count=len(bundles),
        first_received=i["first_received"],
        last_received=i["last_received"],
        time_flags=flags,
    )
    assert header.hex() == vector["header"]
    assert batch.build_uplink(header, bundles, i["mode"], flags).hex() == vector["uplink"]


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_batch_vectors_verify_independently(name: str) -> None:
    """With plain cbor2 + cryptography: the header signature, and for version 2 the signed flags hash."""
    vector = VECTORS[name]
    uplink = cbor2.loads(bytes.fromhex(vector["uplink"]))
    tag = cbor2.loads(uplink[1])
    protected, _, payload, signature = tag.value
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(vector["public_key"])).verify(signature, to_be_signed)
    fields = cbor2.loads(payload)
    assert fields[1] == vector["input"]["version"]
    if fields[1] == 2:
        assert fields[8] == hashlib.sha256(cbor2.dumps(uplink[4], canonical=True)).digest()
        assert fields[8].hex() == vector["time_flags_hash"]
    else:
        assert 8 not in fields and 4 not in uplink
