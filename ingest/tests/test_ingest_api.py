"""The network ingest end to end: a real aiohttp server on loopback, a real SQLite file per test."""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ingest_fixtures import (
    Batch,
    Gateway,
    IngestServer,
    key,
    register,
    rejection_rows,
    revoke,
    sim_device,
    table_counts,
)

from pinseal_devkit.simdevice import SimDevice
from pinseal_protocol import batch, dcbor


@dataclass
class Env:
    db: str
    server: IngestServer
    gateway: Gateway
    device: SimDevice
    other_device: SimDevice


@pytest.fixture
def env(ingest_target: str) -> Iterator[Env]:
    db = ingest_target
    gateway, device, other = Gateway(key(1)), sim_device(2), sim_device(3)
    register(db, gateways=[gateway], devices=[device, other])
    with IngestServer(db) as server:
        yield Env(db, server, gateway, device, other)


def stored(env: Env, made: Batch) -> None:
    response = env.server.send(made)
    assert response.status == 200, response.body
    # issue 11 #7: the answer also says who verified the leaves and which are time-flagged
    assert response.body | {"verified_by": None, "time_flags": None} == {
        "status": "stored",
        "batch_hash": made.hash_hex,
        "verified_by": None,
        "time_flags": None,
    }


# --- accepted ----------------------------------------------------------------------------------------


def test_three_batch_chain_is_stored(env: Env) -> None:
    dev, other = env.device, env.other_device
    batches = [
        env.gateway.make([dev.seal(), other.seal(2)]),
        env.gateway.make([dev.seal(3), dev.seal(), other.seal()]),
        env.gateway.make([dev.seal()]),
    ]
    for made in batches:
        stored(env, made)
    assert table_counts(env.db) == {"batches": 3, "leaves": 6, "bundles": 6}

    info = env.server.get(f"/v1/batches/{batches[1].hash_hex}")
    assert info.status == 200
    assert info.body["batch_no"] == 1 and info.body["count"] == 3 and info.body["mode"] == "bundles"
    assert info.body["prev_hash"] == batches[0].hash_hex and info.body["header"] == batches[1].header.hex()

    raw = dcbor.decode(batches[1].body)[2][1]
    found = env.server.get(f"/v1/bundles/{batch.bundle_hash(raw).hex()}")
    assert found.status == 200
    assert found.body["batch_hash"] == batches[1].hash_hex and found.body["leaf_index"] == 1
    assert found.body["body"] == raw.hex() and (found.body["seq"], found.body["last_seq"]) == (4, 4)

    assert env.server.get(f"/v1/bundles/{'00' * 32}").status == 404
    assert env.server.get(f"/v1/batches/{'00' * 32}").status == 404
    assert env.server.get("/v1/batches/XYZ").status == 400
    assert env.server.get("/healthz").body == {"status": "ok"}
    metrics = env.server.get("/metrics").body
    assert 'pinseal_ingest_batches_stored_total{mode="bundles"} 3.0' in metrics
    assert "pinseal_ingest_bundles_stored_total 6.0" in metrics


def test_retry_of_the_same_batch_is_idempotent(env: Env) -> None:
    made = env.gateway.make([env.device.seal(), env.device.seal()])
    stored(env, made)
    again = env.server.send(made)
    assert again.status == 200
    assert {k: again.body[k] for k in ("status", "batch_hash")} == {
        "status": "duplicate",
        "batch_hash": made.hash_hex,
    }
    assert env.server.post(made.body).body["status"] == "duplicate"  # the key header is optional
    assert table_counts(env.db) == {"batches": 1, "leaves": 2, "bundles": 2}
    assert "pinseal_ingest_batches_duplicate_total 2.0" in env.server.get("/metrics").body
    stored(env, env.gateway.make([env.device.seal()]))  # the chain continues


