"""protocol/vectors/mqtt_frames.json: MQTT 3.1.1 frames both codecs must agree on, from the host's module.

    python -m pinseal_devkit.vectors.mqtt_frame_cases OUTDIR   (also written by `make vectors`)

The host frames MQTT with `pinseal_protocol.mqtt_frames`, a device with its own
firmware/pinseal/transport/mqtt_packets.py; neither imports the other. This file holds them equal the
way the bundle vectors hold the two CBOR/COSE codecs equal: protocol/tests/test_mqtt_frame_vectors.py
checks it against the host module, hil_tests/firmware_tests/test_mqtt_packets.py against the device's
inside the MicroPython VM. Every case is written out by hand below (the spec's boundaries, what the
gateway and a device send each other, each single defect a decoder must refuse) and only its bytes
are computed, so a reviewer reads the cases here and the diff of the JSON shows any change in bytes.
Payloads stay under the device decoder's 4,096-byte bound.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pinseal_devkit.vectors import single_file
from pinseal_protocol import mqtt_frames as mf

FILE_NAME = "mqtt_frames.json"

DEVICE_KID_HEX = "21fe31dfa154a261626bf854046fd227"  # the vectors' device (RFC 8032 §7.1 TEST 1)
UP_TOPIC = f"pinseal/v1/{DEVICE_KID_HEX}/up"
ACK_TOPIC = f"pinseal/v1/{DEVICE_KID_HEX}/ack"

# §2.2.3's table: each length's boundaries, 1 to 4 bytes.
REMAINING_LENGTHS = (0, 1, 127, 128, 321, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455)

# Fixed headers (first byte, then length bytes) both sides must refuse, each with its one defect.
MALFORMED_LENGTHS = (
    ("30ffffffff7f", "remaining length longer than 4 bytes"),
    ("3080808080", "remaining length longer than 4 bytes, still continued"),
    ("308000", "0 in two bytes: not in its fewest bytes"),
    ("30ff8000", "127 in three bytes: not in its fewest bytes"),
    ("40808080800100", "remaining length of five bytes on a PUBACK"),
)

# PUBLISH cases: (topic, payload, qos, packet id, dup, retain).
PUBLISHES: tuple[tuple[str, bytes, int, int, bool, bool], ...] = (
    (UP_TOPIC, bytes(range(200)), 1, 2, False, False),  # a device's bundle
    (ACK_TOPIC, bytes(range(160)), 1, 65535, False, False),  # the gateway's ack, last packet id
    (ACK_TOPIC, b"\xa5" * 160, 1, 1, True, False),  # an ack resent after a reconnect
    ("a/b", b"hi", 0, 0, False, True),  # QoS 0, retained
    ("t", b"", 1, 258, False, False),  # empty payload
    ("long/" + "x" * 120, b"\xff" * 40, 1, 9, False, False),  # a long topic name
)

# CONNECTs: (client id, user name, password, keepalive s, clean session).
CONNECTS: tuple[tuple[str, str | None, str | None, int, bool], ...] = (
    (DEVICE_KID_HEX, DEVICE_KID_HEX, "s3cret-\u00e9", 60, True),  # a device
    ("pinseal-gateway", "pinseal-gateway", "pw", 30, False),  # the gateway's persistent session
    ("anon", None, None, 0, True),  # no login, no keepalive
)

SUBSCRIBES = ((1, ACK_TOPIC, 1), (7, "pinseal/v1/+/up", 1), (65535, "a/#", 0))

# What a broker sends a client: hex -> the fields a decoder returns.
RECEIVED = (
    (mf.frame(0x20, b"\x00\x00"), {"type": "connack", "session_present": False, "return_code": 0}),
    (mf.frame(0x20, b"\x01\x00"), {"type": "connack", "session_present": True, "return_code": 0}),
    (mf.frame(0x20, b"\x00\x05"), {"type": "connack", "session_present": False, "return_code": 5}),
    (mf.frame(0x90, b"\x00\x01\x01"), {"type": "suback", "packet_id": 1, "return_code": 1}),
    (mf.frame(0x90, b"\x12\x34\x80"), {"type": "suback", "packet_id": 0x1234, "return_code": 0x80}),
    (mf.puback(2), {"type": "puback", "packet_id": 2}),
    (mf.puback(65535), {"type": "puback", "packet_id": 65535}),
    (mf.PINGRESP_PACKET, {"type": "pingresp"}),
)

# Whole packets a client must refuse, each with its one defect.
MALFORMED_PACKETS = (
    ("30", "truncated fixed header"),
    ("3203000174", "QoS 1 PUBLISH without room for its packet id"),
    ("32060001740001", "truncated: one byte short of the declared length"),
    ("400200010000", "bytes after the packet"),
    ("3603000174", "PUBLISH with QoS 3"),
    ("3803000174", "DUP on a QoS 0 PUBLISH"),
    ("32050001740000", "packet id 0"),
    ("30020000", "empty topic name"),
    ("3003000123", "wildcard in a received topic name"),
    ("30050003006174", "NUL in a received topic name"),
    ("41020001", "reserved flag bits on a PUBACK"),
    ("400100", "PUBACK of one byte"),
    ("40020000", "PUBACK for packet id 0"),
    ("20020105", "CONNACK refusal with session present"),
    ("20020006", "CONNACK return code 6"),
    ("20020200", "CONNACK reserved flag bit"),
    ("9003000103", "SUBACK return code 3"),
    ("900400010000", "SUBACK for two filters"),
    ("d00100", "PINGRESP with a body"),
    ("c000", "PINGREQ: never sent to a client"),
    ("f000", "reserved packet type 15"),
)


def _publish(topic: str, payload: bytes, qos: int, packet_id: int, dup: bool, retain: bool) -> dict[str, Any]:
    return {
        "topic": topic,
        "payload": payload.hex(),
        "qos": qos,
        "packet_id": packet_id,
        "dup": dup,
        "retain": retain,
        "hex": mf.publish(topic, payload, qos, packet_id, dup, retain).hex(),
    }


def mqtt_frame_vectors() -> dict[str, Any]:
    """The whole vector file, as a JSON-ready object."""
    return {
        "description": (
            "MQTT 3.1.1 frames the host (pinseal_protocol.mqtt_frames) and the device "
            "(pinseal.transport.mqtt_packets) must encode and decode alike; generated by "
            "pinseal_devkit.vectors.mqtt_frame_cases"
        ),
        "kind": "mqtt_frames",
        "remaining_length": [
            {"value": n, "hex": mf.encode_remaining_length(n).hex()} for n in REMAINING_LENGTHS
        ],
        "remaining_length_malformed": [{"hex": h, "defect": d} for h, d in MALFORMED_LENGTHS],
        "publish": [_publish(*case) for case in PUBLISHES],
        "puback": [{"packet_id": p, "hex": mf.puback(p).hex()} for p in (1, 2, 0x1234, 65535)],
        "connect": [
            {
                "client_id": c,
                "username": u,
                "password": p,
                "keepalive_s": k,
                "clean_session": clean,
                "hex": mf.connect(c, u, p, k, clean).hex(),
            }
            for c, u, p, k, clean in CONNECTS
        ],
        "subscribe": [
            {"packet_id": p, "topic_filter": f, "qos": q, "hex": mf.subscribe(p, f, q).hex()}
            for p, f, q in SUBSCRIBES
        ],
        "pingreq": mf.PINGREQ_PACKET.hex(),
        "disconnect": mf.DISCONNECT_PACKET.hex(),
        "received": [{"hex": raw.hex(), "packet": fields} for raw, fields in RECEIVED],
        "received_malformed": [{"hex": h, "defect": d} for h, d in MALFORMED_PACKETS],
    }


def write(outdir: Path) -> Path:
    """OUTDIR/mqtt_frames.json, formatted like the other vectors."""
    return single_file.write_into(outdir, FILE_NAME, mqtt_frame_vectors())


def main(argv: Sequence[str] = tuple(sys.argv[1:]), echo: Callable[[str], Any] = print) -> int:
    return single_file.cli("pinseal_devkit.vectors.mqtt_frame_cases", write, argv, echo)


if __name__ == "__main__":
    raise SystemExit(main())
