"""The device's MQTT 3.1.1 codec (firmware/pinseal/transport/mqtt_packets.py) in the MicroPython VM.

hil_tests/firmware_tests/test_mqtt_packets.py runs in board mode (VMOptions.board()) with two inputs the
host makes and mounts at /mqttvec:

- paho.json: packets paho-mqtt writes (CONNECT with user name, password and keepalive, SUBSCRIBE,
  PUBLISH QoS 0/1 with retain, DISCONNECT, PINGREQ), captured on a socket, and packets a real Mosquitto
  sends (CONNACK, SUBACK, PUBLISH, PINGRESP), captured from a raw connection: the device's encoder must
  produce the same bytes, its decoder must read Mosquitto's.
- fuzz.txt: Hypothesis-generated input (valid packets, mutated ones, random bytes, hostile lengths), one
  hex line each, decoded in one VM pass: decode() may only return or raise PacketError, never crash or
  hang, and what it accepts must re-encode to the same bytes.

The same run checks protocol/vectors/mqtt_frames.json (mounted at /vectors) against the device's codec:
the frames the host's module (pinseal_protocol.mqtt_frames) makes and refuses. The host's packets here
are framed by that module too: it is independent of the firmware's codec.
"""

from __future__ import annotations

import json
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_hil.tls_broker import TestBroker, start_test_broker
from pinseal_protocol import mqtt_frames
from pinseal_vboard.vm import DEFAULT_MOUNTS, VMOptions, VMResult, run_firmware_test_module

pytestmark = [pytest.mark.vm]

MODULE = "test_mqtt_packets"
FUZZ_EXAMPLES = 3000


# --- the host's MQTT framing (pinseal_protocol.mqtt_frames), independent of the firmware's ---


def _packet(first: int, body: bytes) -> bytes:
    return mqtt_frames.frame(first, body)


def _publish(topic: bytes, payload: bytes, qos: int, pid: int, dup: bool, retain: bool) -> bytes:
    return mqtt_frames.publish(topic, payload, qos, pid, dup, retain)


