"""Every normative vector behaves as it says, and the files are exactly what the generator makes."""

import hashlib
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from vector_check import receive_ack, receive_bundle, receive_reply
from vector_files import VECTORS_DIR, load_vectors

from pinseal_devkit import test_keys
from pinseal_devkit.vectors import writer
from pinseal_devkit.vectors.inputs import readings_from_json, readings_to_json, thp
from pinseal_protocol import ack, bundle, keys, rejection
from pinseal_protocol.bundle import Status
from pinseal_protocol.errors import BY_REASON, RejectedMessage

VECTORS = load_vectors()
ACCEPTED = {name: v for name, v in VECTORS.items() if v["expect"] == "accept"}
REJECTED = {name: v for name, v in VECTORS.items() if v["expect"] != "accept"}


def test_vectors_present() -> None:
    assert len(VECTORS) >= 50
    kinds = {v["kind"] for v in VECTORS.values()}
    assert kinds == {"bundle", "ack", "rejection"}
    # Every reason a bundle or ack can carry on its own (not just in combination) has a vector.
    assert {v["expect"] for v in VECTORS.values()} == {"accept", *BY_REASON}


def test_files_are_what_the_generator_makes() -> None:
    assert writer.generate() == VECTORS, "run `make vectors` (and review the diff)"


def test_cli_writes_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "bundle_stale.json").write_text("{}")
    assert writer.main([str(tmp_path)], echo=lambda _line: None) == 0
    written = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    assert written == {p.name: p.read_bytes() for p in VECTORS_DIR.glob("*.json")}
    assert writer.main([], echo=lambda _line: None) == 2


def test_make_vectors_regenerates_the_committed_tree_byte_for_byte(tmp_path: Path) -> None:
    """What `make vectors` runs, into an empty folder: every generated file, batch/ included, is the
    committed file byte for byte, and nothing is missing or extra (README.md and third_party/ are not
    generated)."""
    subprocess.run(
        [sys.executable, "-m", "pinseal_devkit.vectors", str(tmp_path)], check=True, capture_output=True
    )

    def tree(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*.json")
            if "third_party" not in p.parts
        }

    assert tree(tmp_path) == tree(VECTORS_DIR)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_vector_fields(name: str) -> None:
    vector = ACCEPTED[name]
    expected = vector["input"]
    if vector["kind"] == "rejection":
        notice = receive_reply(vector)
        assert isinstance(notice, rejection.RejectionNotice)
        assert notice.device.hex() == expected["device"]
        assert notice.bundle_hash.hex() == expected["bundle_hash"]
        assert (notice.time, notice.reason, notice.next_seq) == (
            expected["time"],
            expected["reason"],
            expected["next_seq"],
        )
        assert notice.kid.hex() == vector["key_id"]
        return
    if vector["kind"] == "ack":
        got = receive_ack(vector)
        assert got.device.hex() == expected["device"]
        assert got.seq == expected["seq"]
        assert got.bundle_hash.hex() == expected["bundle_hash"]
        assert got.time == expected["time"]
        assert got.kid.hex() == vector["key_id"]
        return
    got = receive_bundle(vector)
    assert got.kid.hex() == vector["key_id"]
    assert got.boot == expected["boot"]
    assert got.seq == expected["seq"]
    assert got.prev.hex() == expected["prev"]
    assert got.status == Status(*expected["status"])
    assert got.time_source == expected["time_source"]
    assert got.readings == readings_from_json(expected["readings"])
    assert readings_to_json(got.readings) == expected["readings"]
    assert got.n_readings == len(expected["readings"])
    assert got.last_seq == expected["seq"] + len(expected["readings"]) - 1
    assert got.bundle_hash.hex() == vector["bundle_hash"]
    assert got.raw.hex() == vector["bundle"]


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_vector_reason(name: str) -> None:
    vector = REJECTED[name]
    expected = BY_REASON[vector["expect"]]
    receive = {"bundle": receive_bundle, "ack": receive_ack, "rejection": receive_reply}[vector["kind"]]
    with pytest.raises(RejectedMessage) as info:
        receive(vector)
    assert type(info.value) is expected, str(info.value)
    assert info.value.reason == vector["expect"]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_bookkeeping(name: str) -> None:
    vector = VECTORS[name]
    message = bytes.fromhex(vector[vector["kind"]])
    assert vector["size"] == len(message)
    assert hashlib.sha256(message).hexdigest() == vector[vector["kind"] + "_hash"]
    public = keys.public_key_bytes(keys.load_private_key(bytes.fromhex(vector["seed"])))
    assert public.hex() == vector["public_key"]
    assert keys.key_id_hex(public) == vector["key_id"]


