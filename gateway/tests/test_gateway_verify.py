"""The verify path and the history logic without a broker: fuzzed, and checked against the reference code."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinseal_gateway.acks import AckSigner
from pinseal_gateway.config import from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.link import Message
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.pipeline import Pipeline
from pinseal_gateway.registry import Registry, RegistryEntry
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store.bundles import from_u64
from pinseal_gateway.store.db import Database
from pinseal_gateway.verify import Checked, Limits, Rejection, check_message
from pinseal_protocol import ack as pack
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import dcbor, fastbundle, history, keys, rejection
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import BY_REASON, RejectedMessage
from pinseal_protocol.senml import Reading, Record

GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)
DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32)
DEVICE_PUBLIC = keys.public_key_bytes(DEVICE_KEY)
DEVICE_KID = keys.key_id(DEVICE_PUBLIC)
TOPIC = f"pinseal/v1/{DEVICE_KID.hex()}/up"
REGISTRY = Registry({DEVICE_KID: RegistryEntry(DEVICE_KEY.public_key(), False)})
NOW = 1_767_225_600


def seal(seq: int, prev: bytes, n: int = 1, value: int = 0) -> bytes:
    readings = [Reading(NOW + i, (Record("p", "Pa", 101325 + value),)) for i in range(n)]
    return pbundle.seal(
        DEVICE_KEY, boot=1, seq=seq, prev=prev, status=pbundle.Status(), time_source=1, readings=readings
    )


VALID = seal(7, pbundle.ZERO_PREV, n=3)


@settings(max_examples=200, deadline=None)
@given(
    device=st.binary(min_size=16, max_size=16),
    seq=st.integers(0, 2**64 - 1),
    bundle_hash=st.binary(min_size=32, max_size=32),
    when=st.integers(0, 2**64 - 1),
)
def test_fast_ack_encoding_is_the_reference_encoding(device, seq, bundle_hash, when):
    fast = AckSigner(GATEWAY_KEY).sign(device, seq, bundle_hash, when)
    reference = pack.sign_ack(GATEWAY_KEY, device=device, seq=seq, bundle_hash=bundle_hash, time=when)
    assert fast == reference
    pack.verify_ack(fast, GATEWAY_KEY.public_key(), device)


@settings(max_examples=100, deadline=None)
@given(
    device=st.binary(min_size=16, max_size=16),
    bundle_hash=st.binary(min_size=32, max_size=32),
    when=st.integers(0, 2**64 - 1),
    reason=st.sampled_from(sorted(rejection.NOTIFIED_REASONS)),
    next_seq=st.integers(0, 2**64 - 1),
)
def test_gateway_rejections_are_the_reference_encoding(device, bundle_hash, when, reason, next_seq):
    fields = {
        "device": device,
        "bundle_hash": bundle_hash,
        "time": when,
        "reason": reason,
        "next_seq": next_seq,
    }
    signed = AckSigner(GATEWAY_KEY).sign_rejection(**fields)
    assert signed == rejection.sign_rejection(GATEWAY_KEY, **fields)
    notice = rejection.verify_reply(signed, GATEWAY_KEY.public_key(), device)
    assert isinstance(notice, rejection.RejectionNotice) and notice.next_seq == next_seq


def check(payload: bytes, topic: str = TOPIC) -> Checked | Rejection:
    return check_message(topic, payload, REGISTRY, Limits(), NOW)


def assert_classified(result: Checked | Rejection) -> None:
    if isinstance(result, Rejection):
        assert result.reason in BY_REASON, result
        assert not result.detail.startswith("verifier error"), result.detail


def test_valid_bundle_passes():
    result = check(VALID)
    assert isinstance(result, Checked) and result.bundle.last_seq == 9 and result.time_flag is None


@pytest.mark.parametrize("offset", [-(10**9), 0, 10**9])
def test_fast_and_generic_paths_check_alike(offset):
    """A device-layout bundle (fast path) and the same bundle with an unknown payload key (generic path,
    which ignores the key) give the same rows and flags; a wrong signature is refused on both."""
    readings = [
        Reading(
            NOW + offset + i,
            (Record("t", "Cel", DecimalFraction(-2, 2150 + i)), Record("e", None, string_value="i2c")),
        )
        for i in range(4)
    ]
    fields = dict(
        boot=1, seq=40, prev=pbundle.ZERO_PREV, status=pbundle.Status(), time_source=1, readings=readings
    )
    device_layout = pbundle.seal(DEVICE_KEY, **fields)
    with_extra = pbundle.seal_payload(
        DEVICE_KEY, DEVICE_KID, dcbor.encode(pbundle.payload_map(**fields, extra={99: 0}))
    )
    assert fastbundle.parse(device_layout) is not None and fastbundle.parse(with_extra) is None
    fast, slow = check(device_layout), check(with_extra)
    assert isinstance(fast, Checked) and isinstance(slow, Checked)
    # One bundle type from both paths; the fast path is the one that kept the Sig_structure it checked.
    assert isinstance(fast.bundle, pbundle.Bundle) and isinstance(slow.bundle, pbundle.Bundle)
    assert fast.bundle.signed != b"" and slow.bundle.signed == b""
    assert fast.time_flag == slow.time_flag
    assert [row[2:] for row in fast.rows] == [row[2:] for row in slow.rows]
    assert [row[:2] for row in fast.rows] == [(fast.bundle.bundle_hash, DEVICE_KID)] * 8
    for data in (device_layout, with_extra):
        forged = data[:-1] + bytes([data[-1] ^ 1])
        assert check(forged).reason == "bad_signature"
        other = f"pinseal/v1/{bytes(16).hex()}/up"
        assert check(data, other).reason == "wrong_topic"


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=3000), topic=st.text(max_size=80))
def test_arbitrary_payloads_and_topics_are_classified(payload, topic):
    for t in (topic, TOPIC):
        result = check(payload, t)
        assert isinstance(result, Rejection)
        assert_classified(result)


@st.composite
def mutations(draw):
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data.insert(pos, draw(st.integers(0, 255)))
        elif kind == "delete" and data:
            del data[pos]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=40))
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated=mutations())
def test_mutated_bundles_are_never_accepted(mutated):
    result = check(mutated)
    if mutated == VALID:
        assert isinstance(result, Checked)
        return
    assert isinstance(result, Rejection), "a mutated bundle was accepted"
    assert_classified(result)


@settings(max_examples=200, deadline=None)
@given(topic=st.one_of(st.text(max_size=60), st.just(TOPIC), st.just(TOPIC.upper())))
def test_topic_must_name_the_signer(topic):
    result = check(VALID, topic)
    if topic == TOPIC:
        assert isinstance(result, Checked)
    else:
        assert isinstance(result, Rejection) and result.reason == "wrong_topic"


def test_revoked_and_unknown():
    revoked = Registry({DEVICE_KID: RegistryEntry(DEVICE_KEY.public_key(), True)})
    assert check_message(TOPIC, VALID, revoked, Limits(), NOW).reason == "revoked"
    assert check_message(TOPIC, VALID, Registry(), Limits(), NOW).reason == "unknown_device"


def test_size_limit_comes_from_config():
    result = check_message(TOPIC, VALID, REGISTRY, Limits(max_bundle_bytes=len(VALID) - 1), NOW)
    assert isinstance(result, Rejection) and result.reason == "too_large"


# -- history through the real store, against the reference classify ------------------------------


class FakeTransport:
    def __init__(self):
        self.settled: list[object] = []
        self.acks: list[tuple[bytes, bytes]] = []

    def settle(self, tokens):
        self.settled.extend(tokens)

    def publish_acks(self, acks):
        self.acks.extend(acks)


async def run_pipeline(db: Database, payloads: list[bytes], group: int) -> FakeTransport:
    # Both verify stages: the worker process, and (for groups of 3) the in-process verify thread.
    config = from_mapping({"pipeline": {"max_group": group, "verify_process": group != 3}})
    ctx = GatewayContext(config, db, GATEWAY_KEY, keys.key_id(GATEWAY_KEY.public_key()), Metrics())
    transport = FakeTransport()
    pipeline = Pipeline(ctx)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    for i, payload in enumerate(payloads):
        await pipeline.submit(Message(TOPIC, payload, time.time(), i, transport))
    while len(transport.settled) < len(payloads):
        await asyncio.sleep(0.005)
    stop.set()
    await task
    return transport


def reference_run(bundles: list[pbundle.Bundle]):
    stored: list[pbundle.Bundle] = []
    verdicts, gaps = [], {}
    for b in bundles:
        try:
            verdict = history.classify(b, stored).value
        except RejectedMessage as exc:
            verdicts.append(exc.reason)
            continue
        verdicts.append("accepted" if verdict == "new" else "duplicate")
        if verdict == "new":
            earlier = any(s.seq < b.seq for s in stored)
            gaps[b.bundle_hash] = earlier and not any(s.link == b.prev for s in stored)
            stored.append(b)
    return verdicts, stored, gaps


@st.composite
def deliveries(draw):
    """A device's chain (with skipped sequence numbers and forks) delivered lost, late, twice, reordered;
    from near 0, across 2**63 (where SQLite's INTEGER ends) or up to the last uint64 (issue 11 #1)."""
    base = draw(st.sampled_from([0, 0, 2**63 - 20, 2**64 - 80]))
    chain, prev, seq = [], pbundle.ZERO_PREV, base + draw(st.integers(0, 5))
    for _ in range(draw(st.integers(1, 8))):
        n = draw(st.integers(1, 3))
        raw = seal(seq, prev, n)
        chain.append(raw)
        if draw(st.booleans()) and draw(st.booleans()):  # a re-sealed (conflicting) or rewound copy
            back = draw(st.integers(0, seq))
            chain.append(seal(back, prev, draw(st.integers(1, 2)), value=1))
        prev = pbundle.link_of(raw)
        seq += n + draw(st.sampled_from([0, 0, 0, 1, 4]))
    order = draw(st.lists(st.sampled_from(range(len(chain))), min_size=1, max_size=2 * len(chain)))
    return [chain[i] for i in order], draw(st.sampled_from([1, 3, 500]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=deliveries())
def test_store_matches_reference_history(case):
    payloads, group = case
    bundles = [pbundle.verify_bundle(p, DEVICE_KEY.public_key()) for p in payloads]
    verdicts, stored, gaps = reference_run(bundles)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "gateway.sqlite")
        try:
            db.run_sync(
                lambda conn: device_store.add_device(
                    conn, DEVICE_PUBLIC, label=None, expected_interval_s=None, password_hash="x"
                )
            )
            transport = asyncio.run(run_pipeline(db, payloads, group))
            rows = db.run_sync(lambda conn: conn.execute("SELECT hash, chain_gap FROM bundles").fetchall())
            rejections = db.run_sync(
                lambda conn: conn.execute("SELECT reason FROM rejections ORDER BY id").fetchall()
            )
            state = db.run_sync(
                lambda conn: conn.execute("SELECT contiguous_seq, high_seq FROM device_state").fetchone()
            )
            state = tuple(from_u64(value) for value in state)
        finally:
            db.close()
    assert sorted(transport.settled) == list(range(len(payloads)))
    assert {h: bool(g) for h, g in rows} == gaps
    assert [r for (r,) in rejections] == [v for v in verdicts if v not in ("accepted", "duplicate")]
    replies = [rejection.verify_reply(raw, GATEWAY_KEY.public_key(), DEVICE_KID) for _, raw in transport.acks]
    acks = [reply for reply in replies if isinstance(reply, pack.Ack)]
    assert len(acks) == sum(v in ("accepted", "duplicate") for v in verdicts)
    # every conflict and replay is answered with a signed rejection (docs/protocol.md §5.1)
    notices = [reply.reason for reply in replies if isinstance(reply, rejection.RejectionNotice)]
    assert notices == [v for v in verdicts if v in rejection.NOTIFIED_REASONS]
    contiguous = history.contiguous_last_seq(stored)
    assert state[0] == contiguous and state[1] == max(b.last_seq for b in stored)
    assert acks[-1].seq == contiguous


def test_pipeline_rejects_but_settles_garbage():
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "gateway.sqlite")
        try:
            transport = asyncio.run(run_pipeline(db, [b"", b"\x00", VALID], 500))
        finally:
            db.close()
    assert sorted(transport.settled) == [0, 1, 2] and transport.acks == []


