# pinseal.transport.mqtt_packets in the MicroPython VM: byte-exact encodings against packets written by
# hand from the MQTT 3.1.1 spec and (when the host provides them in /mqttvec/paho.json) by paho-mqtt,
# round trips, and rejection of malformed, truncated and oversized input with PacketError only.
# Run in board mode by hil_tests/tests/test_mqtt_packets.py, which also fuzzes decode() (mqtt_whole: the
# codec's decoders as the client calls them) here with Hypothesis-generated input.
import json

import mptest
import mqtt_whole as whole

from pinseal.transport import mqtt_packets as mp


def _rejects(data, max_packet=mp.MAX_PACKET, text=None):
    try:
        got = whole.decode(data, max_packet)
    except mp.PacketError as e:
        if text is not None:
            assert text in str(e), (data, e)
        return
    raise AssertionError("accepted %r as %r" % (data, got))


def _paho():
    try:
        with open("/mqttvec/paho.json") as f:
            return json.load(f)
    except OSError:
        raise mptest.SkipTest("no /mqttvec/paho.json (the host bridge writes it)")


# --- encode: byte-exact ---


def test_connect_with_user_password_keepalive_clean_session():
    got = mp.connect("abc", "u", b"p\x00w", 60, True)
    want = b"\x10\x17\x00\x04MQTT\x04\xc2\x00\x3c\x00\x03abc\x00\x01u\x00\x03p\x00w"
    assert got == want, got
    assert mp.connect(b"id", keepalive_s=0) == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x00\x00\x02id"
    assert mp.connect("id", clean_session=False)[9] == 0x00


def test_connect_refuses_what_the_spec_forbids():
    for args in (("id", None, "pw"), ("id", "u", None, 70000), ("", None, None, 60, False)):
        try:
            mp.connect(*args)
            raise AssertionError(args)
        except ValueError:
            pass


def test_publish_qos0_qos1_dup_retain():
    assert whole.publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert whole.publish("a/b", b"hi", 1, 10) == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    assert whole.publish("a/b", b"", 1, 0xFFFF, dup=True, retain=True) == b"\x3b\x07\x00\x03a/b\xff\xff"
    buf = bytearray(whole.publish("t", b"x", 1, 1))
    whole.set_dup(buf)
    assert buf[0] == 0x3A


def test_publish_remaining_length_boundaries():
    # Remaining lengths 127 / 128 / 16383 / 16384 (§2.2.3 table): 1, 2, 2, 3 bytes.
    for rl, head in (
        (127, b"\x30\x7f"),
        (128, b"\x30\x80\x01"),
        (16383, b"\x30\xff\x7f"),
        (16384, b"\x30\x80\x80\x01"),
    ):
        pkt = whole.publish("t", bytes(rl - 3), max_packet=20000)
        assert pkt[: len(head)] == head, (rl, pkt[:5])
        assert len(pkt) == len(head) + rl
        assert whole.decode(pkt, 20000)[1:3] == (b"t", bytes(rl - 3))
    buf = bytearray(4)
    assert mp.put_remaining_length(buf, 0, mp.MAX_REMAINING) == 4 and bytes(buf) == b"\xff\xff\xff\x7f"
    assert mp.decode_fixed_header(b"\x30" + bytes(buf), 5) == (0x30, mp.MAX_REMAINING, 5)


def test_publish_refusals():
    for topic, qos, pid, dup in (
        ("a/+", 0, 0, False),
        ("a/#", 0, 0, False),
        ("", 0, 0, False),
        ("t", 2, 1, False),
        ("t", 1, 0, False),
        ("t", 0, 0, True),
    ):
        try:
            whole.publish(topic, b"x", qos, pid, dup)
            raise AssertionError((topic, qos, pid, dup))
        except ValueError:
            pass
    try:
        whole.publish("t", bytes(5000))  # over the default bound
        raise AssertionError("oversized PUBLISH encoded")
    except ValueError:
        pass