def _read_packet(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError("peer closed")
            data += chunk
        return data

    head = exactly(2)
    while (decoded := mqtt_frames.decode_remaining_length(head, 1)) is None:
        head += exactly(1)
    length, body = decoded
    return head + exactly(body + length - len(head))


# --- paho's packets ---


def _paho_client_packets() -> dict[str, object]:
    """What paho-mqtt 2.x (MQTT 3.1.1) writes, captured by a socket that plays the broker."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="dev-0123", protocol=mqtt.MQTTv311, clean_session=True
    )
    client.username_pw_set("00112233445566778899aabbccddeeff", "s3cret-\u00e9")
    out: dict[str, object] = {}
    try:
        client.connect("127.0.0.1", port, keepalive=45)
        conn, _ = server.accept()
        conn.settimeout(10)
        out["connect"] = {
            "client_id": "dev-0123",
            "username": "00112233445566778899aabbccddeeff",
            "password": "s3cret-\u00e9",
            "keepalive": 45,
            "hex": _read_packet(conn).hex(),
        }
        conn.sendall(b"\x20\x02\x00\x00")
        client.loop(0.2)
        _, mid = client.subscribe("pinseal/v1/00112233445566778899aabbccddeeff/ack", qos=1)
        out["subscribe"] = {
            "pid": mid,
            "topic": "pinseal/v1/00112233445566778899aabbccddeeff/ack",
            "qos": 1,
            "hex": _read_packet(conn).hex(),
        }
        publishes = []
        for topic, payload, qos, retain in (
            ("pinseal/v1/00112233445566778899aabbccddeeff/up", bytes(range(200)), 1, False),
            ("a/b", b"hi", 0, True),
            ("t", b"", 1, False),
            ("long/" + "x" * 300, b"\xff" * 2000, 1, False),  # 2-byte remaining length
        ):
            info = client.publish(topic, payload, qos=qos, retain=retain)
            publishes.append(
                {
                    "topic": topic,
                    "payload": payload.hex(),
                    "qos": qos,
                    "pid": info.mid if qos else 0,
                    "dup": False,
                    "retain": retain,
                    "hex": _read_packet(conn).hex(),
                }
            )
        out["publish"] = publishes
        client.disconnect()
        out["disconnect"] = _read_packet(conn).hex()
        conn.close()
    finally:
        server.close()
    out["pingreq"] = "c000"  # paho sends it only after keepalive seconds; the spec's fixed bytes
    return out


def _mosquitto_packets(broker: TestBroker) -> list[dict[str, object]]:
    """What a real Mosquitto sends a client: CONNACK, SUBACK, PUBLISH (QoS 1 and 0), PINGRESP."""
    topic = b"pinseal/v1/ffeeddccbbaa99887766554433221100/ack"
    packets: list[dict[str, object]] = []
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(mqtt_frames.connect(b"raw-device", keepalive_s=60))
        packets.append({"hex": _read_packet(sock).hex(), "want": [2, False, 0]})
        sock.sendall(mqtt_frames.subscribe(5, topic, 1))
        packets.append({"hex": _read_packet(sock).hex(), "want": [9, 5, 1]})
        for qos in (1, 0):
            payload = bytes([qos]) * 160
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"host-pub-{qos}")
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            pub.publish(topic.decode(), payload, qos=qos).wait_for_publish(10)
            pub.disconnect()
            pub.loop_stop()
            raw = _read_packet(sock)
            at = len(raw) - len(payload) - 2  # the packet id sits just before the payload
            pid = struct.unpack(">H", raw[at : at + 2])[0] if qos else 0
            want = [3, topic.hex(), payload.hex(), qos, pid, False, False]
            packets.append({"hex": raw.hex(), "want": want})
            if qos:
                sock.sendall(mqtt_frames.puback(pid))
        sock.sendall(mqtt_frames.PINGREQ_PACKET)
        packets.append({"hex": _read_packet(sock).hex(), "want": [13]})
    return packets


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    running = start_test_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield running
    finally:
        running.stop()


def _run(vec_dir: Path, only: str | None = None, timeout_s: float = 300) -> VMResult:
    options = VMOptions.board(timeout_s=timeout_s, mounts=(*DEFAULT_MOUNTS, (vec_dir, "/mqttvec")))
    return run_firmware_test_module(MODULE, only, options)


def test_codec_in_board_mode_against_paho_and_mosquitto(tmp_path: Path, mosquitto: TestBroker) -> None:
    vectors = _paho_client_packets()
    vectors["broker"] = _mosquitto_packets(mosquitto)
    (tmp_path / "paho.json").write_text(json.dumps(vectors))
    result = _run(tmp_path)
    assert result.returncode == 0, result.output
    assert "PASS test_encodings_equal_paho_mqtt" in result.stdout, result.output
    assert "PASS test_host_framing_vectors" in result.stdout, result.output
    assert " 0 failed" in result.stdout and "SKIP test_fuzz" in result.stdout, result.output


# --- fuzzing the device decoder in the device VM ---

_topics = st.binary(min_size=1, max_size=40).filter(lambda t: not set(t) & {0, 0x23, 0x2B})


@st.composite
def _valid_packets(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["publish", "puback", "connack", "suback", "pingresp"]))
    if kind == "publish":
        qos = draw(st.integers(0, 1))
        return _publish(
            draw(_topics),
            draw(st.binary(max_size=200)),
            qos,
            draw(st.integers(1, 0xFFFF)) if qos else 0,
            draw(st.booleans()) if qos else False,
            draw(st.booleans()),
        )
    if kind == "puback":
        return _packet(0x40, struct.pack(">H", draw(st.integers(0, 0xFFFF))))
    if kind == "connack":
        return _packet(0x20, bytes([draw(st.integers(0, 2)), draw(st.integers(0, 7))]))
    if kind == "suback":
        return _packet(0x90, struct.pack(">H", draw(st.integers(0, 3))) + bytes([draw(st.integers(0, 0x82))]))
    return b"\xd0\x00"


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(_valid_packets()))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "cut", "append", "insert", "delete"]))
        if op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=8))
        elif not data:
            continue
        else:
            i = draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif op == "set":
                data[i] = draw(st.integers(0, 255))
            elif op == "insert":
                data.insert(i, draw(st.integers(0, 255)))
            else:
                del data[i]
    return bytes(data)


@st.composite
def _hostile_lengths(draw: st.DrawFn) -> bytes:
    """A valid first byte, then remaining-length bytes of any shape (long, non-minimal, huge)."""
    first = draw(st.sampled_from([0x20, 0x30, 0x32, 0x3B, 0x40, 0x90, 0xD0]))
    length = draw(st.lists(st.integers(0, 255), min_size=1, max_size=6))
    return bytes([first, *length]) + draw(st.binary(max_size=16))


_inputs = st.one_of(_valid_packets(), _mutated(), _hostile_lengths(), st.binary(max_size=48))


def _corpus() -> list[bytes]:
    found: list[bytes] = []

    @settings(
        max_examples=FUZZ_EXAMPLES,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(_inputs)
    def collect(data: bytes) -> None:
        found.append(data)

    collect()
    return found


def test_fuzzed_input_raises_only_packet_error_in_the_vm(tmp_path: Path) -> None:
    corpus = _corpus()
    assert len(corpus) >= FUZZ_EXAMPLES // 2
    # Always in the corpus: a well-formed QoS 2 PUBLISH (decodable, though the device never sends one). A
    # mutated packet that happened to be one made the VM check re-encode it with the QoS 0/1 encoder.
    corpus.append(mqtt_frames.frame(0x34, b"\x00\x01t\x00\x07qos-two"))
    (tmp_path / "fuzz.txt").write_text("".join((d.hex() or "") + "\n" for d in corpus if d) + "\n")
    result = _run(tmp_path, "test_fuzz_corpus_from_the_host", timeout_s=600)
    assert "CRASH" not in result.stdout, result.output
    assert not result.timed_out, result.output
    assert result.returncode == 0 and "PASS test_fuzz_corpus_from_the_host" in result.stdout, result.output
    m = re.search(r"FUZZ inputs (\d+) accepted (\d+) rejected (\d+)", result.stdout)
    assert m, result.output
    print(m.group(0))
    inputs, accepted, rejected = (int(g) for g in m.groups())
    assert inputs == len([d for d in corpus if d]), result.output
    # The corpus must exercise both verdicts, or it tests nothing.
    assert accepted > inputs // 20 and rejected > inputs // 5, result.output
