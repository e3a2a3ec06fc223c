# pinseal.transport.serial_frames in the MicroPython VM: protocol/vectors/serial_frames.json (COBS blocks,
# frames, damaged streams with the reason each stretch is dropped), the same streams fed a byte at a time
# and in odd chunks, and seeded damage that must never deliver a frame that was not sent.
# Run by hil_tests/tests/test_firmware_in_vm.py, as every module here.
import json
import random

from pinseal.transport import serial_frames as sf

with open("/vectors/serial_frames.json") as f:
    VECTORS = json.load(f)


def _events(events):
    out = []
    for kind, value in events:
        if kind is None:
            out.append({"dropped": value})
        else:
            out.append({"frame": {"kind": kind, "payload": value.hex()}})
    return out


def _feed_chunked(raw, sizes):
    reader = sf.Reader()
    got = []
    i = 0
    k = 0
    while i < len(raw):
        size = sizes[k % len(sizes)]
        got += reader.feed(raw[i : i + size])
        i += size
        k += 1
    return got


def test_constants_match_the_file():
    assert VECTORS["version"] == sf.VERSION and VECTORS["max_payload"] == sf.MAX_PAYLOAD


def test_cobs():
    for v in VECTORS["cobs"]:
        data, encoded = bytes.fromhex(v["data"]), bytes.fromhex(v["hex"])
        assert sf.cobs_encode(data) == encoded, v["data"][:16]
        assert bytes(sf.cobs_decode(encoded)) == data, v["hex"][:16]


def test_frames_encode_and_read_back():
    for v in VECTORS["frames"]:
        raw, payload = bytes.fromhex(v["hex"]), bytes.fromhex(v["payload"])
        assert sf.encode(v["kind"], payload) == raw, len(payload)
        assert sf.decode(raw[:-1]) == (v["kind"], payload)
        assert len(raw) <= sf.MAX_FRAME


def test_streams_whole_and_chunked():
    for v in VECTORS["streams"]:
        raw = bytes.fromhex(v["hex"])
        assert _events(sf.Reader().feed(raw)) == v["events"], v["defect"]
        assert _events(_feed_chunked(raw, [1])) == v["events"], v["defect"]
        assert _events(_feed_chunked(raw, [3, 7, 254, 1])) == v["events"], v["defect"]


def test_encode_refuses_what_no_reader_takes():
    for kind, payload in ((4, b""), (sf.KIND_BUNDLE, bytes(sf.MAX_PAYLOAD + 1))):
        try:
            sf.encode(kind, payload)
        except ValueError:
            continue
        raise AssertionError("encoded kind %d, %d bytes" % (kind, len(payload)))


def test_seeded_damage_never_delivers_a_frame_that_was_not_sent():
    random.seed(5)
    rnd = random
    delivered_intact = 0
    for _ in range(150):
        sent = []
        for _ in range(rnd.randint(1, 3)):
            n = rnd.choice((0, 1, 40, 253, 254, 300))
            payload = bytes(rnd.getrandbits(8) if rnd.random() < 0.8 else 0 for _ in range(n))
            sent.append((rnd.choice((1, 2)), payload))
        raw = bytearray(b"".join(sf.encode(k, p) for k, p in sent))
        for _ in range(rnd.randint(0, 3)):
            raw[rnd.randrange(len(raw))] ^= rnd.randint(1, 255)
        if rnd.random() < 0.3:  # a byte lost on the line
            cut = rnd.randrange(len(raw))
            raw = raw[:cut] + raw[cut + 1 :]
        for kind, value in _feed_chunked(bytes(raw), [rnd.randint(1, 64)]):
            if kind is None:
                assert value in ("cobs", "short", "crc", "version", "kind", "oversize"), value
            else:
                assert (kind, value) in sent, (kind, value)
                delivered_intact += 1
    assert delivered_intact > 0  # the damage left some frames whole, and those came through