def test_publish_header_writes_into_a_buffer_without_the_payload():
    topic = b"pinseal/v1/00112233445566778899aabbccddeeff/up"
    buf = bytearray(mp.publish_header_size(topic))
    n = mp.publish_header(buf, topic, 2000, 1, 7)
    assert bytes(buf[:n]) + bytes(2000) == whole.publish(topic, bytes(2000), 1, 7)


def test_puback_subscribe_ping_disconnect():
    assert whole.puback(0x1234) == b"\x40\x02\x12\x34"
    buf = bytearray(4)
    assert mp.puback_into(buf, 1) == 4 and buf == b"\x40\x02\x00\x01"
    assert mp.subscribe(2, "x/ack", 1) == b"\x82\x0a\x00\x02\x00\x05x/ack\x01"
    assert mp.PINGREQ_PACKET == b"\xc0\x00"
    assert mp.DISCONNECT_PACKET == b"\xe0\x00"


def test_encodings_equal_paho_mqtt():
    vectors = _paho()
    c = vectors["connect"]
    assert mp.connect(c["client_id"], c["username"], c["password"], c["keepalive"]) == bytes.fromhex(c["hex"])
    s = vectors["subscribe"]
    assert mp.subscribe(s["pid"], s["topic"], s["qos"]) == bytes.fromhex(s["hex"])
    for p in vectors["publish"]:
        payload = bytes.fromhex(p["payload"])
        got = whole.publish(p["topic"], payload, p["qos"], p["pid"], p["dup"], p["retain"])
        assert got == bytes.fromhex(p["hex"]), (p, got)
        assert whole.decode(got) == (
            mp.PUBLISH,
            p["topic"].encode(),
            payload,
            p["qos"],
            p["pid"],
            p["dup"],
            p["retain"],
        )
    assert mp.DISCONNECT_PACKET == bytes.fromhex(vectors["disconnect"])
    assert mp.PINGREQ_PACKET == bytes.fromhex(vectors["pingreq"])
    for pkt in vectors["broker"]:  # packets a real Mosquitto sent
        got = [x.hex() if isinstance(x, bytes) else x for x in whole.decode(bytes.fromhex(pkt["hex"]))]
        assert got == pkt["want"], (pkt, got)


# --- the host's framing: protocol/vectors/mqtt_frames.json (pinseal_devkit.vectors.mqtt_frame_cases) ---


def _decoded_fields(got):
    """mp.decode's tuple in the vector's field names."""
    kind = got[0]
    if kind == mp.CONNACK:
        return {"type": "connack", "session_present": got[1], "return_code": got[2]}
    if kind == mp.SUBACK:
        return {"type": "suback", "packet_id": got[1], "return_code": got[2]}
    if kind == mp.PUBACK:
        return {"type": "puback", "packet_id": got[1]}
    if kind == mp.PINGRESP:
        return {"type": "pingresp"}
    return {"type": "publish", "topic": got[1], "payload": got[2], "qos": got[3]}


def test_host_framing_vectors():
    # The host frames MQTT with its own module; both must produce and accept the same bytes. A missing
    # file is a failure, not a skip: the two codecs are only held equal if this ran.
    with open("/vectors/mqtt_frames.json") as f:
        v = json.load(f)
    assert v["kind"] == "mqtt_frames"
    for case in v["remaining_length"]:
        want = bytes.fromhex(case["hex"])
        buf = bytearray(4)
        n = mp.put_remaining_length(buf, 0, case["value"])
        assert bytes(buf[:n]) == want, case
        assert mp.remaining_length_size(case["value"]) == n, case
        assert mp.decode_fixed_header(b"\x30" + want, 1 + n) == (0x30, case["value"], 1 + n), case
    for case in v["remaining_length_malformed"]:
        data = bytes.fromhex(case["hex"])
        try:
            mp.decode_fixed_header(data, len(data))
            raise AssertionError("accepted " + case["defect"])
        except mp.PacketError:
            pass
    for p in v["publish"]:
        raw = bytes.fromhex(p["hex"])
        payload = bytes.fromhex(p["payload"])
        assert whole.publish(p["topic"], payload, p["qos"], p["packet_id"], p["dup"], p["retain"]) == raw, p
        want = (mp.PUBLISH, p["topic"].encode(), payload, p["qos"], p["packet_id"], p["dup"], p["retain"])
        assert whole.decode(raw) == want, p
    for p in v["puback"]:
        assert whole.puback(p["packet_id"]) == bytes.fromhex(p["hex"]), p
        assert whole.decode(bytes.fromhex(p["hex"])) == (mp.PUBACK, p["packet_id"]), p
    for c in v["connect"]:
        got = mp.connect(c["client_id"], c["username"], c["password"], c["keepalive_s"], c["clean_session"])
        assert got == bytes.fromhex(c["hex"]), c
    for s in v["subscribe"]:
        assert mp.subscribe(s["packet_id"], s["topic_filter"], s["qos"]) == bytes.fromhex(s["hex"]), s
    assert mp.PINGREQ_PACKET == bytes.fromhex(v["pingreq"])
    assert mp.DISCONNECT_PACKET == bytes.fromhex(v["disconnect"])
    for r in v["received"]:
        assert _decoded_fields(whole.decode(bytes.fromhex(r["hex"]))) == r["packet"], r
    for r in v["received_malformed"]:
        _rejects(bytes.fromhex(r["hex"]))


