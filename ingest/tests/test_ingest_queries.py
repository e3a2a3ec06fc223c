"""`GET /v1/devices/{kid}/readings` and `GET /v1/bundles/{hash}/proof` on real signed batches, both
engines; the proof verifies with the gateway's key alone."""

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from ingest_fixtures import Gateway, IngestServer, key, register, sim_device

from pinseal_devkit.simdevice import SimDevice, thp_reading
from pinseal_ingest import db, queries, store
from pinseal_protocol import batch, keys


@dataclass
class Env:
    db: str
    server: IngestServer
    gateway: Gateway
    device: SimDevice
    other: SimDevice
    sent: list[bytes]  # the device's bundles, in chain order


@pytest.fixture
def env(ingest_target: str) -> Iterator[Env]:
    gateway, device, other = Gateway(key(1)), sim_device(2), sim_device(3)
    device.per_bundle = 3
    register(ingest_target, gateways=[gateway], devices=[device, other])
    sent: list[bytes] = []
    with IngestServer(ingest_target) as server:
        for _ in range(3):  # 3 batches of 2 device bundles (3 readings each) and one of the other device
            mine = [device.seal(), device.seal()]
            sent += mine
            assert server.send(gateway.make([mine[0], other.seal(), mine[1]])).status == 200
        yield Env(ingest_target, server, gateway, device, other, sent)


def test_readings_page_in_seq_order(env: Env) -> None:
    path = f"/v1/devices/{env.device.kid_hex}/readings"
    first = env.server.get(f"{path}?limit=4")
    assert first.status == 200
    page = first.body
    assert page["device"] == env.device.kid_hex
    assert [b["seq"] for b in page["bundles"]] == [0, 3, 6, 9]
    assert page["next_after_seq"] == 11
    rest = env.server.get(f"{path}?limit=4&after_seq={page['next_after_seq']}").body
    assert [b["seq"] for b in rest["bundles"]] == [12, 15] and rest["next_after_seq"] is None
    assert env.server.get(f"{path}?after_seq=17").body == {
        "device": env.device.kid_hex,
        "bundles": [],
        "next_after_seq": None,
    }
    everything = env.server.get(path).body["bundles"]  # the default limit (100) holds them all
    assert [b["bundle_hash"] for b in everything] == [batch.bundle_hash(b).hex() for b in env.sent]
    bundle = everything[1]
    info = env.server.get(f"/v1/bundles/{bundle['bundle_hash']}").body
    assert bundle["last_seq"] == 5 and bundle["time_flag"] == info["time_flag"]
    reading = bundle["readings"][2]
    expected = thp_reading(5, env.device.sample_time(5))
    assert reading["seq"] == 5 and reading["time"] == expected.time
    assert [(r["name"], r["unit"]) for r in reading["records"]] == [("t", "Cel"), ("h", "%RH"), ("p", "Pa")]
    assert reading["records"][0]["value"] == pytest.approx(
        float(str(expected.records[0].value.mantissa)) / 100
    )
    assert reading["records"][2]["value"] == expected.records[2].value


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?limit=0", "invalid_parameter"),
        ("?limit=1001", "invalid_parameter"),
        ("?limit=ten", "invalid_parameter"),
        ("?after_seq=-1", "invalid_parameter"),
        (f"?after_seq={2**64}", "invalid_parameter"),
        ("?after_seq=%EF%BC%91", "invalid_parameter"),  # a fullwidth digit: isdigit() yet not ASCII
    ],
)
def test_readings_bad_parameters(env: Env, query: str, reason: str) -> None:
    answer = env.server.get(f"/v1/devices/{env.device.kid_hex}/readings{query}")
    assert answer.status == 400 and answer.body["reason"] == reason and answer.body["detail"]


def test_readings_bad_or_unknown_device(env: Env) -> None:
    for bad in ("nothex", env.device.kid_hex.upper(), env.device.kid_hex + "00", "zz" * 16):
        answer = env.server.get(f"/v1/devices/{bad}/readings")
        assert answer.status == 400 and answer.body["reason"] == "invalid_kid"
    unknown = env.server.get(f"/v1/devices/{sim_device(9).kid_hex}/readings")
    assert unknown.status == 404 and unknown.body["reason"] == "unknown_device"
    top = env.server.get(f"/v1/devices/{env.device.kid_hex}/readings?after_seq={2**64 - 1}")
    assert top.status == 200 and top.body["bundles"] == []