def test_proofs_mode_is_accepted(env: Env) -> None:
    bodies = [env.device.seal(), env.device.seal(), env.other_device.seal()]
    made = env.gateway.make(bodies, "proofs")
    stored(env, made)
    assert table_counts(env.db) == {"batches": 1, "leaves": 3, "bundles": 0}
    found = env.server.get(f"/v1/bundles/{batch.bundle_hash(bodies[2]).hex()}")
    assert found.body["leaf_index"] == 2 and found.body["body"] is None
    assert env.server.get(f"/v1/batches/{made.hash_hex}").body["mode"] == "proofs"
    # the same bundle committed again, now with its body, is not paid twice
    response = env.server.send(env.gateway.make([env.device.seal(), bodies[0]], advance=False))
    assert (response.status, response.body["reason"], response.body["bundle_index"]) == (422, "replayed", 1)
    stored(env, env.gateway.make([env.device.seal()]))


def test_a_chain_gap_names_the_expected_batch_and_resending_in_order_works(env: Env) -> None:
    first = env.gateway.make([env.device.seal()])
    second = env.gateway.make([env.device.seal()])
    response = env.server.send(second)
    assert (
        response.status == 409 and response.body["reason"] == "chain_gap" and response.body["expected"] == 0
    )
    assert table_counts(env.db)["batches"] == 0
    stored(env, first)
    stored(env, second)


def test_a_missing_bundle_sent_late_is_accepted(env: Env) -> None:
    a, b, c = env.device.seal(), env.device.seal(), env.device.seal()
    stored(env, env.gateway.make([a, c]))
    stored(env, env.gateway.make([b]))  # the missing link of the stored chain


# --- rejected: nothing of the batch is stored --------------------------------------------------------

Case = Callable[[Env], tuple[Batch | bytes, str | None]]


def forged_header(env: Env) -> tuple[Batch, str]:
    made = env.gateway.make([env.device.seal()])
    header = bytearray(made.header)
    header[-5] ^= 0x10
    return Batch(bytes(header), batch.encode_uplink(bytes(header), bundles=dcbor.decode(made.body)[2])), ""


def unknown_gateway(env: Env) -> tuple[Batch, str]:
    return Gateway(key(9)).make([env.device.seal()]), ""


def revoked_gateway(env: Env) -> tuple[Batch, str]:
    revoke(env.db, "gateways", env.gateway.public_hex)
    return env.gateway.make([env.device.seal()]), ""


def wrong_root(env: Env) -> tuple[Batch, str]:
    bodies = [env.device.seal(), env.device.seal()]
    return env.gateway.make(bodies, root=batch.batch_root([batch.bundle_hash(bodies[1])] * 2)), ""


def count_mismatch(env: Env) -> tuple[Batch, str]:
    bodies = [env.device.seal(), env.device.seal()]
    return env.gateway.make(bodies, count=3), ""


def proofs_with_a_bad_proof(env: Env) -> tuple[Batch, str]:
    made = env.gateway.make([env.device.seal(), env.device.seal()], "proofs")
    message = dcbor.decode(made.body)
    message[3][1][1] = bytes(32)  # another bundle hash under leaf 1's proof
    return Batch(made.header, dcbor.encode(message)), ""


def bad_device_signature(env: Env) -> tuple[Batch, str]:
    good = env.device.seal()
    forged = bytearray(env.device.seal())
    forged[-1] ^= 1
    return env.gateway.make([good, bytes(forged)]), ""


def unknown_device(env: Env) -> tuple[Batch, str]:
    return env.gateway.make([env.device.seal(), sim_device(7).seal()]), ""


def revoked_device(env: Env) -> tuple[Batch, str]:
    revoke(env.db, "devices", env.other_device.public_key_hex)
    return env.gateway.make([env.device.seal(), env.other_device.seal()]), ""


def replayed_across_batches(env: Env) -> tuple[Batch, str]:
    first = env.device.seal()
    stored(env, env.gateway.make([first, env.device.seal()]))
    return env.gateway.make([env.device.seal(), first]), ""