# --- decode ---


def test_decode_broker_packets():
    assert whole.decode(b"\x20\x02\x00\x00") == (mp.CONNACK, False, 0)
    assert whole.decode(b"\x20\x02\x00\x05") == (mp.CONNACK, False, 5)
    assert whole.decode(b"\x20\x02\x01\x00") == (mp.CONNACK, True, 0)
    assert whole.decode(b"\x90\x03\x00\x07\x01") == (mp.SUBACK, 7, 1)
    assert whole.decode(b"\x90\x03\x00\x07\x80") == (mp.SUBACK, 7, 0x80)
    assert whole.decode(b"\xd0\x00") == (mp.PINGRESP,)
    assert whole.decode(b"\x40\x02\xff\xfe") == (mp.PUBACK, 0xFFFE)
    assert whole.decode(b"\x3b\x07\x00\x03a/b\xff\xff") == (mp.PUBLISH, b"a/b", b"", 1, 0xFFFF, True, True)


def test_round_trips():
    for pid in (1, 2, 255, 256, 0xFFFF):
        assert whole.decode(whole.puback(pid)) == (mp.PUBACK, pid)
    for qos in (0, 1):
        for payload in (b"", b"\x00", bytes(range(256)) * 4):
            pid = 77 if qos else 0
            pkt = whole.publish("pinseal/v1/x/ack", payload, qos, pid, False, qos == 0)
            assert whole.decode(pkt) == (mp.PUBLISH, b"pinseal/v1/x/ack", payload, qos, pid, False, qos == 0)
    for n in (0, 1, 127, 128, 16383, 16384, 2097151, 2097152, mp.MAX_REMAINING):
        buf = bytearray(5)
        buf[0] = 0x30
        end = mp.put_remaining_length(buf, 1, n)
        assert end == 1 + mp.remaining_length_size(n)
        assert mp.decode_fixed_header(buf, end) == (0x30, n, end)
        assert mp.decode_fixed_header(buf, end - 1) is None  # incomplete: wait for more