@pytest.mark.parametrize("bad", [b"", b"\xa0" * 3000])
def test_empty_and_huge(bad):
    assert_classified(check(bad))


def _device_db(tmp: str) -> Database:
    db = Database(Path(tmp) / "gateway.sqlite")
    db.run_sync(
        lambda conn: device_store.add_device(
            conn, DEVICE_PUBLIC, label=None, expected_interval_s=None, password_hash="x"
        )
    )
    return db


def test_in_order_bundles_are_stored_without_chain_queries():
    """A device whose bundles arrive in order (the common case) costs no prev-chain query per bundle;
    the first bundle out of line makes the device non-linear and the walk queries again."""
    chain, prev = [], pbundle.ZERO_PREV
    for seq in range(0, 12, 2):
        chain.append(seal(seq, prev, n=2))
        prev = pbundle.link_of(chain[-1])
    with tempfile.TemporaryDirectory() as tmp:
        db = _device_db(tmp)
        statements: list[str] = []
        try:
            db.run_sync(lambda conn: conn.set_trace_callback(statements.append))
            asyncio.run(run_pipeline(db, chain[:1], 1))
            first = len(statements)
            asyncio.run(run_pipeline(db, chain[1:5], 1))
            walks = [s for s in statements[first:] if "prev = " in s]
            linear = db.run_sync(lambda conn: conn.execute("SELECT linear FROM device_state").fetchone())
            assert walks == [] and linear == (1,)
            # a bundle beyond a gap (its prev is the last chain bundle's, not here yet), then the gap filled
            asyncio.run(run_pipeline(db, [seal(20, prev, n=1), *chain[5:]], 1))
            state = db.run_sync(
                lambda conn: conn.execute("SELECT linear, contiguous_seq FROM device_state").fetchone()
            )
            assert state == (0, 20)  # the filled gap joins the chain to the bundle beyond it
            assert any("prev = " in s for s in statements[first:])
        finally:
            db.close()


def test_schema_1_database_gains_device_state_linear():
    with tempfile.TemporaryDirectory() as tmp:
        db = _device_db(tmp)
        asyncio.run(run_pipeline(db, [seal(0, pbundle.ZERO_PREV)], 1))

        def downgrade(conn):
            conn.execute("ALTER TABLE device_state DROP COLUMN linear")
            conn.execute("PRAGMA user_version=1")
            conn.commit()

        db.run_sync(downgrade)
        db.close()
        db = Database(Path(tmp) / "gateway.sqlite")
        try:
            version = db.run_sync(lambda conn: conn.execute("PRAGMA user_version").fetchone())
            state = db.run_sync(
                lambda conn: conn.execute("SELECT linear, high_seq FROM device_state").fetchone()
            )
            assert version == (3,) and state == (0, 0)  # schema 1 -> 3; until then: walked with queries
            asyncio.run(run_pipeline(db, [seal(1, pbundle.link_of(seal(0, pbundle.ZERO_PREV)))], 1))
            tip = db.run_sync(lambda conn: conn.execute("SELECT contiguous_seq FROM device_state").fetchone())
            assert tip == (1,)
        finally:
            db.close()