def twice_in_one_batch(env: Env) -> tuple[Batch, str]:
    body = env.device.seal()
    return env.gateway.make([body, body]), ""


def conflicting_across_batches(env: Env) -> tuple[Batch, str]:
    stored(env, env.gateway.make([env.device.seal(2), env.device.seal()]))
    resealed = env.device.seal(seq=1, prev=bytes(16), value=5, advance=False)  # readings 1 again, other bytes
    return env.gateway.make([resealed]), resealed.hex()


def counter_rollback(env: Env) -> tuple[Batch, str]:
    env.device.seq = 10
    stored(env, env.gateway.make([env.device.seal(), env.device.seal()]))  # 10, 11
    return env.gateway.make([env.device.seal(seq=3, prev=bytes([7]) * 16, advance=False)]), ""


def broken_prev_hash(env: Env) -> tuple[Batch, str]:
    stored(env, env.gateway.make([env.device.seal()]))
    return env.gateway.make([env.device.seal()], prev_hash=bytes([1]) * 32), ""


def batch_number_conflict(env: Env) -> tuple[Batch, str]:
    stored(env, env.gateway.make([env.device.seal()]))
    return env.gateway.make([env.device.seal()], batch_no=0, prev_hash=batch.ZERO_HASH), ""


def malformed(env: Env) -> tuple[bytes, None]:
    return b"\xa2\x01\x42\x00", None


def not_deterministic(env: Env) -> tuple[bytes, None]:
    made = env.gateway.make([env.device.seal()])
    return b"\xbf" + made.body[1:] + b"\xff", None


def wrong_shape(env: Env) -> tuple[bytes, None]:
    return dcbor.encode({1: b"x", 2: [b"y"], 3: []}), None


def garbage_header(env: Env) -> tuple[bytes, None]:
    return batch.encode_uplink(b"\x01\x02", bundles=[env.device.seal()]), None


CASES: list[tuple[Case, int, str]] = [
    (forged_header, 400, "bad_signature"),
    (unknown_gateway, 403, "unknown_device"),
    (revoked_gateway, 403, "revoked"),
    (wrong_root, 400, "bad_proof"),
    (count_mismatch, 400, "bad_proof"),
    (proofs_with_a_bad_proof, 400, "bad_proof"),
    (bad_device_signature, 422, "bad_signature"),
    (unknown_device, 422, "unknown_device"),
    (revoked_device, 422, "revoked"),
    (replayed_across_batches, 422, "replayed"),
    (twice_in_one_batch, 422, "replayed"),
    (conflicting_across_batches, 422, "conflict"),
    (counter_rollback, 422, "replayed"),
    (broken_prev_hash, 400, "chain_broken"),
    (batch_number_conflict, 409, "conflict"),
    (malformed, 400, "malformed"),
    (not_deterministic, 400, "non_deterministic"),
    (wrong_shape, 400, "invalid_structure"),
    (garbage_header, 400, "malformed"),
]


@pytest.mark.parametrize(("case", "status", "reason"), CASES, ids=[c[0].__name__ for c in CASES])
def test_rejections_give_their_reason_and_store_nothing(
    env: Env, case: Case, status: int, reason: str
) -> None:
    made, evidence = case(env)
    before = table_counts(env.db)
    rejections_before = len(rejection_rows(env.db))
    response = env.server.send(made) if isinstance(made, Batch) else env.server.post(made)
    assert response.status == status, response.body
    assert response.body["reason"] == reason and response.body["detail"]
    assert table_counts(env.db) == before
    rows = rejection_rows(env.db)
    assert len(rows) == rejections_before + 1 and rows[-1][0] == reason
    if status == 422:
        assert response.body["bundle_index"] == rows[-1][1] is not None
    if evidence:
        assert rows[-1][2] == bytes.fromhex(evidence)
    assert (
        f'pinseal_ingest_batches_rejected_total{{reason="{reason}"}} 1.0' in env.server.get("/metrics").body
    )
    # the gateway's honest next batch is still welcome afterwards (unless it was revoked)
    if case is not revoked_gateway:
        env.gateway.batch_no, env.gateway.prev_hash = _chain_head(env)
        stored(env, env.gateway.make([sim_device(2, seq=1000).seal()]))