def test_malformed_and_truncated_input_raises_packet_error_only():
    cases = (
        (b"", "truncated"),
        (b"\x20", "truncated"),
        (b"\x20\x02\x00", "truncated"),
        (b"\x20\x02\x00\x00\x00", "after the packet"),
        (b"\x20\x03\x00\x00\x00", "not 2"),
        (b"\x20\x02\x02\x00", "reserved flags"),
        (b"\x20\x02\x00\x06", "undefined"),
        (b"\x20\x02\x01\x04", "session present"),
        (b"\x21\x02\x00\x00", "bad flags"),
        (b"\x00\x00", "reserved packet type"),
        (b"\xf0\x00", "reserved packet type"),
        (b"\x36\x05\x00\x01t\x00\x01", "QoS 3"),
        (b"\x38\x03\x00\x01t", "DUP set"),
        (b"\x30\x01\x00", "topic length"),
        (b"\x30\x02\x00\x00", "empty topic"),
        (b"\x30\x04\x00\x05ab", "in the topic"),
        (b"\x32\x04\x00\x01t\x00", "packet id"),
        (b"\x32\x05\x00\x01t\x00\x00", "packet id 0"),
        (b"\x30\x04\x00\x02a#", "wildcard"),
        (b"\x30\x04\x00\x02a+", "wildcard"),
        (b"\x30\x04\x00\x02a\x00", "NUL"),
        (b"\x40\x02\x00\x00", "packet id 0"),
        (b"\x40\x03\x00\x01\x00", "not 2"),
        (b"\x90\x04\x00\x01\x00\x00", "one filter"),
        (b"\x90\x03\x00\x01\x03", "undefined"),
        (b"\xd0\x01\x00", "not 0"),
        (b"\xc0\x00", "not sent to a client"),  # PINGREQ
        (b"\x10\x00", "not sent to a client"),
        (b"\x62\x02\x00\x01", "not sent to a client"),  # PUBREL (QoS 2 is never used)
        (b"\x60\x02\x00\x01", "bad flags"),
        (b"\x30\x80\x00", "minimally"),
        (b"\x30\x80\x80\x80\x80\x01", "longer than 4"),
        (b"\x30\xff\xff\xff\x7f", "over the bound"),
        (b"\x30\x80\x80\x80", "truncated"),
    )
    for data, text in cases:
        _rejects(data, text=text)
    _rejects(whole.publish("t", bytes(100)), max_packet=50, text="over the bound")


def test_publish_prefix_decode_for_an_oversized_message():
    pkt = whole.publish("pinseal/v1/x/ack", bytes(3000), 1, 9, max_packet=5000)
    first, rl, hs = mp.decode_fixed_header(pkt, 5)
    body = memoryview(pkt)[hs:]
    assert mp.decode_publish(first, body, 64) == (2, 18, 9, 20)
    try:
        mp.decode_publish(first, body, 10)
        raise AssertionError("a prefix cut inside the topic decoded")
    except mp.PacketError:
        pass


def _fuzz_file():
    try:
        return open("/mqttvec/fuzz.txt")
    except OSError:
        raise mptest.SkipTest("no /mqttvec/fuzz.txt (the host bridge writes it)")


def _check_one(i, line):
    data = bytes.fromhex(line)
    try:
        got = whole.decode(data)
    except mp.PacketError:
        return False
    except Exception as e:
        print("CRASH", i, line, repr(e))
        raise
    kind = got[0]
    if kind == mp.PUBLISH and got[3] == 2:
        # A well-formed QoS 2 PUBLISH decodes (a broker may frame one); the device only ever sends QoS 0/1,
        # so compare with its QoS 1 encoding: the same bytes but the two QoS bits of the first byte.
        again = whole.publish(got[1], got[2], 1, got[4], got[5], got[6])
        assert again[1:] == data[1:] and again[0] ^ data[0] == 0x06, (i, line)
    elif kind == mp.PUBLISH:
        again = whole.publish(got[1], got[2], got[3], got[4], got[5], got[6])
        assert again == data, (i, line)
    elif kind == mp.PUBACK:
        assert whole.puback(got[1]) == data, (i, line)
    # Every proper prefix of an accepted packet is incomplete: PacketError, never a result.
    for cut in range(len(data)):
        try:
            whole.decode(data[:cut])
            raise AssertionError("prefix %d of %s accepted" % (cut, line))
        except mp.PacketError:
            pass
    return True


async def test_fuzz_corpus_from_the_host():
    # Every line is hex of one input; decode() must return or raise PacketError, and an accepted PUBLISH
    # or PUBACK must re-encode to the very same bytes (the decoder accepts only canonical encodings).
    # Read line by line and yield after each input: in board mode garbage is collected between steps.
    import asyncio

    f = _fuzz_file()
    inputs = accepted = 0
    try:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if _check_one(inputs, line):
                accepted += 1
            inputs += 1
            await asyncio.sleep_ms(0)
    finally:
        f.close()
    print("FUZZ inputs %d accepted %d rejected %d" % (inputs, accepted, inputs - accepted))
