"""MQTT 3.1.1 framing on the host (OASIS standard, 2014): the one place host code turns packets into bytes.

The gateway's intake, its ack publisher, the benchmark's load generator and the tests all frame MQTT
through this module, so a framing bug is fixed once and the host's bytes are held equal to the
firmware's own codec (firmware/pinseal/transport/mqtt_packets.py) by protocol/vectors/mqtt_frames.json,
which both test suites check. paho-mqtt still runs the gateway's session; this module covers what the
host writes or reads as raw frames:

- remaining length (§2.2.3) both ways, and `split_frames`/`FrameSplitter`: a byte stream, read in
  chunks of any size, cut into whole frames without copying them;
- encoders for what the host sends (CONNECT, SUBSCRIBE, PUBLISH QoS 0/1, PUBACK, PINGREQ, PINGRESP,
  DISCONNECT);
- `decode`, one whole packet a client receives into a frozen dataclass (tests, tools), and
  `publish_fields`, the allocation-free read of a PUBLISH inside a larger buffer (the intake's hot path).

Input is untrusted: every malformed, truncated or oversized frame raises `FrameError` (a ValueError),
never IndexError. Stricter than a minimal reader where a conforming peer never does the thing, as the
firmware's codec is: a remaining length in more bytes than needed, reserved flag bits, wildcards or NUL
in a received topic name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

MAX_REMAINING_LENGTH = 268_435_455  # four bytes of remaining length (§2.2.3)
SUBACK_FAILURE = 0x80

PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

_DUP = 0x08
_RETAIN = 0x01
_PROTOCOL_LEVEL_4 = b"\x00\x04MQTT\x04"
_CLEAN_SESSION = 0x02
_PASSWORD_FLAG = 0x40
_USERNAME_FLAG = 0x80
_PUBACK_HEAD = b"\x40\x02"


class FrameError(ValueError):
    """A malformed, truncated or oversized MQTT frame: the stream it came from cannot be trusted further."""


# -------------------------------------------------------------------------------- remaining length


def encode_remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer (§2.2.3): 7 bits a byte, least significant first, in 1..4 bytes."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} outside 0..{MAX_REMAINING_LENGTH}")
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_remaining_length(buf: bytes, pos: int, end: int | None = None) -> tuple[int, int] | None:
    """The remaining length starting at buf[pos]: (value, position after it), or None if buf[:end] ends
    inside it (read more). FrameError if it runs past four bytes or is not in its fewest bytes."""
    end = len(buf) if end is None else end
    value = 0
    shift = 0
    i = pos
    while True:
        if i >= end:
            return None
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        if i - pos == 4:
            raise FrameError("remaining length longer than 4 bytes")
        shift += 7
    if i - pos > 1 and byte == 0:
        raise FrameError("remaining length not in its fewest bytes")
    return value, i


# -------------------------------------------------------------------------------- splitting a stream

# One frame inside a buffer: (first byte, where its body starts, where it ends). Offsets, not copies:
# the intake reads a 256 KiB chunk and hands each PUBLISH's payload on as one slice.
Span = tuple[int, int, int]


def split_frames(buf: bytes, max_remaining: int = MAX_REMAINING_LENGTH) -> tuple[list[Span], int]:
    """Every whole frame at the start of `buf`, in order, and where the incomplete rest begins.

    Only the fixed header is checked here (length well-formed and at most `max_remaining`); what a
    frame holds is for its reader. FrameError ends the stream: nothing after a bad length can be framed.
    """
    spans: list[Span] = []
    n = len(buf)
    pos = 0
    while n - pos >= 2:
        length = buf[pos + 1]
        body = pos + 2
        if length & 0x80:
            decoded = decode_remaining_length(buf, pos + 1, n)
            if decoded is None:
                break
            length, body = decoded
        if length > max_remaining:
            raise FrameError(f"frame of {length} bytes over the bound {max_remaining}")
        end = body + length
        if end > n:
            break
        spans.append((buf[pos], body, end))
        pos = end
    return spans, pos


class FrameSplitter:
    """Cuts a byte stream, fed in reads of any size, into whole frames (what a socket reader needs)."""

    def __init__(self, max_remaining: int = MAX_REMAINING_LENGTH) -> None:
        self.max_remaining = max_remaining
        self._pending = b""

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back until the rest arrives."""
        return len(self._pending)

    def feed(self, data: bytes) -> tuple[bytes, list[Span]]:
        """The buffer the spans index into, and the whole frames completed by `data`."""
        buf = self._pending + data if self._pending else data
        spans, rest = split_frames(buf, self.max_remaining)
        self._pending = buf[rest:]
        return buf, spans

    def reset(self) -> None:
        """Forget a partial frame (the connection it came from is gone)."""
        self._pending = b""