def test_proof_verifies_with_the_gateway_key(env: Env) -> None:
    gateway_key = keys.load_public_key(bytes.fromhex(env.gateway.public_hex))
    for raw in env.sent:
        answer = env.server.get(f"/v1/bundles/{batch.bundle_hash(raw).hex()}/proof")
        assert answer.status == 200
        doc = answer.body
        assert doc["version"] == 1 and doc["anchor"] is None and doc["bundle"] == raw.hex()
        header = batch.verify_proof_document(doc["batch"], gateway_key, bytes.fromhex(doc["bundle"]))
        assert header.count == 3
    forged = dict(env.server.get(f"/v1/bundles/{batch.bundle_hash(env.sent[0]).hex()}/proof").body["batch"])
    forged["leaf_index"] = 1
    with pytest.raises(Exception, match="path"):
        batch.verify_proof_document(forged, gateway_key)


def test_proof_of_a_leaf_held_on_the_gateway_word(env: Env) -> None:
    raw = env.device.seal()
    assert env.server.send(env.gateway.make([env.other.seal(), raw], "proofs")).status == 200
    doc = env.server.get(f"/v1/bundles/{batch.bundle_hash(raw).hex()}/proof").body
    assert doc["bundle"] is None
    gateway_key = keys.load_public_key(bytes.fromhex(env.gateway.public_hex))
    assert batch.verify_proof_document(doc["batch"], gateway_key, raw).count == 2
    seqs = [b["seq"] for b in env.server.get(f"/v1/devices/{env.device.kid_hex}/readings").body["bundles"]]
    assert 18 not in seqs  # readings are the ingest-verified bundles only


def test_proof_not_found_and_bad_hash(env: Env) -> None:
    assert env.server.get(f"/v1/bundles/{'ab' * 32}/proof").status == 404
    for bad in ("ab" * 31, "AB" * 32, "x" * 64):
        answer = env.server.get(f"/v1/bundles/{bad}/proof")
        assert answer.status == 400 and answer.body["reason"] == "invalid_hash"


def test_anchor_part_fills_anchor(env: Env) -> None:
    conn = db.connect(env.db)
    try:
        bundle_hash = batch.bundle_hash(env.sent[0])
        doc = queries.bundle_proof(conn, bundle_hash, anchor_part=lambda h: {"batch_hash": h.hex()})
        assert doc is not None and doc["anchor"] == {"batch_hash": env.gateway.sent[0].hash_hex}
        with pytest.raises(ValueError, match="limit"):
            queries.device_readings(conn, env.device.kid, limit=0)
    finally:
        conn.close()


@pytest.mark.parametrize("leaves", [1000, 20_000])
def test_proof_of_a_large_batch(tmp_path: object, leaves: int) -> None:
    """A batch of many leaves: the path needs them all (read in leaf order, hashed into a tree)."""
    target = os.path.join(str(tmp_path), "large.sqlite")
    gateway = Gateway(key(1))
    register(target, gateways=[gateway])
    hashes = [os.urandom(32) for _ in range(leaves)]
    header_bytes = batch.sign_header(
        gateway.private,
        batch_no=0,
        prev_hash=batch.ZERO_HASH,
        root=batch.batch_root(hashes),
        count=leaves,
        first_received=1,
        last_received=2,
    )
    gateway_key = keys.load_public_key(bytes.fromhex(gateway.public_hex))
    conn = db.connect(target)
    try:
        with conn.transaction():
            store.insert_batch(conn, batch.verify_header(header_bytes, gateway_key), "proofs", hashes, 0.0)
        started = time.perf_counter()
        doc = queries.bundle_proof(conn, hashes[leaves // 3])
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    assert doc is not None and batch.verify_proof_document(doc["batch"], gateway_key).count == leaves
    print(f"\nproof in a batch of {leaves} leaves: {elapsed * 1000:.1f} ms")
    assert elapsed < 5.0