@pytest.mark.parametrize("name", sorted(n for n, v in VECTORS.items() if v["reproducible"]))
def test_reproducible_vectors_are_what_a_sender_makes(name: str) -> None:
    vector = VECTORS[name]
    seed = keys.load_private_key(bytes.fromhex(vector["seed"]))
    i = vector["input"]
    if vector["kind"] == "bundle":
        made = bundle.seal(
            seed,
            boot=i["boot"],
            seq=i["seq"],
            prev=bytes.fromhex(i["prev"]),
            status=Status(*i["status"]),
            time_source=i["time_source"],
            readings=readings_from_json(i["readings"]),
        )
        assert made.hex() == vector["bundle"]
    elif vector["kind"] == "rejection":
        made = rejection.sign_rejection(
            seed,
            device=bytes.fromhex(i["device"]),
            bundle_hash=bytes.fromhex(i["bundle_hash"]),
            time=i["time"],
            reason=i["reason"],
            next_seq=i["next_seq"],
        )
        assert made.hex() == vector["rejection"]
    else:
        made = ack.sign_ack(
            seed,
            device=bytes.fromhex(i["device"]),
            seq=i["seq"],
            bundle_hash=bytes.fromhex(i["bundle_hash"]),
            time=i["time"],
        )
        assert made.hex() == vector["ack"]


def _independent_verify(message: bytes, public_key_hex: str) -> Any:
    """Verify a pinseal message with plain cbor2 + cryptography, none of pinseal_protocol's code."""
    tag = cbor2.loads(message)
    assert isinstance(tag, cbor2.CBORTag) and tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    assert cbor2.loads(protected)[1] == -8 and unprotected == {}
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(signature, to_be_signed)
    return cbor2.loads(payload)


@pytest.mark.parametrize("name", sorted(n for n, v in ACCEPTED.items()))
def test_accepted_vectors_verify_independently(name: str) -> None:
    vector = ACCEPTED[name]
    message = bytes.fromhex(vector[vector["kind"]])
    payload = _independent_verify(message, vector["public_key"])
    assert payload[1] == 1
    if vector["kind"] == "bundle":
        assert payload[3] == vector["input"]["seq"]
        first = payload[7][0]
        assert first[-3] == vector["input"]["readings"][0]["time"]
        assert cbor2.dumps(payload, canonical=True).hex() == vector["payload"]
    if vector["kind"] == "rejection":
        assert 3 not in payload  # never a receipt to a device that predates rejections
        assert (payload[6], payload[7]) == (vector["input"]["reason"], vector["input"]["next_seq"])
        assert cbor2.dumps(payload, canonical=True).hex() == vector["payload"]


def test_size_budget_in_vectors() -> None:
    one = VECTORS["bundle_one_reading_thp"]["size"]
    two = VECTORS["bundle_two_readings"]["size"]
    sixteen = VECTORS["bundle_sixteen_readings"]["size"]
    thirty_two = VECTORS["bundle_thirty_two_readings"]["size"]
    assert one <= 200
    assert two - one <= 56
    assert thirty_two <= bundle.MAX_SIZE
    assert (sixteen - one) <= 15 * 56


def test_size_budget_sweep() -> None:
    """Worst-case-ish values: big sequence/boot/uptime, 5-byte pressures, 3-byte mantissas."""
    key = keys.load_private_key(test_keys.DEVICE_SEED)
    status = Status(battery_mv=65535, rssi_dbm=-120, uptime_s=2**32 - 1, dropped=65535, reset_cause=255)

    def size(n: int) -> int:
        readings = [thp(2**32 - 1 - 60 * (n - i), -9999, 10000, 110000) for i in range(n)]
        return len(
            bundle.seal(
                key,
                boot=2**32 - 1,
                seq=2**32 - 1,
                prev=bytes(16),
                status=status,
                time_source=1,
                readings=readings,
            )
        )

    sizes = [size(n) for n in range(1, 33)]
    assert sizes[0] <= 200, sizes[0]
    steps = [b - a for a, b in itertools.pairwise(sizes)]
    assert max(steps) <= 56, steps
    assert sizes[-1] <= bundle.MAX_SIZE
