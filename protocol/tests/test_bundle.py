"""Bundle and ack build/verify beyond the vectors: round-trip properties and receiver options."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_devkit import test_keys
from pinseal_devkit.vectors import writer
from pinseal_protocol import ack, bundle, keys
from pinseal_protocol.bundle import Status
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import ALL, BY_REASON, BadSignature, UnknownDevice, WrongTopic
from pinseal_protocol.senml import Reading, Record

KEY = keys.load_private_key(test_keys.DEVICE_SEED)
PUB = keys.load_public_key(test_keys.DEVICE_PUB)

uint = st.integers(0, 2**64 - 1)
small = st.integers(-(2**63), 2**63 - 1)
values = st.one_of(small, st.builds(DecimalFraction, st.integers(-10, 10), small))
names = st.text(min_size=1, max_size=6).filter(lambda s: not s.endswith("_"))
records = st.one_of(
    st.builds(Record, names, st.one_of(st.none(), st.sampled_from(["Cel", "%RH", "Pa", "V"])), values),
    st.builds(lambda n, vs: Record(n, string_value=vs), names, st.text(max_size=10)),
)
readings = st.lists(
    st.builds(Reading, st.integers(0, 2**32), st.lists(records, min_size=1, max_size=4).map(tuple)),
    min_size=1,
    max_size=5,
)
statuses = st.builds(Status, st.integers(0, 65535), st.integers(-200, 0), uint, uint, st.integers(0, 255))


@settings(max_examples=100, deadline=None)
@given(
    boot=uint,
    seq=st.integers(0, 2**63),
    prev=st.binary(min_size=16, max_size=16),
    status=statuses,
    time_source=st.sampled_from([0, 1, 2]),
    readings=readings,
)
def test_seal_verify_round_trip(
    boot: int, seq: int, prev: bytes, status: Status, time_source: int, readings: list[Reading]
) -> None:
    data = bundle.seal(
        KEY, boot=boot, seq=seq, prev=prev, status=status, time_source=time_source, readings=readings
    )
    got = bundle.verify_bundle(data, PUB)
    assert (got.boot, got.seq, got.prev, got.status, got.time_source) == (
        boot,
        seq,
        prev,
        status,
        time_source,
    )
    assert got.readings == tuple(readings)
    assert got.n_readings == len(readings)
    assert got.last_seq == seq + len(readings) - 1
    assert got.kid == keys.key_id(PUB)
    assert got.link == bundle.link_of(data)


def test_receiver_options() -> None:
    data = bytes.fromhex(writer.generate()["bundle_one_reading_thp"]["bundle"])
    with pytest.raises(WrongTopic):
        bundle.verify_bundle(data, PUB, topic_kid=test_keys.OTHER_KID)
    with pytest.raises(UnknownDevice):
        bundle.verify_bundle(data, keys.load_public_key(test_keys.OTHER_PUB))
    assert bundle.verify_bundle(data, lambda kid: PUB, topic_kid=test_keys.DEVICE_KID).seq == 1000


def test_ack_round_trip_and_cover() -> None:
    gateway = keys.load_private_key(test_keys.GATEWAY_SEED)
    data = ack.sign_ack(gateway, device=test_keys.DEVICE_KID, seq=1010, bundle_hash=bytes(32), time=5)
    got = ack.verify_ack(data, keys.load_public_key(test_keys.GATEWAY_PUB), test_keys.DEVICE_KID)
    assert (got.seq, got.time, got.kid) == (1010, 5, test_keys.GATEWAY_KID)
    assert got.covers(1010) and not got.covers(1011)
    with pytest.raises(UnknownDevice):
        ack.verify_ack(data, PUB, test_keys.DEVICE_KID)
    forged = ack.sign_ack_payload(KEY, got.raw[-100:], kid=test_keys.GATEWAY_KID)
    with pytest.raises(BadSignature):
        ack.verify_ack(forged, keys.load_public_key(test_keys.GATEWAY_PUB), test_keys.DEVICE_KID)


def test_reasons_are_distinct() -> None:
    assert len(BY_REASON) == len(ALL) == 14
    for cls in ALL:
        assert cls("x").reason == cls.reason and str(cls("x")) == f"{cls.reason}: x"


def test_key_id_text_form() -> None:
    assert keys.key_id_hex(test_keys.DEVICE_PUB) == "21fe31dfa154a261626bf854046fd227"
    assert keys.parse_key_id_hex("21fe31dfa154a261626bf854046fd227") == test_keys.DEVICE_KID
    with pytest.raises(ValueError):
        keys.parse_key_id_hex("21FE31DFA154A261626BF854046FD227")
    with pytest.raises(ValueError):
        keys.key_id(bytes(31))