# -------------------------------------------------------------------------------- encoding


def _string(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > 0xFFFF:
        raise ValueError("an MQTT string is at most 65,535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _check_packet_id(packet_id: int) -> None:
    if not 1 <= packet_id <= 0xFFFF:
        raise ValueError("packet id must be 1..65535")


def frame(first: int, body: bytes) -> bytes:
    """A whole packet: first byte, remaining length, body."""
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def connect(
    client_id: str | bytes,
    username: str | bytes | None = None,
    password: str | bytes | None = None,
    keepalive_s: int = 60,
    clean_session: bool = True,
) -> bytes:
    """CONNECT (§3.1), protocol level 4, no will."""
    flags = _CLEAN_SESSION if clean_session else 0
    if not clean_session and not client_id:
        raise ValueError("an empty client id needs a clean session")  # [MQTT-3.1.3-7]
    if password is not None and username is None:
        raise ValueError("a password needs a user name")  # [MQTT-3.1.2-22]
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive must be 0..65535 s")
    tail = _string(client_id)
    if username is not None:
        flags |= _USERNAME_FLAG
        tail += _string(username)
    if password is not None:
        flags |= _PASSWORD_FLAG
        tail += _string(password)
    return frame(CONNECT << 4, _PROTOCOL_LEVEL_4 + bytes((flags,)) + keepalive_s.to_bytes(2, "big") + tail)


def subscribe(packet_id: int, topic_filter: str | bytes, qos: int = 1) -> bytes:
    """SUBSCRIBE (§3.8) to one filter."""
    _check_packet_id(packet_id)
    if not topic_filter:
        raise ValueError("empty topic filter")
    if qos not in (0, 1, 2):
        raise ValueError("QoS 0, 1 or 2")
    return frame(SUBSCRIBE << 4 | 0x02, packet_id.to_bytes(2, "big") + _string(topic_filter) + bytes((qos,)))


def publish(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    packet_id: int = 0,
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    """PUBLISH (§3.3) at QoS 0 or 1; the packet id only with QoS 1, DUP only on a QoS 1 resend."""
    raw_topic = topic.encode() if isinstance(topic, str) else topic
    if not raw_topic or b"+" in raw_topic or b"#" in raw_topic or b"\x00" in raw_topic:
        raise ValueError(f"bad topic name {raw_topic!r}")
    first = PUBLISH << 4 | (_RETAIN if retain else 0)
    head = _string(raw_topic)
    if qos == 1:
        _check_packet_id(packet_id)
        first |= 0x02 | (_DUP if dup else 0)
        head += packet_id.to_bytes(2, "big")
    elif qos != 0:
        raise ValueError("QoS 0 or 1 only")
    elif dup or packet_id:
        raise ValueError("a QoS 0 PUBLISH has no packet id and no DUP")  # [MQTT-3.3.1-2]
    return bytes((first,)) + encode_remaining_length(len(head) + len(payload)) + head + payload


def as_resend(packet: bytes) -> bytes:
    """The same QoS 1 PUBLISH with DUP set (§3.3.1.1): what goes again after a reconnect."""
    return bytes((packet[0] | _DUP,)) + packet[1:]


def puback(packet_id: int) -> bytes:
    """PUBACK (§3.4)."""
    _check_packet_id(packet_id)
    return _PUBACK_HEAD + packet_id.to_bytes(2, "big")


def pubacks(packet_ids: Iterable[int]) -> bytes:
    """One PUBACK per id, as one buffer (a committed group's, written at once)."""
    return b"".join([_PUBACK_HEAD + packet_id.to_bytes(2, "big") for packet_id in packet_ids])


# -------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Connack:
    session_present: bool
    return_code: int


@dataclass(frozen=True)
class Publish:
    topic: bytes
    payload: bytes
    qos: int
    packet_id: int  # 0 for QoS 0
    dup: bool
    retain: bool


@dataclass(frozen=True)
class Puback:
    packet_id: int


@dataclass(frozen=True)
class Suback:
    packet_id: int
    return_code: int  # 0, 1, 2, or SUBACK_FAILURE


@dataclass(frozen=True)
class Pingresp:
    pass


Received = Connack | Publish | Puback | Suback | Pingresp


def check_first_byte(first: int) -> None:
    """The packet type and flag bits of a fixed header (§2.2): FrameError for reserved combinations."""
    kind, flags = first >> 4, first & 0x0F
    if kind == PUBLISH:
        qos = flags >> 1 & 0x03
        if qos == 3:
            raise FrameError("PUBLISH with QoS 3")
        if qos == 0 and flags & _DUP:
            raise FrameError("DUP set on a QoS 0 PUBLISH")
    elif kind in (0, 15):
        raise FrameError(f"reserved packet type {kind}")
    elif kind in (6, 8, 10):  # PUBREL, SUBSCRIBE, UNSUBSCRIBE
        if flags != 0x02:
            raise FrameError(f"bad flags 0x{flags:x} for packet type {kind}")
    elif flags:
        raise FrameError(f"bad flags 0x{flags:x} for packet type {kind}")


def publish_fields(first: int, buf: bytes, body: int, end: int) -> tuple[int, int, int, int]:
    """A PUBLISH in buf[body:end] -> (topic start, topic end, packet id or 0, payload start), no copies.

    The intake's hot path: offsets into a large read, so only the topic and the payload are sliced.
    """
    qos = first >> 1 & 0x03
    if qos == 3:
        raise FrameError("PUBLISH with QoS 3")
    if end - body < 2:
        raise FrameError("PUBLISH truncated in the topic length")
    topic_end = body + 2 + (buf[body] << 8 | buf[body + 1])
    if topic_end == body + 2:
        raise FrameError("PUBLISH with an empty topic")
    if not qos:
        if topic_end > end:
            raise FrameError("PUBLISH truncated in the topic")
        return body + 2, topic_end, 0, topic_end
    if topic_end + 2 > end:
        raise FrameError("PUBLISH truncated in the topic or packet id")
    packet_id = buf[topic_end] << 8 | buf[topic_end + 1]
    if not packet_id:
        raise FrameError("packet id 0")
    return body + 2, topic_end, packet_id, topic_end + 2


def _packet_id(body: bytes) -> int:
    packet_id = body[0] << 8 | body[1]
    if not packet_id:
        raise FrameError("packet id 0")
    return packet_id


def decode(packet: bytes) -> Received:
    """Exactly one whole packet a client receives (CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP)."""
    if len(packet) < 2:
        raise FrameError("truncated fixed header")
    first = packet[0]
    check_first_byte(first)
    decoded = decode_remaining_length(packet, 1)
    if decoded is None:
        raise FrameError("truncated fixed header")
    length, body = decoded
    if body + length != len(packet):
        raise FrameError("truncated packet" if body + length > len(packet) else "bytes after the packet")
    kind = first >> 4
    if kind == PUBLISH:
        topic_start, topic_end, packet_id, payload = publish_fields(first, packet, body, len(packet))
        topic = packet[topic_start:topic_end]
        if b"+" in topic or b"#" in topic or b"\x00" in topic:
            raise FrameError("PUBLISH topic with a wildcard or NUL")  # [MQTT-3.3.2-2]
        qos = first >> 1 & 0x03
        return Publish(topic, packet[payload:], qos, packet_id, bool(first & _DUP), bool(first & _RETAIN))
    rest = packet[body:]
    if kind == PUBACK:
        if length != 2:
            raise FrameError(f"PUBACK remaining length {length}, not 2")
        return Puback(_packet_id(rest))
    if kind == CONNACK:
        if length != 2:
            raise FrameError(f"CONNACK remaining length {length}, not 2")
        if rest[0] & 0xFE:
            raise FrameError("CONNACK reserved flags set")
        if rest[1] > 5:
            raise FrameError(f"CONNACK return code {rest[1]} undefined")
        if rest[1] and rest[0]:
            raise FrameError("CONNACK refusal with session present")  # [MQTT-3.2.2-4]
        return Connack(rest[0] == 1, rest[1])
    if kind == SUBACK:
        if length != 3:
            raise FrameError(f"SUBACK remaining length {length}, not 3 (one filter)")
        if rest[2] > 2 and rest[2] != SUBACK_FAILURE:
            raise FrameError(f"SUBACK return code 0x{rest[2]:x} undefined")
        return Suback(_packet_id(rest), rest[2])
    if kind == PINGRESP:
        if length:
            raise FrameError(f"PINGRESP remaining length {length}, not 0")
        return Pingresp()
    raise FrameError(f"packet type {kind} is not sent to a client")
