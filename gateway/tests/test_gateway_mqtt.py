"""End to end through a real Mosquitto: devices publish as themselves, the gateway stores and acks."""

from __future__ import annotations

import itertools
import queue
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from pinseal_gateway.link import Message
from pinseal_gateway.metrics import Metrics
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import mqtt_frames, rejection


def rows(env, sql, *args):
    conn = sqlite3.connect(env.config.db_path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_device_bundle_is_stored_and_acked(env, gateway):
    device = env.devices[0]
    peer = env.device_peer(device)
    try:
        raws = [device.seal() for _ in range(5)]
        for raw in raws:
            peer.send(raw)
        acks = peer.acks_for({pbundle.bundle_hash(r) for r in raws})
    finally:
        peer.close()
    last = acks[pbundle.bundle_hash(raws[-1])]
    assert last.seq == 4
    assert last.kid == gateway.ctx.gateway_kid
    stored = rows(env, "SELECT seq, chain_gap, time_flag FROM bundles WHERE kid = ? ORDER BY seq", device.kid)
    assert stored == [(i, 0, None) for i in range(5)]
    assert rows(env, "SELECT count(*) FROM readings")[0][0] == 10
    (state,) = rows(
        env, "SELECT high_seq, contiguous_seq, bundles FROM device_state WHERE kid = ?", device.kid
    )
    assert state == (4, 4, 5)


def metric(gateway, name, **labels):
    value = gateway.ctx.metrics.registry.get_sample_value(f"pinseal_gateway_{name}", labels or None)
    return 0 if value is None else value


def flip_last_byte(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def wait_for_sentinel(peer):
    """An honest bundle after the bad ones: once it is acked, everything before it is committed (FIFO)."""
    sentinel = peer.device.seal()
    peer.send(sentinel)
    peer.acks_for({pbundle.bundle_hash(sentinel)})


def test_every_rejection_reason_end_to_end(env, gateway, new_device):
    a, b, c = env.devices
    stranger = new_device()  # never registered: the broker would not even let it log in
    su = env.superuser()
    peer_a = env.device_peer(a)
    peer_c = env.device_peer(c)
    try:
        # a stores seq 0 and 5 (devices may skip sequence numbers) and 6..
        first = a.seal()
        skipped = a.seal(seq=5)
        peer_a.send(first)
        peer_a.send(skipped)
        peer_a.acks_for({pbundle.bundle_hash(first), pbundle.bundle_hash(skipped)})
        good = a.seal(advance=False)
        conflicting = a.seal(seq=5, prev=pbundle.link_of(first), value=9999, advance=False)
        replayed = a.seal(seq=2, prev=pbundle.link_of(first), advance=False)
        bad = {
            "malformed": (a.up_topic, b"\xff\x00garbage"),
            "truncated": (a.up_topic, good[:-7]),
            "too_large": (a.up_topic, good + bytes(2100)),
            "bad_signature": (a.up_topic, flip_last_byte(good)),
            "unknown_device": (stranger.up_topic, stranger.seal()),
            "wrong_topic": (b.up_topic, good),
            "conflict": (a.up_topic, conflicting),
            "replayed": (a.up_topic, replayed),
        }
        for topic, payload in bad.values():
            su.publish(topic, payload)
        # revoked: c is still allowed by the broker (its files were not regenerated) but not by the gateway
        db = env.db()
        try:
            from pinseal_gateway.store import devices as device_store

            db.run_sync(device_store.revoke_device, c.kid)
        finally:
            db.close()
        time.sleep(1.3)  # the registry is re-read within a second
        peer_c.send(c.seal())
        wait_for_sentinel(peer_a)
    finally:
        su.close()
        peer_a.close()
        peer_c.close()
    reasons = [r for (r,) in rows(env, "SELECT reason FROM rejections ORDER BY id")]
    expected = ["malformed", "malformed", "too_large", "bad_signature", "unknown_device", "wrong_topic"]
    expected += ["conflict", "replayed", "revoked"]
    assert reasons == expected
    for reason in set(expected):
        assert metric(gateway, "rejected_total", reason=reason) == expected.count(reason)
    assert metric(gateway, "conflicts_total") == 1
    (evidence,) = rows(env, "SELECT evidence FROM rejections WHERE reason = 'conflict'")[0]
    assert evidence == conflicting  # the conflicting bytes are kept whole, as evidence
    kids = dict(rows(env, "SELECT reason, kid FROM rejections"))
    assert kids["revoked"] == c.kid and kids["bad_signature"] == a.kid and kids["wrong_topic"] == b.kid
    # nothing of the rejected bytes is stored; the honest ones are, once each
    stored = {h for (h,) in rows(env, "SELECT hash FROM bundles")}
    assert pbundle.bundle_hash(conflicting) not in stored and pbundle.bundle_hash(replayed) not in stored
    assert rows(env, "SELECT seq FROM bundles WHERE kid = ? ORDER BY seq", a.kid) == [(0,), (5,), (6,)]


def test_a_bundle_refused_for_good_is_answered_with_a_signed_rejection(env, gateway):
    """conflict, replayed and wrong_topic (docs/protocol.md §5.1): the device's own login sends them,
    and its ack topic gets the gateway's signed rejection naming the bundle and where the counter must
    continue; a bad signature gets none (the sender is not shown to be the device)."""
    a, b, _ = env.devices
    peer = env.device_peer(a)
    try:
        first = a.seal()
        high = a.seal(seq=9)
        peer.send(first)
        peer.send(high)
        peer.acks_for({pbundle.bundle_hash(first), pbundle.bundle_hash(high)})
        refused = {
            "conflict": a.seal(seq=9, prev=pbundle.link_of(first), value=9999, advance=False),
            "replayed": a.seal(seq=3, prev=pbundle.link_of(first), advance=False),
            "wrong_topic": b.seal(),  # another key's bundle, on a's topic (a's own login may publish there)
        }
        peer.send(flip_last_byte(a.seal(advance=False)))  # bad_signature: no rejection for it
        for raw in refused.values():
            peer.send(raw)
        while len(peer.rejections) < len(refused):
            reply = peer.reply()  # only rejections can come now: nothing was sent that earns an ack
            assert isinstance(reply, rejection.RejectionNotice), reply
            peer.rejections.append(reply)
        wait_for_sentinel(peer)  # and after it (in commit order) nothing for the bad signature
    finally:
        peer.close()
    notices = {n.reason: n for n in peer.rejections}
    assert sorted(notices) == sorted(refused), [n.reason for n in peer.rejections]
    for reason, raw in refused.items():
        notice = notices[reason]
        assert isinstance(notice, rejection.RejectionNotice)
        assert notice.bundle_hash == pbundle.bundle_hash(raw)
        assert notice.next_seq == 10  # a holds readings up to seq 9: its counter must continue at 10
        assert notice.kid == gateway.ctx.gateway_kid and notice.device == a.kid
    for reason in refused:
        assert metric(gateway, "rejections_sent_total", reason=reason) == 1
    assert metric(gateway, "rejections_sent_total", reason="bad_signature") == 0


def test_duplicate_is_reacked_not_stored_twice(env, gateway):
    device = env.devices[0]
    peer = env.device_peer(device)
    try:
        raw = device.seal()
        peer.send(raw)
        first = peer.ack()
        peer.send(raw)
        second = peer.ack()
    finally:
        peer.close()
    assert first.bundle_hash == second.bundle_hash == pbundle.bundle_hash(raw)
    assert second.seq == 0
    assert rows(env, "SELECT count(*) FROM bundles")[0][0] == 1
    assert rows(env, "SELECT count(*) FROM readings")[0][0] == 2
    assert metric(gateway, "duplicates_total") == 1
    assert metric(gateway, "acks_sent_total") == 2


def test_chain_gap_is_stored_flagged_and_filled(env, gateway):
    device = env.devices[0]
    peer = env.device_peer(device)
    try:
        b0, b1, b2 = device.seal(), device.seal(n=3), device.seal()
        peer.send(b0)
        assert peer.ack().seq == 0
        peer.send(b2)  # b1 lost on the way: b2's prev names nothing stored
        ack2 = peer.ack()
        assert ack2.bundle_hash == pbundle.bundle_hash(b2) and ack2.seq == 0  # does not cover b2 yet
        peer.send(b1)  # the missing link arrives late: accepted, and the chain is whole again
        ack1 = peer.ack()
        assert ack1.bundle_hash == pbundle.bundle_hash(b1) and ack1.seq == 4
    finally:
        peer.close()
    flags = dict(rows(env, "SELECT seq, chain_gap FROM bundles"))
    assert flags == {0: 0, 1: 0, 4: 1}
    assert metric(gateway, "chain_gaps_total") == 1
    assert rows(env, "SELECT gaps, contiguous_seq FROM device_state")[0] == (1, 4)


def test_time_flags(env, gateway):
    device = env.devices[0]
    peer = env.device_peer(device)
    now = int(time.time())
    try:
        raws = [
            device.seal(time_s=now + 3600),  # NTP time an hour ahead
            device.seal(time_s=now - 40 * 86400),  # 40 days old
            device.seal(time_s=now),
            device.seal(time_s=12, time_source=0),  # seconds since boot: not a clock time, never flagged
        ]
        for raw in raws:
            peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(r) for r in raws})
    finally:
        peer.close()
    flags = dict(rows(env, "SELECT seq, time_flag FROM bundles"))
    assert flags == {0: "future", 1: "stale", 2: None, 3: None}
    assert metric(gateway, "time_flags_total", flag="future") == 1
    assert metric(gateway, "time_flags_total", flag="stale") == 1


