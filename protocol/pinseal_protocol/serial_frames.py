"""Serial link frames (docs/protocol.md §10): a bundle or an ack over a UART, USB CDC or RS-485 line.

A serial line is a byte stream with no message boundaries, and noise can change, drop or insert bytes.
Each frame is therefore delimited and checked:

    body  = version (1 byte, 1) | kind (1 byte) | payload | CRC-32 of version..payload (4 bytes, big-endian)
    frame = COBS(body) | 0x00

COBS (Consistent Overhead Byte Stuffing, Cheshire and Baker, IEEE/ACM Trans. Networking, 1999) removes
every 0x00 from the body, so 0x00 marks a frame's end and a receiver finds the next frame after any
damage. It was chosen over SLIP (RFC 1055) for its bound: at most one byte in 254 of overhead, where SLIP
doubles a payload of 0xC0 bytes, and signatures are random bytes. The CRC-32 is the one of zlib and
MicroPython's `binascii.crc32` (ISO-HDLC). The payload is what MQTT carries: a sealed bundle from the
device, an ack or a signed rejection from the gateway; their signatures, not the CRC, are what the
gateway and the device trust. The CRC only spares them the work of verifying line noise.

The host encodes with `encode` and reads a stream with `FrameReader`, which takes chunks of any size and
returns each frame or the reason a stretch of bytes was dropped; it never keeps more than one frame's
worth of bytes, whatever the line sends. The firmware has its own codec
(firmware/pinseal/transport/serial_frames.py); protocol/vectors/serial_frames.json holds the two equal.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

VERSION = 1
KIND_BUNDLE = 1  # device -> gateway: a sealed bundle (COSE_Sign1), as published on .../up
KIND_ACK = 2  # gateway -> device: an ack or a signed rejection, as published on .../ack
KIND_HELLO = 3  # gateway -> device, empty: "a gateway reads this line" (sent every HELLO_INTERVAL_S)
KINDS = (KIND_BUNDLE, KIND_ACK, KIND_HELLO)
HELLO_INTERVAL_S = 2  # the gateway's hello period; a device counts the line down after 5 without one
MAX_PAYLOAD = 4096  # the same bound as the device's MQTT decoder
DELIMITER = 0
_HEAD = 2  # version, kind
_CRC = 4
MAX_BODY = _HEAD + MAX_PAYLOAD + _CRC
# COBS adds one byte per 254 (rounded up) and the delimiter follows
MAX_FRAME = MAX_BODY + (MAX_BODY + 253) // 254 + 1

# Why a stretch of bytes is dropped (docs/protocol.md §10): one word each, for logs and metrics.
DROP_COBS = "cobs"  # a code byte points past the frame's end
DROP_SHORT = "short"  # fewer bytes than a version, a kind and a CRC
DROP_CRC = "crc"  # the CRC does not match: line noise, or a frame cut and joined to another
DROP_VERSION = "version"  # a frame version this side does not speak
DROP_KIND = "kind"  # a kind this side does not know
DROP_OVERSIZE = "oversize"  # more bytes before a delimiter than the largest frame
DROP_REASONS = (DROP_COBS, DROP_SHORT, DROP_CRC, DROP_VERSION, DROP_KIND, DROP_OVERSIZE)


class FrameError(ValueError):
    """A frame that must be dropped; `reason` is one of DROP_REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes


@dataclass(frozen=True)
class Dropped:
    """Bytes the reader threw away, and why: a caller counts them; nothing in them is delivered."""

    reason: str
    length: int


def cobs_encode(data: bytes) -> bytes:
    """COBS: each block of up to 254 non-zero bytes is led by one more than its length; no 0x00 remains.

    A block of 254 (code 0xFF) implies no zero after it, and data that ends with one ends there (no empty
    block follows), as the `cobs` package and the published examples have it."""
    out = bytearray()
    start = 0
    while True:
        zero = data.find(b"\x00", start, start + 254)
        if zero != -1:  # a block ended by a zero, which the code implies
            out.append(zero - start + 1)
            out += data[start:zero]
            start = zero + 1
            continue
        block = data[start : start + 254]
        out.append(len(block) + 1)
        out += block
        start += len(block)
        if start >= len(data):
            return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """The inverse of cobs_encode; FrameError(cobs) on a 0x00 inside or a code that runs past the end."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            raise FrameError(DROP_COBS, f"0x00 at {i}")
        end = i + code
        if end > len(data):
            raise FrameError(DROP_COBS, f"code {code} at {i} runs past the end ({len(data)} bytes)")
        block = data[i + 1 : end]
        if DELIMITER in block:
            raise FrameError(DROP_COBS, f"0x00 inside the block at {i}")
        out += block
        i = end
        if code < 255 and i < len(data):
            out.append(0)
    return bytes(out)


def encode(kind: int, payload: bytes) -> bytes:
    """One frame on the wire, delimiter included."""
    if kind not in KINDS:
        raise ValueError(f"unknown frame kind {kind}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes over {MAX_PAYLOAD}")
    head = bytes((VERSION, kind)) + payload
    body = head + zlib.crc32(head).to_bytes(4, "big")
    return cobs_encode(body) + b"\x00"


def decode(encoded: bytes) -> Frame:
    """One frame's bytes between delimiters (without the 0x00) into a Frame, or FrameError."""
    body = cobs_decode(encoded)
    if len(body) < _HEAD + _CRC:
        raise FrameError(DROP_SHORT, f"{len(body)} bytes")
    head, crc = body[:-_CRC], body[-_CRC:]
    if zlib.crc32(head).to_bytes(4, "big") != crc:
        raise FrameError(DROP_CRC)
    if head[0] != VERSION:
        raise FrameError(DROP_VERSION, f"version {head[0]}")
    if head[1] not in KINDS:
        raise FrameError(DROP_KIND, f"kind {head[1]}")
    if len(head) - _HEAD > MAX_PAYLOAD:
        raise FrameError(DROP_OVERSIZE, f"payload of {len(head) - _HEAD} bytes")
    return Frame(head[1], bytes(head[_HEAD:]))


class FrameReader:
    """Frames out of a byte stream fed in chunks of any size.

    Bytes before the first delimiter a reader sees may be the tail of a frame sent before it started
    (a gateway opening a port mid-frame); they fail COBS or the CRC and come back as Dropped like any
    damage. Empty stretches (two delimiters in a row: a sender may lead with one to flush the line) are
    skipped silently. A stretch longer than MAX_FRAME is dropped as oversize without being kept.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = 0  # bytes of the current stretch thrown away since it grew too long

    def feed(self, chunk: bytes) -> list[Frame | Dropped]:
        events: list[Frame | Dropped] = []
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\x00", start)
            piece = chunk[start:] if end == -1 else chunk[start:end]
            self._take(piece)
            if end == -1:
                break
            self._finish(events)
            start = end + 1
        return events

    def _take(self, piece: bytes) -> None:
        if self._overflow:
            self._overflow += len(piece)
        elif len(self._buffer) + len(piece) > MAX_FRAME - 1:
            self._overflow = len(self._buffer) + len(piece)
            self._buffer.clear()
        else:
            self._buffer += piece

    def _finish(self, events: list[Frame | Dropped]) -> None:
        if self._overflow:
            events.append(Dropped(DROP_OVERSIZE, self._overflow))
            self._overflow = 0
            return
        if not self._buffer:
            return
        stretch = bytes(self._buffer)
        self._buffer.clear()
        try:
            events.append(decode(stretch))
        except FrameError as err:
            events.append(Dropped(err.reason, len(stretch)))
