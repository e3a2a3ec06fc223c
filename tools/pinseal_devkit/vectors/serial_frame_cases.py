"""protocol/vectors/serial_frames.json: serial link frames (docs/protocol.md §10) both codecs must agree on.

    python -m pinseal_devkit.vectors.serial_frame_cases OUTDIR   (also written by `make vectors`)

The host frames with `pinseal_protocol.serial_frames`, a device with firmware/pinseal/transport/
serial_frames.py; neither imports the other. protocol/tests/test_serial_frame_vectors.py checks this file
against the host module (and COBS against the `cobs` package), hil_tests/firmware_tests/
test_serial_frames.py against the device's, inside the MicroPython VM. The cases are written out by hand
below (COBS's block boundaries, the largest payload, each defect a reader must drop, resynchronisation
after damage) and only their bytes are computed. Payloads are opaque to the framing: what they are (a
bundle, an ack) is for the bundle and ack vectors.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pinseal_devkit.vectors import single_file
from pinseal_protocol import serial_frames as sf

FILE_NAME = "serial_frames.json"

# COBS blocks: the empty input, zeros, 253/254/255 non-zero bytes around the 0xFF code, runs over blocks.
COBS_DATA = (
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x11\x22\x00\x33",
    bytes(range(1, 254)),
    bytes(range(1, 255)),
    bytes(range(1, 256)),
    bytes(range(256)),
    bytes(range(2, 256)) + b"\x00",
    b"\x01" * 508 + b"\x00" + b"\x02" * 3,
)

# Frames: (kind, payload). A bundle and an ack shaped like real ones (a CBOR tag 18 head, random-looking
# signature bytes), payloads that put COBS's block boundary at the frame's ends, the largest payload.
FRAMES: tuple[tuple[int, bytes], ...] = (
    (sf.KIND_BUNDLE, bytes.fromhex("d28443a10127a1044c") + bytes((i * 37 + 11) % 256 for i in range(180))),
    (sf.KIND_ACK, bytes.fromhex("d28443a10127a0") + bytes((i * 91 + 3) % 256 for i in range(150))),
    (sf.KIND_BUNDLE, b""),
    (sf.KIND_HELLO, b""),
    (sf.KIND_ACK, b"\x00" * 20),
    (sf.KIND_BUNDLE, bytes(range(1, 251))),  # a body of 256 bytes, none of them 0 but in the CRC's
    (sf.KIND_BUNDLE, bytes((i % 255) + 1 for i in range(sf.MAX_PAYLOAD))),
)


def _body(version: int, kind: int, payload: bytes) -> bytes:
    head = bytes((version, kind)) + payload
    return head + zlib.crc32(head).to_bytes(4, "big")


def _raw(version: int, kind: int, payload: bytes) -> bytes:
    """A frame with a correct CRC whatever its version and kind (encode refuses what it does not send)."""
    return sf.cobs_encode(_body(version, kind, payload)) + b"\x00"


GOOD = sf.encode(sf.KIND_BUNDLE, b"\xa1\x00\x01")
GOOD_EVENT = {"frame": {"kind": sf.KIND_BUNDLE, "payload": "a10001"}}
_flipped = bytearray(GOOD)
_flipped[3] ^= 0x40  # a payload byte: the COBS structure holds, the CRC does not

# Streams a reader is fed whole, with the events it must return in order: each defect dropped with its
# reason, and the good frame after it still read (a reader resynchronises at the next 0x00).
STREAMS: tuple[tuple[str, bytes, list[dict[str, Any]]], ...] = (
    ("one good frame", GOOD, [GOOD_EVENT]),
    ("leading and doubled delimiters are no frames", b"\x00\x00" + GOOD + b"\x00", [GOOD_EVENT]),
    ("a flipped bit fails the CRC", bytes(_flipped) + GOOD, [{"dropped": sf.DROP_CRC}, GOOD_EVENT]),
    ("a COBS code past the frame's end", b"\x09\x01\x02\x00" + GOOD, [{"dropped": sf.DROP_COBS}, GOOD_EVENT]),
    (
        "fewer bytes than a head and a CRC",
        b"\x04\x01\x01\x05\x00" + GOOD,
        [{"dropped": sf.DROP_SHORT}, GOOD_EVENT],
    ),
    ("frame version 2", _raw(2, sf.KIND_BUNDLE, b"\x01") + GOOD, [{"dropped": sf.DROP_VERSION}, GOOD_EVENT]),
    ("frame version 0", _raw(0, sf.KIND_BUNDLE, b"\x01") + GOOD, [{"dropped": sf.DROP_VERSION}, GOOD_EVENT]),
    ("kind 4, unknown", _raw(1, 4, b"\x01") + GOOD, [{"dropped": sf.DROP_KIND}, GOOD_EVENT]),
    ("kind 0, unknown", _raw(1, 0, b"") + GOOD, [{"dropped": sf.DROP_KIND}, GOOD_EVENT]),
    (
        "a payload one byte over the largest",
        _raw(1, sf.KIND_BUNDLE, b"\x01" * (sf.MAX_PAYLOAD + 1)) + GOOD,
        [{"dropped": sf.DROP_OVERSIZE}, GOOD_EVENT],
    ),
    (
        "the tail of a frame sent before the reader started",
        GOOD[5:] + GOOD,  # starts inside a block: its first byte read as a code runs past the end
        [{"dropped": sf.DROP_COBS}, GOOD_EVENT],
    ),
    ("two frames cut and joined", GOOD[:5] + GOOD[3:], [{"dropped": sf.DROP_COBS}]),
    ("line noise, then a frame", b"\x7f\xff\x13" + b"\x00" + GOOD, [{"dropped": sf.DROP_COBS}, GOOD_EVENT]),
    (
        "a valid COBS stretch with a wrong CRC",
        sf.cobs_encode(b"\x01\x01\x05\x06\x07\x08") + b"\x00" + GOOD,
        [{"dropped": sf.DROP_CRC}, GOOD_EVENT],
    ),
)


def serial_frame_vectors() -> dict[str, Any]:
    """The whole vector file, as a JSON-ready object."""
    return {
        "description": (
            "Serial link frames (docs/protocol.md §10): COBS(version | kind | payload | CRC-32), 0x00. "
            "The host (pinseal_protocol.serial_frames) and the device (pinseal.transport.serial_frames) "
            "must encode and read them alike; generated by pinseal_devkit.vectors.serial_frame_cases"
        ),
        "kind": "serial_frames",
        "version": sf.VERSION,
        "max_payload": sf.MAX_PAYLOAD,
        "cobs": [{"data": data.hex(), "hex": sf.cobs_encode(data).hex()} for data in COBS_DATA],
        "frames": [
            {"kind": kind, "payload": payload.hex(), "hex": sf.encode(kind, payload).hex()}
            for kind, payload in FRAMES
        ],
        "streams": [{"defect": what, "hex": raw.hex(), "events": events} for what, raw, events in STREAMS],
    }


def write(outdir: Path) -> Path:
    """OUTDIR/serial_frames.json, formatted like the other vectors."""
    return single_file.write_into(outdir, FILE_NAME, serial_frame_vectors())


def main(argv: Sequence[str] = tuple(sys.argv[1:]), echo: Callable[[str], Any] = print) -> int:
    return single_file.cli("pinseal_devkit.vectors.serial_frame_cases", write, argv, echo)


if __name__ == "__main__":
    raise SystemExit(main())
