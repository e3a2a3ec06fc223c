"""What the ingest verified itself and what it holds on a gateway's word (issue 11 #6 and #7).

A "proofs" batch carries bundle hashes, not bundles: the ingest then holds only the gateway's signed
word that a device signed them. Its answers say so per bundle (`verified_by`), and a bundle becomes
ingest-verified when its bytes arrive later, whether a resend of the same batch in "bundles" mode or
another gateway's batch. Reading times are checked by the ingest itself in every bundle it verifies.
"""

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ingest_fixtures import T0, Gateway, IngestServer, key, register, rejection_rows, sim_device

from pinseal_devkit.simdevice import SimDevice
from pinseal_ingest import accept, db, registry, store
from pinseal_ingest.accept import Rejection
from pinseal_protocol import batch


@dataclass
class Env:
    db: str
    server: IngestServer
    gateway: Gateway
    other_gateway: Gateway
    device: SimDevice


@pytest.fixture
def env(ingest_target: str) -> Iterator[Env]:
    db = ingest_target
    gateway, other_gateway, device = Gateway(key(1)), Gateway(key(4)), sim_device(2)
    register(db, gateways=[gateway, other_gateway], devices=[device])
    with IngestServer(db) as server:
        yield Env(db, server, gateway, other_gateway, device)


def bundle_info(env: Env, raw: bytes) -> dict:
    found = env.server.get(f"/v1/bundles/{batch.bundle_hash(raw).hex()}")
    assert found.status == 200, found.body
    return found.body


def sealed_at(device: SimDevice, time_s: int) -> bytes:
    """The device's next bundle with one reading at `time_s` (Unix seconds, NTP time source)."""
    return device.seal(1, time_s=time_s)


def forged(raw: bytes) -> bytes:
    """The bundle with one signature bit flipped: well-formed, but not what the device signed."""
    out = bytearray(raw)
    out[-1] ^= 1
    return bytes(out)


def test_proofs_mode_bundles_are_held_on_the_gateways_word_until_their_bytes_arrive(env: Env) -> None:
    a, b = env.device.seal(), env.device.seal()
    first = env.gateway.make([a, b], "proofs")
    response = env.server.send(first)
    assert response.status == 200 and response.body["status"] == "stored"
    assert response.body["verified_by"] == {"ingest": 0, "gateway": 2}
    assert bundle_info(env, a)["verified_by"] == "gateway" and bundle_info(env, a)["body"] is None
    leaves = env.server.get(f"/v1/batches/{first.hash_hex}").body["leaves"]
    assert [leaf["verified_by"] for leaf in leaves] == ["gateway", "gateway"]

    # A resend of the same batch with its bundles: still a duplicate, now verified by the ingest.
    resend = batch.build_uplink(first.header, [a, b], "bundles")
    response = env.server.post(resend, idempotency_key=first.hash_hex)
    assert response.status == 200 and response.body["status"] == "duplicate"
    assert response.body["verified_by"] == {"ingest": 2, "gateway": 0}
    assert bundle_info(env, a)["verified_by"] == "ingest"
    assert bundle_info(env, b)["body"] == b.hex()
    leaves = env.server.get(f"/v1/batches/{first.hash_hex}").body["leaves"]
    assert [leaf["verified_by"] for leaf in leaves] == ["ingest", "ingest"]


def test_another_gateways_bundles_upgrade_a_bundle_committed_by_proofs(env: Env) -> None:
    c, d = env.device.seal(), env.device.seal()
    response = env.server.send(env.gateway.make([c], "proofs"))
    assert response.status == 200 and bundle_info(env, c)["verified_by"] == "gateway"
    # The other gateway forwards c with its bytes: c is paid for once (its batch is refused), but the
    # ingest has now checked c's device signature itself.
    response = env.server.send(env.other_gateway.make([c, d], advance=False))
    assert response.status == 422 and response.body["reason"] == "replayed"
    assert bundle_info(env, c)["verified_by"] == "ingest"
    assert env.server.get(f"/v1/bundles/{batch.bundle_hash(d).hex()}").status == 404


def test_a_forged_bundle_committed_by_proofs_stays_on_the_gateways_word_and_is_evidence(env: Env) -> None:
    honest, fake = env.device.seal(), forged(env.device.seal())
    first = env.gateway.make([honest, fake], "proofs")
    assert env.server.send(first).status == 200  # the ingest cannot tell without the bytes
    response = env.server.post(
        batch.build_uplink(first.header, [honest, fake], "bundles"), idempotency_key=first.hash_hex
    )
    assert response.status == 200 and response.body["status"] == "duplicate"
    assert response.body["verified_by"] == {"ingest": 1, "gateway": 1}
    assert bundle_info(env, honest)["verified_by"] == "ingest"
    assert bundle_info(env, fake)["verified_by"] == "gateway"
    assert [(reason, index) for reason, index, _ in rejection_rows(env.db)] == [("bad_signature", 1)]
    assert rejection_rows(env.db)[0][2] == fake  # kept as evidence against the gateway


