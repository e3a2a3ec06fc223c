"""What the ingest verified itself and what it holds on a gateway's word (issue 11 #6 and #7).

A "proofs" batch carries bundle hashes, not bundles: the ingest then holds only the gateway's signed
word that a device signed them. Its answers say so per bundle (`verified_by`), and a bundle becomes
ingest-verified when its bytes arrive later, whether a resend of the same batch in "bundles" mode or
another gateway's batch. Reading times are checked by the ingest itself in every bundle it verifies.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ingest_fixtures import T0, Device, Gateway, IngestServer, key, register, rejection_rows

from pinseal_protocol import batch, bundle
from pinseal_protocol.bundle import Status
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.senml import Reading, Record


@dataclass
class Env:
    db: Path
    server: IngestServer
    gateway: Gateway
    other_gateway: Gateway
    device: Device


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    db = tmp_path / "ingest.sqlite"
    gateway, other_gateway, device = Gateway(key(1)), Gateway(key(4)), Device(key(2))
    register(db, gateways=[gateway, other_gateway], devices=[device])
    with IngestServer(db) as server:
        yield Env(db, server, gateway, other_gateway, device)


def bundle_info(env: Env, raw: bytes) -> dict:
    found = env.server.get(f"/v1/bundles/{batch.bundle_hash(raw).hex()}")
    assert found.status == 200, found.body
    return found.body


def sealed_at(device: Device, time_s: int) -> bytes:
    """The device's next bundle with one reading at `time_s` (Unix seconds, NTP time source)."""
    reading = Reading(time_s, (Record("t", "Cel", DecimalFraction(-2, 2100)),))
    raw = bundle.seal(
        device.private,
        boot=1,
        seq=device.seq,
        prev=device.prev,
        status=Status(),
        time_source=1,
        readings=[reading],
    )
    device.seq += 1
    device.prev = bundle.link_of(raw)
    return raw


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