def _chain_head(env: Env) -> tuple[int, bytes]:
    accepted = [m for m in env.gateway.sent if env.server.get(f"/v1/batches/{m.hash_hex}").status == 200]
    if not accepted:
        return 0, batch.ZERO_HASH
    return len(accepted), batch.batch_hash(accepted[-1].header)


def test_idempotency_key_must_be_the_batch_hash(env: Env) -> None:
    made = env.gateway.make([env.device.seal()])
    response = env.server.post(made.body, idempotency_key="00" * 32)
    assert response.status == 400 and response.body["reason"] == "invalid_structure"
    assert table_counts(env.db)["batches"] == 0


def test_wrong_content_type(env: Env) -> None:
    made = env.gateway.make([env.device.seal()])
    response = env.server.post(made.body, content_type="application/json")
    assert response.status == 415 and response.body["reason"] == "unsupported_media_type"


def test_oversized_body(tmp_path: Path) -> None:
    db = tmp_path / "small.sqlite"
    gateway, device = Gateway(key(1)), sim_device(2)
    register(db, gateways=[gateway], devices=[device])
    with IngestServer(db, max_body=4096) as server:
        made = gateway.make([device.seal(8) for _ in range(20)])
        assert len(made.body) > 4096
        response = server.send(made)
        assert response.status == 413 and response.body["reason"] == "too_large"
        big = server.post(os.urandom(64 * 1024))
        assert big.status == 413
        chunked = server.post_chunked([made.body[:3000], made.body[3000:]])  # no Content-Length
        assert chunked.status == 413 and chunked.body["reason"] == "too_large"
        assert table_counts(db) == {"batches": 0, "leaves": 0, "bundles": 0}
        assert [r[0] for r in rejection_rows(db)] == ["too_large"] * 3


def test_a_refused_batch_lists_every_refused_bundle_and_stores_nothing(env: Env) -> None:
    """The gateway can only take refused bundles out of a batch it is told about: all of them, at once."""
    held = env.other_device.seal()
    stored(env, env.gateway.make([held]))  # the network holds this bundle already (another batch)
    revoke(env.db, "devices", env.other_device.public_key_hex)
    stranger = sim_device(7)  # never registered at the network
    bodies = [env.device.seal(), stranger.seal(), env.device.seal(), held, env.other_device.seal()]
    before = table_counts(env.db)
    response = env.server.send(env.gateway.make(bodies, advance=False))
    assert response.status == 422, response.body
    # the first refusal stays in the top-level fields, as before
    assert (response.body["reason"], response.body["bundle_index"]) == ("unknown_device", 1)
    refused = response.body["refused"]
    assert [(r["bundle_index"], r["reason"], r["held"]) for r in refused] == [
        (1, "unknown_device", False),
        (3, "replayed", True),
        (4, "revoked", False),
    ]
    assert [r["bundle_hash"] for r in refused] == [batch.bundle_hash(bodies[i]).hex() for i in (1, 3, 4)]
    assert all(r["detail"] for r in refused)
    assert table_counts(env.db) == before  # all or nothing: the honest bundles 0 and 2 are not stored
    # without the refused ones the same bundles make a batch the network takes
    stored(env, env.gateway.make([bodies[0], bodies[2]]))


def test_a_too_large_answer_names_the_limit(tmp_path: Path) -> None:
    db = tmp_path / "limit.sqlite"
    gateway, device = Gateway(key(1)), sim_device(2)
    register(db, gateways=[gateway], devices=[device])
    with IngestServer(db, max_body=4096) as server:
        response = server.send(gateway.make([device.seal(8) for _ in range(20)]))
    assert response.status == 413 and response.body.get("limit") == 4096