def test_broker_denies_publishing_on_another_devices_topic(env):
    a, b = env.devices[:2]
    watcher = env.superuser(subscribe="pinseal/v1/+/up")
    peer_a = env.device_peer(a)
    try:
        stolen = a.seal()
        peer_a.publish(b.up_topic, stolen)  # Mosquitto completes the QoS flow but drops it (ACL)
        honest = a.seal()
        peer_a.send(honest)
        topic, payload = watcher.get()
        assert (topic, payload) == (a.up_topic, honest)
        with pytest.raises(queue.Empty):
            watcher.get(timeout=0.5)
    finally:
        watcher.close()
        peer_a.close()


def test_honest_device_keeps_flowing_during_a_flood(env, gateway):
    attacker, honest = env.devices[:2]
    flood = env.device_peer(attacker)
    peer = env.device_peer(honest)
    garbage = [b"\x00" * 100, b"\xd2\x84" + bytes(60), flip_last_byte(attacker.seal(advance=False))]
    try:
        infos = [flood.publish(attacker.up_topic, garbage[i % 3], wait=False) for i in range(3000)]
        start = time.monotonic()
        raws = []
        for _ in range(30):
            raw = honest.seal()
            raws.append(raw)
            peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(r) for r in raws}, timeout=30)
        elapsed = time.monotonic() - start
        for info in infos:
            info.wait_for_publish(30)
    finally:
        flood.close()
        peer.close()
    assert elapsed < 20
    deadline = time.monotonic() + 20
    while (
        metric(gateway, "rejected_total", reason="malformed")
        + metric(gateway, "rejected_total", reason="bad_signature")
        + metric(gateway, "rejected_total", reason="wrong_tag")
        + metric(gateway, "rejected_total", reason="invalid_structure")
        < 3000
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    # issue 11 #8a: beyond its budget a publisher's rejections are tallied, not stored; none is lost
    stored = rows(env, "SELECT count(*) FROM rejections")[0][0]
    tallied = rows(env, "SELECT coalesce(sum(n), 0) FROM rejections_unstored WHERE why = 'rate_limited'")[0][
        0
    ]
    assert stored + tallied == 3000 and stored <= 300
    assert rows(env, "SELECT count(*) FROM bundles WHERE kid = ?", honest.kid)[0][0] == 30


class _CollectingPipeline:
    """Stands in for the pipeline: records what the ingest hands it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def submit_nowait(self, message: Message) -> None:
        self.messages.append(message)

    def has_room(self) -> bool:
        return True


def _publish(topic: str, payload: bytes, qos: int, mid: int, dup: bool) -> bytes:
    """Any topic a test draws (even one `mqtt_frames.publish` would refuse), framed by the host module."""
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    body += mid.to_bytes(2, "big") if qos else b""
    first = 0x30 | (qos << 1) | (0x08 if dup else 0)
    return mqtt_frames.frame(first, body + payload)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.one_of(
            st.tuples(
                st.just("publish"),
                st.text(min_size=1, max_size=40),
                st.one_of(st.binary(max_size=300), st.binary(min_size=16_380, max_size=17_000)),
                st.sampled_from([0, 1]),
                st.integers(1, 65535),
                st.booleans(),
            ),
            st.tuples(st.just("puback"), st.integers(1, 65535)),
            st.tuples(st.just("pingresp")),
        ),
        max_size=12,
    ),
    cuts=st.lists(st.integers(0, 40_000), max_size=8),
)
def test_ingest_splits_any_chunking_into_the_packets_sent(items, cuts):
    """However the stream is cut into reads, every PUBLISH reaches the pipeline once, in order, with its
    topic, payload, QoS and packet id; PUBACKs and other packets are consumed without leaking into it."""
    from pinseal_gateway.config import MqttSection
    from pinseal_gateway.intake.mqtt import MqttIngest

    pipeline = _CollectingPipeline()
    ingest = MqttIngest(MqttSection(), None, pipeline, Metrics())  # type: ignore[arg-type]
    sock = object()
    ingest._sock = sock  # type: ignore[assignment]
    stream = b""
    expected = []
    for item in items:
        if item[0] == "publish":
            _, topic, payload, qos, mid, dup = item
            stream += _publish(topic, payload, qos, mid, dup)
            expected.append((topic, payload, qos, mid if qos else 0))
        elif item[0] == "puback":
            stream += b"\x40\x02" + item[1].to_bytes(2, "big")
        else:
            stream += b"\xd0\x00"
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, stop in itertools.pairwise(bounds):
        ingest._frames_in(stream[start:stop])
    pending = ingest._splitter.pending
    assert pending == 0
    got = [(m.topic, m.payload, m.token[2], m.token[1]) for m in pipeline.messages]  # type: ignore[index]
    assert got == expected


def test_settle_writes_one_puback_per_current_qos1_message():
    """PUBACKs for QoS 1 messages of this connection only; QoS 0 and earlier connections get none."""
    from pinseal_gateway.config import MqttSection
    from pinseal_gateway.intake.mqtt import MqttIngest

    class _Loop:
        def add_writer(self, sock, callback):
            self.writer = (sock, callback)

    ingest = MqttIngest(MqttSection(), None, _CollectingPipeline(), Metrics())  # type: ignore[arg-type]
    sock = object()
    ingest._sock = sock  # type: ignore[assignment]
    ingest._loop = _Loop()  # type: ignore[assignment]
    ingest._generation = 3
    ingest.settle([(3, 1, 1), (3, 2, 0), (2, 3, 1), (3, 0x1234, 1)])
    assert bytes(ingest._out) == b"\x40\x02\x00\x01" + b"\x40\x02\x12\x34"
    assert ingest._loop.writer[0] is sock  # type: ignore[attr-defined]
    ingest._sock = None
    ingest._out.clear()
    ingest.settle([(3, 5, 1)])  # connection gone: the broker redelivers instead
    assert bytes(ingest._out) == b""


def _ack_topic(kid: bytes) -> str:
    return f"pinseal/v1/{kid.hex()}/ack"


def test_acks_in_flight_are_qos1_publishes_until_their_puback():
    from pinseal_gateway.intake.acks_in_flight import AcksInFlight

    flight = AcksInFlight(_ack_topic)
    kids = [bytes([i]) * 16 for i in range(3)]
    acks = [bytes([i]) * (100 + 60 * i) for i in range(3)]
    out = flight.publish(zip(kids, acks, strict=True))
    assert out == b"".join(
        _publish(_ack_topic(k), a, qos=1, mid=i + 1, dup=False)
        for i, (k, a) in enumerate(zip(kids, acks, strict=True))
    )
    assert len(flight) == 3
    assert flight.acknowledged(2) and not flight.acknowledged(2) and not flight.acknowledged(9)
    # after a reconnect: the unacknowledged ones again, oldest first, DUP set, same packet ids
    assert flight.resend() == _publish(_ack_topic(kids[0]), acks[0], 1, 1, True) + _publish(
        _ack_topic(kids[2]), acks[2], 1, 3, True
    )


def test_ack_packet_ids_wrap_and_skip_those_in_flight():
    from pinseal_gateway.intake.acks_in_flight import AcksInFlight

    flight = AcksInFlight(_ack_topic)
    flight.publish([(bytes(16), b"a")])  # id 1 stays in flight
    flight._last_id = 65534
    flight.publish([(bytes(16), b"b"), (bytes(16), b"c")])
    assert list(flight._packets) == [1, 65535, 2]  # 65535, then wraps past 0 and the in-flight 1


def test_oldest_ack_is_given_up_beyond_the_in_flight_limit(monkeypatch):
    from pinseal_gateway.intake import acks_in_flight

    monkeypatch.setattr(acks_in_flight, "MAX_IN_FLIGHT", 3)
    flight = acks_in_flight.AcksInFlight(_ack_topic)
    flight.publish([(bytes(16), bytes([i])) for i in range(5)])
    assert list(flight._packets) == [3, 4, 5] and flight.given_up == 2


def test_acks_published_while_disconnected_go_out_as_resends_after_the_connack():
    """No connection: the acks wait in flight; the next session's CONNACK sends them with DUP."""
    from pinseal_gateway.config import MqttSection
    from pinseal_gateway.intake.mqtt import MqttIngest

    class _Loop:
        def add_writer(self, sock, callback):
            self.writer = (sock, callback)

    ingest = MqttIngest(MqttSection(), None, _CollectingPipeline(), Metrics())  # type: ignore[arg-type]
    ingest._loop = _Loop()  # type: ignore[assignment]
    ingest.publish_acks([(bytes(16), b"ack-1"), (b"\x01" * 16, b"ack-2")])
    assert bytes(ingest._out) == b"" and len(ingest.acks_in_flight) == 2
    sock = object()
    ingest._sock = sock  # type: ignore[assignment]
    ingest.client.subscribe = lambda *a, **k: (0, 1)  # type: ignore[method-assign]
    flags = mqtt.ConnectFlags(session_present=True)
    ingest._on_connect(ingest.client, None, flags, ReasonCode(PacketTypes.CONNACK), None)
    assert bytes(ingest._out) == _publish(_ack_topic(bytes(16)), b"ack-1", 1, 1, True) + _publish(
        _ack_topic(b"\x01" * 16), b"ack-2", 1, 2, True
    )
    assert ingest._loop.writer[0] is sock  # type: ignore[attr-defined]
    # the broker's PUBACK completes one; the other stays for the next reconnect
    ingest._frames_in(b"\x40\x02\x00\x01")
    assert ingest._splitter.pending == 0
    assert len(ingest.acks_in_flight) == 1


def test_paho_is_the_release_the_intake_was_checked_against():
    """The intake reads the stream itself from the CONNACK on, relying on paho reading no further (next
    test). Another paho release may read ahead: check that test and `make bench-gateway`, then move
    PAHO_CHECKED (and the pin in pyproject.toml / constraints.txt) together."""
    import importlib.metadata

    from pinseal_gateway.intake.mqtt import PAHO_CHECKED

    assert importlib.metadata.version("paho-mqtt") == PAHO_CHECKED


def test_paho_reads_the_connack_and_not_a_byte_past_it():
    """The hand-over the intake relies on: with an external loop (socket callbacks set), one `loop_read`
    after the CONNECT handles the CONNACK and leaves what the broker sent after it in the socket, whole,
    even when it came in the same segment."""
    import select
    import socket

    from paho.mqtt.enums import CallbackAPIVersion

    server = socket.create_server(("127.0.0.1", 0))
    v2 = CallbackAPIVersion.VERSION2
    client = mqtt.Client(v2, client_id="c", clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
    client.on_socket_register_write = lambda *_: None
    connected = []
    client.on_connect = lambda c, u, flags, rc, p: connected.append((flags.session_present, rc.is_failure))
    client.on_message = lambda c, u, message: pytest.fail(f"paho read a PUBLISH: {message.payload!r}")
    try:
        client.connect("127.0.0.1", server.getsockname()[1], 30)
        conn, _ = server.accept()
        client.loop_write()
        conn.settimeout(5)
        assert mqtt_frames.split_frames(conn.recv(1024))[0][0][0] == 0x10  # the CONNECT
        after = mqtt_frames.publish("pinseal/v1/x/up", bytes(300), 1, 7) + mqtt_frames.PINGRESP_PACKET
        conn.sendall(mqtt_frames.frame(0x20, b"\x01\x00") + after)
        sock = client.socket()
        assert sock is not None
        select.select([sock], [], [], 5)
        time.sleep(0.2)  # all of it in the socket's buffer
        client.loop_read()
        assert connected == [(True, False)]
        sock.setblocking(True)
        sock.settimeout(5)
        left = b""
        while len(left) < len(after):
            left += sock.recv(len(after) - len(left))
        assert left == after
        conn.close()
    finally:
        client.loop_read()  # paho meets the EOF and closes its socket
        server.close()


def _ingest_on_a_socketpair(keepalive_s: int = 30):
    """An ingest whose stream is read here (as after a CONNACK), on one end of a socketpair."""
    import socket

    from pinseal_gateway.config import MqttSection
    from pinseal_gateway.intake.mqtt import MqttIngest

    class _Loop:
        def add_writer(self, sock, callback):
            self.writer = (sock, callback)

    ingest = MqttIngest(MqttSection(keepalive_s=keepalive_s), None, _CollectingPipeline(), Metrics())  # type: ignore[arg-type]
    ours, broker = socket.socketpair()
    ingest._loop = _Loop()  # type: ignore[assignment]
    ingest._conn_sock = ingest._sock = ours
    ingest._reset_stream()
    return ingest, ours, broker


def test_keepalive_pings_when_idle_and_drops_a_link_that_never_answers():
    ingest, ours, broker = _ingest_on_a_socketpair(keepalive_s=30)
    try:
        start = time.monotonic()
        ingest._keepalive(start + 10)
        assert bytes(ingest._out) == b""
        ingest._keepalive(start + 30)  # nothing sent for a keepalive: PINGREQ
        assert bytes(ingest._out) == mqtt_frames.PINGREQ_PACKET
        ingest._keepalive(start + 45)  # waiting for the PINGRESP, less than a keepalive
        assert bytes(ingest._out) == mqtt_frames.PINGREQ_PACKET and not ingest._dropping
        ingest._frames_in(mqtt_frames.PINGRESP_PACKET)
        ingest._out.clear()
        ingest._keepalive(time.monotonic() + 30)  # idle again: another PINGREQ
        assert bytes(ingest._out) == mqtt_frames.PINGREQ_PACKET
        ingest._keepalive(time.monotonic() + 60)  # no PINGRESP within a keepalive: the link is dead
        assert ingest._dropping
        broker.settimeout(5)
        assert broker.recv(16) == b""  # the connection is shut down; paho meets the EOF and reconnects
    finally:
        ours.close()
        broker.close()


@pytest.mark.parametrize(
    ("stream", "handed_on"),
    [
        # A length that cannot be framed: nothing of that read is handed on (it is all redelivered).
        (b"\x30\xff\xff\xff\xff\x7f", []),
        # A bad frame: the frames before it are handed on, none after it.
        (b"\x36\x03\x00\x01t", [b"before"]),  # QoS 3 PUBLISH
        (b"\x32\x03\x00\x01t", [b"before"]),  # QoS 1 PUBLISH without its packet id
        (b"\x20\x02\x00\x00", [b"before"]),  # a second CONNACK
    ],
)
def test_a_malformed_or_unexpected_frame_drops_the_connection(stream, handed_on):
    """Not acknowledged, nothing is lost: the broker redelivers it all after the reconnect."""
    ingest, ours, broker = _ingest_on_a_socketpair()
    try:
        good = mqtt_frames.publish("pinseal/v1/x/up", b"before", 1, 5)
        ingest._frames_in(good + stream + mqtt_frames.publish("pinseal/v1/x/up", b"after", 1, 6))
        assert [m.payload for m in ingest.inbox.messages] == handed_on  # type: ignore[attr-defined]
        assert ingest._dropping
        broker.settimeout(5)
        assert broker.recv(16) == b""
    finally:
        ours.close()
        broker.close()
