"""The host's MQTT framing (pinseal_protocol.mqtt_frames): round trips, any chunking, malformed lengths."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_protocol import mqtt_frames as mf

topics = st.binary(min_size=1, max_size=60).filter(lambda t: not set(t) & {0, ord("+"), ord("#")})
packet_ids = st.integers(1, 0xFFFF)


@st.composite
def publishes(draw: st.DrawFn) -> mf.Publish:
    qos = draw(st.sampled_from([0, 1]))
    return mf.Publish(
        topic=draw(topics),
        payload=draw(st.one_of(st.binary(max_size=300), st.binary(min_size=16_370, max_size=16_400))),
        qos=qos,
        packet_id=draw(packet_ids) if qos else 0,
        dup=draw(st.booleans()) if qos else False,
        retain=draw(st.booleans()),
    )


def encode(packet: mf.Received) -> bytes:
    """The bytes of a packet a client receives (the broker's side, for these tests)."""
    if isinstance(packet, mf.Publish):
        p = packet
        return mf.publish(p.topic, p.payload, p.qos, p.packet_id, p.dup, p.retain)
    if isinstance(packet, mf.Puback):
        return mf.puback(packet.packet_id)
    if isinstance(packet, mf.Connack):
        return mf.frame(mf.CONNACK << 4, bytes((packet.session_present, packet.return_code)))
    if isinstance(packet, mf.Suback):
        return mf.frame(mf.SUBACK << 4, packet.packet_id.to_bytes(2, "big") + bytes((packet.return_code,)))
    return mf.PINGRESP_PACKET


received_packets = st.one_of(
    publishes(),
    st.builds(mf.Puback, packet_ids),
    st.builds(lambda present, code: mf.Connack(present and not code, code), st.booleans(), st.integers(0, 5)),
    st.builds(mf.Suback, packet_ids, st.sampled_from([0, 1, 2, mf.SUBACK_FAILURE])),
    st.just(mf.Pingresp()),
)


@given(st.integers(0, mf.MAX_REMAINING_LENGTH))
def test_remaining_length_round_trips_in_its_fewest_bytes(n):
    encoded = mf.encode_remaining_length(n)
    assert len(encoded) == 1 + (n >= 128) + (n >= 16_384) + (n >= 2_097_152)
    assert mf.decode_remaining_length(b"\x30" + encoded, 1) == (n, 1 + len(encoded))
    for cut in range(len(encoded)):  # every proper prefix: read more, never a value
        assert mf.decode_remaining_length(encoded[:cut], 0) is None


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"), (268_435_455, "ffffff7f")],
)
def test_remaining_length_table_of_the_spec(n, encoded):
    assert mf.encode_remaining_length(n).hex() == encoded  # MQTT 3.1.1 §2.2.3, table 2.4


@pytest.mark.parametrize("n", [-1, mf.MAX_REMAINING_LENGTH + 1])
def test_remaining_length_out_of_range_is_refused(n):
    with pytest.raises(ValueError, match="remaining length"):
        mf.encode_remaining_length(n)


@given(st.lists(st.integers(0x80, 0xFF), min_size=4, max_size=8), st.binary(max_size=8))
def test_a_length_longer_than_four_bytes_is_a_frame_error(continued, tail):
    stream = b"\x30" + bytes(continued) + tail
    with pytest.raises(mf.FrameError, match="longer than 4 bytes"):
        mf.split_frames(stream)
    with pytest.raises(mf.FrameError, match="longer than 4 bytes"):
        mf.FrameSplitter().feed(stream)


@given(st.integers(1, 3), st.binary(max_size=4))
def test_a_length_not_in_its_fewest_bytes_is_a_frame_error(extra, tail):
    stream = b"\x30" + b"\x81" + b"\x80" * (extra - 1) + b"\x00" + tail  # 1, padded with zero digits
    with pytest.raises(mf.FrameError, match="fewest bytes"):
        mf.split_frames(stream)
    with pytest.raises(mf.FrameError, match="fewest bytes"):
        mf.decode(stream)


def test_a_frame_over_the_bound_is_a_frame_error_before_its_body_arrives():
    header = b"\x30" + mf.encode_remaining_length(5000)
    with pytest.raises(mf.FrameError, match="over the bound 4096"):
        mf.split_frames(header, max_remaining=4096)
    assert mf.split_frames(header) == ([], 0)  # unbounded: wait for the body


