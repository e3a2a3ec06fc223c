# Serial link frames on the device (docs/protocol.md §10): pure encode/read, strict and bounded.
#
#   frame = COBS(version 1 | kind | payload | CRC-32 of version..payload, big-endian) | 0x00
#
# A UART or USB CDC line carries bytes with no boundaries and some noise: 0x00 ends every frame, COBS
# keeps 0x00 out of the body (one byte of overhead per 254 at most), and the CRC-32 (binascii.crc32,
# as zlib's) drops what the line damaged before anything is parsed or verified. The payload is what MQTT
# carries (a sealed bundle up, an ack or a signed rejection down); the signatures, not the CRC, are what
# either side trusts. protocol/vectors/serial_frames.json holds this codec equal to the host's
# (pinseal_protocol.serial_frames); neither imports the other.
#
# Reader.feed(chunk) returns a list of events: (kind, payload) for a frame, (None, reason) for a dropped
# stretch (reason: "cobs", "short", "crc", "version", "kind" or "oversize"). It keeps at most one frame's
# bytes, whatever the line sends.
import struct
from binascii import crc32

VERSION = 1
KIND_BUNDLE = 1
KIND_ACK = 2
KIND_HELLO = 3
MAX_PAYLOAD = 4096
_MAX_BODY = MAX_PAYLOAD + 6
MAX_FRAME = _MAX_BODY + (_MAX_BODY + 253) // 254 + 1


class FrameError(ValueError):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def cobs_encode(data):
    out = bytearray()
    start = 0
    n = len(data)
    while True:
        zero = data.find(b"\x00", start, start + 254)
        if zero != -1:
            out.append(zero - start + 1)
            out += data[start:zero]
            start = zero + 1
            continue
        end = min(start + 254, n)
        out.append(end - start + 1)
        out += data[start:end]
        start = end
        if start >= n:
            return bytes(out)


def cobs_decode(data):
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise FrameError("cobs")
        block = data[i + 1 : end]
        if b"\x00" in block:
            raise FrameError("cobs")
        out += block
        i = end
        if code < 255 and i < n:
            out.append(0)
    return out


def encode(kind, payload):
    if not KIND_BUNDLE <= kind <= KIND_HELLO:
        raise ValueError("unknown frame kind")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too large")
    head = bytes((VERSION, kind)) + payload
    return cobs_encode(head + struct.pack(">I", crc32(head))) + b"\x00"


def decode(encoded):
    """One frame's bytes without the delimiter -> (kind, payload), or FrameError."""
    body = cobs_decode(encoded)
    if len(body) < 6:
        raise FrameError("short")
    head = memoryview(body)[:-4]
    if struct.pack(">I", crc32(head)) != body[-4:]:
        raise FrameError("crc")
    if body[0] != VERSION:
        raise FrameError("version")
    kind = body[1]
    if not KIND_BUNDLE <= kind <= KIND_HELLO:
        raise FrameError("kind")
    if len(body) - 6 > MAX_PAYLOAD:
        raise FrameError("oversize")
    return kind, bytes(head[2:])


class Reader:
    def __init__(self):
        self._buf = bytearray()
        self._over = 0

    def feed(self, chunk):
        events = []
        start = 0
        n = len(chunk)
        while start < n:
            end = chunk.find(b"\x00", start)
            stop = n if end == -1 else end
            self._take(chunk, start, stop)
            if end == -1:
                break
            self._finish(events)
            start = end + 1
        return events

    def _take(self, chunk, start, stop):
        size = stop - start
        if self._over:
            self._over += size
        elif len(self._buf) + size > MAX_FRAME - 1:
            self._over = len(self._buf) + size
            self._buf = bytearray()
        else:
            self._buf += chunk[start:stop]

    def _finish(self, events):
        if self._over:
            events.append((None, "oversize"))
            self._over = 0
            return
        if not self._buf:
            return
        stretch = self._buf
        self._buf = bytearray()
        try:
            events.append(decode(stretch))
        except FrameError as e:
            events.append((None, e.reason))
