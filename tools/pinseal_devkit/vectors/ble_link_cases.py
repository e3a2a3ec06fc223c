"""protocol/vectors/ble_link.json: the BLE link (docs/protocol.md §11) both codecs must agree on.

    python -m pinseal_devkit.vectors.ble_link_cases OUTDIR   (also written by `make vectors`)

The host codec is `pinseal_protocol.ble_link`; the firmware's (`pinseal.transport.ble_link`) is held to
this same file in the MicroPython VM (hil_tests/firmware_tests/test_ble_link.py), and
protocol/tests/test_ble_link_vectors.py checks it against the host module. The cases are written out by
hand below (the advertisement, the info map and each way it can be wrong, chunking at the default, a
larger and the largest MTU, the down writes, and reassembly streams with drops, duplicates, reorders and
an old transfer) and only their bytes are computed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pinseal_devkit.vectors import single_file
from pinseal_protocol import ble_link as bl
from pinseal_protocol import dcbor

FILE_NAME = "ble_link.json"

KID = bytes.fromhex("21fe31dfa154a261626bf854046fd227")  # RFC 8032 TEST 1's key id (docs/protocol.md §1)
INFO = bl.Info(KID, "0.9.0", "esp32_devkitc", 3)
# A bundle-like payload: a COSE tag 18 head, then bytes that differ in every chunk.
BUNDLE = bytes.fromhex("d28443a10127a1044c") + bytes((i * 37 + 11) % 256 for i in range(291))
# Longer than two chunks at the largest MTU: a chunk is capped by ATT's 512-byte attribute, not MTU - 3.
LONG_BUNDLE = bytes.fromhex("d28443a10127a1044c") + bytes((i * 53 + 7) % 256 for i in range(1100))

UUID_LE = bl.scan_response(KID)[2:18]  # the service UUID as AD structures carry it (little-endian)

BAD_INFO: tuple[tuple[str, bytes], ...] = (
    ("not CBOR", b"\xff"),
    ("not deterministic (key 1 in a long-form head)", b"\xa4\x18\x01" + INFO.encode()[2:]),
    ("an array, not a map", dcbor.encode([KID, "0.9.0", "esp32_devkitc", 3])),
    ("key 4 missing", dcbor.encode({1: KID, 2: "0.9.0", 3: "esp32_devkitc"})),
    ("an extra key 5", dcbor.encode({1: KID, 2: "0.9.0", 3: "esp32_devkitc", 4: 3, 5: 0})),
    ("a key id of 32 bytes", dcbor.encode({1: KID * 2, 2: "0.9.0", 3: "esp32_devkitc", 4: 3})),
    ("an empty board", dcbor.encode({1: KID, 2: "0.9.0", 3: "", 4: 3})),
    ("a negative depth", dcbor.encode({1: KID, 2: "0.9.0", 3: "esp32_devkitc", 4: -1})),
)

BAD_CHUNKS: tuple[tuple[str, bytes], ...] = (
    ("empty", b""),
    ("a header without data", bytes((1, 0, 0))),
    ("index after the last", bytes((1, 3, 2, 0xAA))),
    ("over an attribute's 512 bytes", bytes((1, 0, 0)) + b"\x01" * 510),
)

BAD_DOWN: tuple[tuple[str, bytes], ...] = (
    ("empty", b""),
    ("an ack write without the ack", bytes((bl.DOWN_ACK,))),
    ("a resend request without indices", bytes((bl.DOWN_RESEND, 7))),
    ("a resend request with a repeated index", bytes((bl.DOWN_RESEND, 7, 1, 1))),
    ("a resend request of 33 indices", bytes((bl.DOWN_RESEND, 7, *range(33)))),
    ("a received write with a trailing byte", bytes((bl.DOWN_RECEIVED, 7, 0))),
    ("kind 5, unknown", bytes((5, 7))),
    ("a send write with a body", bytes((4, 0))),
)

ADS: tuple[tuple[str, bytes, bytes], ...] = (
    ("a pinseal device", bl.advertisement(), bl.scan_response(KID)),
    ("padding after a zero length", bl.advertisement() + b"\x00" * 10, bl.scan_response(KID)),
    ("another service only", bytes.fromhex("020106") + bytes.fromhex("1107") + bytes(range(16)), b""),
)
BAD_ADS: tuple[tuple[str, bytes, bytes], ...] = (
    ("a structure past the end", bytes.fromhex("020106") + bytes.fromhex("1107") + bytes(8), b""),
    ("32 bytes of legacy advertising", bytes.fromhex("1fff") + bytes(30), b""),
    ("a prefix of 7 bytes", bl.advertisement(), bytes((24, bl.AD_SERVICE_DATA_UUID128)) + UUID_LE + KID[:7]),
)


def _stream(order: Sequence[int], transfer: int = 5, extra: Sequence[bytes] = ()) -> list[bytes]:
    pieces = bl.chunks(transfer, BUNDLE)
    return [pieces[i] for i in order] + list(extra)


def event(fed: bl.Fed) -> dict[str, Any]:
    """One reassembler step in the file's terms: the bundle (hex), the indices to ask for, why ignored."""
    out: dict[str, Any] = {}
    if fed.bundle is not None:
        out["bundle"] = fed.bundle.hex()
    if fed.gaps:
        out["resend"] = fed.gaps
    if fed.ignored:
        out["ignored"] = fed.ignored
    return out