def test_a_version_1_batch_is_accepted_and_the_ingest_flags_times_itself(env: Env) -> None:
    # Times relative to the batch's signed receive window (T0 .. T0 + 60 in ingest_fixtures).
    plausible, epoch_0 = sealed_at(env.device, T0), sealed_at(env.device, 0)
    future, max_time = sealed_at(env.device, T0 + 86400), sealed_at(env.device, 2**63 - 1)
    made = env.gateway.make([plausible, epoch_0, future, max_time])
    response = env.server.send(made)
    assert response.status == 200 and response.body["status"] == "stored"
    assert env.server.get(f"/v1/batches/{made.hash_hex}").body["version"] == 1
    flags = {
        "plausible": bundle_info(env, plausible)["time_flag"],
        "epoch_0": bundle_info(env, epoch_0)["time_flag"],
        "future": bundle_info(env, future)["time_flag"],
        "max_time": bundle_info(env, max_time)["time_flag"],
    }
    assert flags == {
        "plausible": {"gateway": None, "ingest": None},
        "epoch_0": {"gateway": None, "ingest": "stale"},
        "future": {"gateway": None, "ingest": "future"},
        "max_time": {"gateway": None, "ingest": "future"},
    }
    assert response.body["time_flags"] == [
        {"leaf_index": i, "bundle_hash": batch.bundle_hash(raw).hex(), "gateway": None, "ingest": flag}
        for i, raw, flag in ((1, epoch_0, "stale"), (2, future, "future"), (3, max_time, "future"))
    ]


# --- the batch vectors, through the ingest's acceptance and store ------------------------------------

BATCH_VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "batch"


def load_batch_vectors() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(BATCH_VECTORS.glob("batch_*.json"))}


@pytest.mark.parametrize("name", sorted(load_batch_vectors()))
def test_the_ingest_takes_both_batch_versions_as_the_vectors_say(tmp_path: Path, name: str) -> None:
    vector = load_batch_vectors()[name]
    conn = db.connect(tmp_path / "ingest.sqlite")
    try:
        registry.add(conn, "gateways", bytes.fromhex(vector["public_key"]))
        registry.add(conn, "devices", bytes.fromhex(vector["device"]["public_key"]))
        body = bytes.fromhex(vector["uplink"])
        if vector["expect"] != "accept":
            with pytest.raises(Rejection) as info:
                accept.accept(conn, body, idempotency_key=None, now=time.time())
            assert info.value.reason == vector["expect"]
            assert conn.execute("SELECT COUNT(*) FROM leaves").fetchone() == (0,)
            return
        result = accept.accept(conn, body, idempotency_key=vector["batch_hash"], now=time.time())
        bundles_mode = vector["input"]["mode"] == "bundles"
        count = len(vector["input"]["bundles"])
        assert result.status == "stored"
        assert result.verified_by == (
            {"ingest": count, "gateway": 0} if bundles_mode else {"ingest": 0, "gateway": count}
        )
        gateway_flags = dict(map(tuple, vector["input"]["time_flags"] or []))
        ingest_flags = {1: "stale", 2: "future"} if bundles_mode else {}
        for leaf in store.batch_info(conn, bytes.fromhex(vector["batch_hash"]))["leaves"]:
            i = leaf["leaf_index"]
            assert leaf["time_flag"] == {"gateway": gateway_flags.get(i), "ingest": ingest_flags.get(i)}
    finally:
        conn.close()


# --- schema migration --------------------------------------------------------------------------------

SCHEMA_0 = """
CREATE TABLE batches (hash BLOB PRIMARY KEY, gateway_kid BLOB NOT NULL, batch_no INTEGER NOT NULL,
    prev_hash BLOB NOT NULL, root BLOB NOT NULL, count INTEGER NOT NULL, first_received INTEGER NOT NULL,
    last_received INTEGER NOT NULL, mode TEXT NOT NULL, header BLOB NOT NULL, received_at REAL NOT NULL,
    UNIQUE (gateway_kid, batch_no));
CREATE TABLE leaves (bundle_hash BLOB PRIMARY KEY, batch_hash BLOB NOT NULL REFERENCES batches(hash),
    leaf_index INTEGER NOT NULL, UNIQUE (batch_hash, leaf_index));
CREATE TABLE bundles (hash BLOB PRIMARY KEY, kid BLOB NOT NULL, seq BLOB NOT NULL, last_seq BLOB NOT NULL,
    prev BLOB NOT NULL, link BLOB NOT NULL, n_readings INTEGER NOT NULL, raw BLOB NOT NULL);
INSERT INTO batches VALUES (x'01', x'02', 0, x'03', x'04', 1, 10, 20, 'proofs', x'05', 30.0);
INSERT INTO leaves VALUES (x'06', x'01', 0);
"""


def test_a_database_of_schema_0_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_0)
    old.close()
    conn = db.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (db.SCHEMA_VERSION,)
        info = store.batch_info(conn, b"\x01")
        assert info is not None and info["version"] == 1
        assert info["leaves"] == [
            {
                "leaf_index": 0,
                "bundle_hash": "06",
                "verified_by": "gateway",
                "time_flag": {"gateway": None, "ingest": None},
            }
        ]
    finally:
        conn.close()
    db.connect(path).close()  # already current: nothing to do
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version={db.SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(RuntimeError, match="newer"):
        db.connect(path)