@settings(max_examples=300, deadline=None)
@given(received_packets)
def test_every_packet_decodes_to_what_was_encoded(packet):
    data = encode(packet)
    assert mf.decode(data) == packet
    for cut in (0, 1, len(data) - 1):  # truncated, or with a byte after it: never a packet
        with pytest.raises(mf.FrameError):
            mf.decode(data[:cut])
    with pytest.raises(mf.FrameError, match="bytes after"):
        mf.decode(data + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.lists(received_packets, max_size=12), st.lists(st.integers(0, 40_000), max_size=10))
def test_any_chunking_of_a_stream_splits_into_the_same_packets(packets, cuts):
    stream = b"".join(encode(p) for p in packets)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    splitter = mf.FrameSplitter()
    got = []
    for start, stop in itertools.pairwise(bounds):
        buf, spans = splitter.feed(stream[start:stop])
        for first, body, end in spans:
            header = bytes((first,)) + mf.encode_remaining_length(end - body)
            assert buf[body - len(header) + 1 : body] == header[1:]
            got.append(mf.decode(header + buf[body:end]))
    assert splitter.pending == 0
    assert got == packets


@settings(max_examples=200, deadline=None)
@given(publishes())
def test_publish_fields_read_a_publish_in_place(packet):
    data = b"junk" + encode(packet) + b"more"
    (first, body, end), *_ = mf.split_frames(data[4:])[0]
    body, end = body + 4, end + 4
    topic_start, topic_end, packet_id, payload = mf.publish_fields(first, data, body, end)
    assert (data[topic_start:topic_end], data[payload:end], packet_id) == (
        packet.topic,
        packet.payload,
        packet.packet_id,
    )


def test_resend_sets_dup_and_keeps_the_rest():
    packet = mf.publish("pinseal/v1/x/ack", b"ack", 1, 7)
    assert mf.decode(mf.as_resend(packet)) == mf.Publish(b"pinseal/v1/x/ack", b"ack", 1, 7, True, False)


def test_encoders_match_the_spec_byte_for_byte():
    assert mf.publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert mf.publish("a/b", b"hi", 1, 10) == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    assert mf.publish("a/b", b"", 1, 0xFFFF, dup=True, retain=True) == b"\x3b\x07\x00\x03a/b\xff\xff"
    assert mf.puback(0x1234) == b"\x40\x02\x12\x34"
    assert mf.pubacks([1, 0x1234]) == b"\x40\x02\x00\x01\x40\x02\x12\x34"
    assert mf.connect("abc", "u", b"p\x00w", 60) == (
        b"\x10\x17\x00\x04MQTT\x04\xc2\x00\x3c\x00\x03abc\x00\x01u\x00\x03p\x00w"
    )
    assert mf.subscribe(5, "a/+", 1) == b"\x82\x08\x00\x05\x00\x03a/+\x01"


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (mf.publish, ("a/+", b"")),
        (mf.publish, ("", b"")),
        (mf.publish, ("t", b"", 2, 1)),
        (mf.publish, ("t", b"", 1, 0)),
        (mf.publish, ("t", b"", 0, 0, True)),
        (mf.puback, (0,)),
        (mf.subscribe, (0, "t")),
        (mf.connect, ("id", None, "pw")),
        (mf.connect, ("", None, None, 60, False)),
    ],
)
def test_encoders_refuse_what_the_spec_forbids(call, args):
    with pytest.raises(ValueError):
        call(*args)


@pytest.mark.parametrize(
    "hex_packet",
    [
        "3603000174",  # QoS 3
        "3803000174",  # DUP on QoS 0
        "3204000174",  # QoS 1 without room for the packet id
        "32050001740000",  # packet id 0
        "30020000",  # empty topic
        "3003000123",  # wildcard in the topic name
        "41020001",  # reserved flag bits on a PUBACK
        "20020105",  # refusal with session present
        "9003000103",  # SUBACK return code 3
        "c000",  # PINGREQ: a broker never sends one to a client
        "d00100",  # PINGRESP with a body
        "00",  # truncated fixed header
    ],
)
def test_malformed_packets_are_frame_errors(hex_packet):
    with pytest.raises(mf.FrameError):
        mf.decode(bytes.fromhex(hex_packet))