def _events(raw_chunks: Sequence[bytes]) -> list[dict[str, Any]]:
    """What a reassembler fed these notifications in order must do, one event per notification."""
    r = bl.Reassembler()
    return [event(r.feed(bl.parse_chunk(raw))) for raw in raw_chunks]


N = len(bl.chunks(5, BUNDLE))
STREAMS: tuple[tuple[str, list[bytes]], ...] = (
    ("in order", _stream(range(N))),
    ("chunk 3 dropped, then resent", _stream([0, 1, 2, *range(4, N), 3])),
    ("the last chunk first", _stream([N - 1, *range(N - 1)])),
    ("every chunk twice", _stream([i for i in range(N) for _ in (0, 1)])),
    ("reversed", _stream(range(N - 1, -1, -1))),
    ("a newer transfer abandons the first", _stream([0, 1]) + bl.chunks(6, BUNDLE)),
    ("an old transfer's chunk after completion", _stream(range(N), extra=[bl.chunks(4, BUNDLE)[0]])),
    (
        "a chunk whose last index differs",
        _stream([0], extra=[bytes((5, 1, N)) + b"\x01", *_stream(range(1, N))]),
    ),
)


def ble_link_vectors() -> dict[str, Any]:
    """The whole vector file, as a JSON-ready object."""
    return {
        "description": (
            "BLE link (docs/protocol.md §11): advertisement, info map, bundle chunks, down writes, "
            "reassembly. Host: pinseal_protocol.ble_link; generated by pinseal_devkit.vectors.ble_link_cases"
        ),
        "kind": "ble_link",
        "uuids": {
            "service": bl.SERVICE_UUID,
            "info": bl.INFO_UUID,
            "bundles": bl.BUNDLES_UUID,
            "down": bl.DOWN_UUID,
        },
        "advertising": [
            {"case": what, "adv": adv.hex(), "scan_rsp": rsp.hex(), **_advertised(adv, rsp)}
            for what, adv, rsp in ADS
        ],
        "advertising_errors": [
            {"case": what, "adv": adv.hex(), "scan_rsp": rsp.hex()} for what, adv, rsp in BAD_ADS
        ],
        "info": {
            "kid": INFO.kid.hex(),
            "firmware": INFO.firmware,
            "board": INFO.board,
            "outbox_depth": INFO.outbox_depth,
            "hex": INFO.encode().hex(),
        },
        "info_errors": [{"case": what, "hex": raw.hex()} for what, raw in BAD_INFO],
        "chunking": [
            {
                "transfer": 5,
                "mtu": mtu,
                "bundle": bundle.hex(),
                "chunks": [c.hex() for c in bl.chunks(5, bundle, mtu)],
            }
            for mtu, bundle in ((bl.DEFAULT_MTU, BUNDLE), (185, BUNDLE), (517, LONG_BUNDLE))
        ],
        "chunk_errors": [{"case": what, "hex": raw.hex()} for what, raw in BAD_CHUNKS],
        "down": [
            {
                "case": "ack",
                "hex": bl.encode_down(bl.AckDown(bytes.fromhex("d28443a10127a0") + bytes(150))).hex(),
            },
            {"case": "resend 3 and 9 of transfer 7", "hex": bl.encode_down(bl.ResendDown(7, (3, 9))).hex()},
            {"case": "received transfer 255", "hex": bl.encode_down(bl.ReceivedDown(255)).hex()},
            {"case": "send", "hex": bl.encode_down(bl.SendDown()).hex()},
        ],
        "down_errors": [{"case": what, "hex": raw.hex()} for what, raw in BAD_DOWN],
        "reassembly": [
            {"case": what, "chunks": [c.hex() for c in raw], "events": _events(raw)} for what, raw in STREAMS
        ],
    }


def _advertised(adv: bytes, rsp: bytes) -> dict[str, Any]:
    found = bl.parse_advertising(adv, rsp)
    return {
        "has_service": found.has_service,
        "kid_prefix": found.kid_prefix.hex() if found.kid_prefix else None,
    }


def write(outdir: Path) -> Path:
    """OUTDIR/ble_link.json, formatted like the other vectors."""
    return single_file.write_into(outdir, FILE_NAME, ble_link_vectors())


def main(argv: Sequence[str] = tuple(sys.argv[1:]), echo: Callable[[str], Any] = print) -> int:
    return single_file.cli("pinseal_devkit.vectors.ble_link_cases", write, argv, echo)


if __name__ == "__main__":
    raise SystemExit(main())
