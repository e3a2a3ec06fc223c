# MQTT 3.1.1 control packets (OASIS standard, 2014), the subset a device client sends and receives:
# CONNECT, CONNACK, PUBLISH (QoS 0/1), PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT.
# Pure functions over bytes, no I/O: the client (pinseal.transport.mqtt) does the reading and writing.
#
# Encoders write into caller-owned buffers where a packet is sent often (PUBLISH header, PUBACK), so the
# hot path allocates nothing; rare packets (CONNECT, SUBSCRIBE) are returned as bytes. Whole-packet
# helpers that only tests and tools want (a PUBLISH as bytes, decode() of any packet) live with the tests
# (hil_tests/firmware_tests/mqtt_whole.py): on a board that loads code into RAM they were ~1.5 KB of heap.
#
# Decoders read what the broker sent: untrusted. Every malformed, truncated or oversized input raises
# PacketError (a ValueError), never IndexError, and nothing allocates more than the input justifies.
# Stricter than the spec's minimum where a conforming broker never sends the thing: a non-minimal
# remaining length, reserved flag bits, CONNACK/SUBACK codes the spec does not define, a SUBACK for
# more than one filter (this client subscribes one filter per SUBSCRIBE), wildcards or NUL in a
# received topic name. Topic names are not checked for valid UTF-8: the client only compares them
# byte for byte with its own topic.
from micropython import const

CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
SUBSCRIBE = const(8)
SUBACK = const(9)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

# Default bound on a whole packet (fixed header + remaining length) for decode(); a bundle is at most
# 2,048 bytes (docs/protocol.md §3), an ack about 160.
MAX_PACKET = const(4096)
MAX_REMAINING = const(268435455)  # 4 bytes of remaining length (§2.2.3)
SUBACK_FAILURE = const(0x80)

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

_PUBLISH_DUP = const(0x08)
_PUBLISH_RETAIN = const(0x01)
_PROTOCOL = b"\x00\x04MQTT\x04"  # protocol name + level 4 (3.1.1)
_CLEAN_SESSION = const(0x02)
_PASSWORD_FLAG = const(0x40)
_USERNAME_FLAG = const(0x80)


class PacketError(ValueError):
    """A malformed, truncated or oversized MQTT packet (or one a client must never receive)."""


def _b(s):
    return s.encode() if isinstance(s, str) else s


def remaining_length_size(n):
    if n < 0x80:
        return 1
    if n < 0x4000:
        return 2
    if n < 0x200000:
        return 3
    return 4


def put_remaining_length(buf, pos, n):
    """Writes n as the varint of §2.2.3 at buf[pos]; returns the position after it."""
    if n < 0 or n > MAX_REMAINING:
        raise ValueError("remaining length out of range")
    while True:
        byte = n & 0x7F
        n >>= 7
        buf[pos] = byte | 0x80 if n else byte
        pos += 1
        if not n:
            return pos


def _put_u16(buf, pos, n):
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    return pos + 2


def _put_str(buf, pos, s):
    n = len(s)
    pos = _put_u16(buf, pos, n)
    buf[pos : pos + n] = s
    return pos + n


def _check_u16_str(s, what):
    if len(s) > 0xFFFF:
        raise ValueError(what + " longer than 65,535 bytes")


def _check_pid(pid):
    if pid < 1 or pid > 0xFFFF:
        raise ValueError("packet id must be 1..65535")


def _packet(first, body_len):
    """A bytearray with the fixed header written; returns (buf, position of the body)."""
    hs = 1 + remaining_length_size(body_len)
    buf = bytearray(hs + body_len)
    buf[0] = first
    put_remaining_length(buf, 1, body_len)
    return buf, hs


# ---------------------------------------------------------------------------------------------- encode


def connect(client_id, username=None, password=None, keepalive_s=60, clean_session=True):
    """CONNECT (§3.1) without a will. Strings may be str (UTF-8) or bytes; the password is binary."""
    client_id = _b(client_id)
    flags = _CLEAN_SESSION if clean_session else 0
    body_len = len(_PROTOCOL) + 3 + 2 + len(client_id)
    _check_u16_str(client_id, "client id")
    if not clean_session and not client_id:
        raise ValueError("an empty client id needs a clean session")  # [MQTT-3.1.3-7]
    if username is not None:
        username = _b(username)
        _check_u16_str(username, "user name")
        flags |= _USERNAME_FLAG
        body_len += 2 + len(username)
    if password is not None:
        if username is None:
            raise ValueError("a password needs a user name")  # [MQTT-3.1.2-22]
        password = _b(password)
        _check_u16_str(password, "password")
        flags |= _PASSWORD_FLAG
        body_len += 2 + len(password)
    if keepalive_s < 0 or keepalive_s > 0xFFFF:
        raise ValueError("keepalive must be 0..65535 s")
    buf, pos = _packet(CONNECT << 4, body_len)
    buf[pos : pos + len(_PROTOCOL)] = _PROTOCOL
    pos += len(_PROTOCOL)
    buf[pos] = flags
    pos = _put_u16(buf, pos + 1, keepalive_s)
    pos = _put_str(buf, pos, client_id)
    if username is not None:
        pos = _put_str(buf, pos, username)
    if password is not None:
        _put_str(buf, pos, password)
    return bytes(buf)


def publish_header_size(topic):
    """Bytes publish_header() needs for this topic at most (QoS 1, the largest remaining length)."""
    return 1 + 4 + 2 + len(topic) + 2


def publish_header(buf, topic, payload_len, qos=0, pid=0, dup=False, retain=False, max_packet=MAX_PACKET):
    """Writes a PUBLISH's fixed header, topic and packet id into buf (§3.3); returns their length.

    The payload follows on the wire unchanged: the caller writes it after buf[:n], so a bundle is
    never copied. A packet larger than max_packet is refused with ValueError.
    """
    if qos != 0 and qos != 1:
        raise ValueError("QoS 0 or 1 only")
    if not topic or b"+" in topic or b"#" in topic or b"\x00" in topic:
        raise ValueError("bad topic name")
    _check_u16_str(topic, "topic")
    body_len = 2 + len(topic) + payload_len
    first = PUBLISH << 4 | qos << 1
    if qos:
        _check_pid(pid)
        body_len += 2
        if dup:
            first |= _PUBLISH_DUP
    elif dup:
        raise ValueError("DUP needs QoS 1")  # [MQTT-3.3.1-2]
    if retain:
        first |= _PUBLISH_RETAIN
    if 1 + remaining_length_size(body_len) + body_len > max_packet:
        raise ValueError("PUBLISH of %d bytes over the packet bound" % body_len)
    buf[0] = first
    pos = put_remaining_length(buf, 1, body_len)
    pos = _put_str(buf, pos, topic)
    if qos:
        pos = _put_u16(buf, pos, pid)
    return pos


def puback_into(buf, pid):
    """PUBACK (§3.4) into buf[0:4]."""
    _check_pid(pid)
    buf[0] = PUBACK << 4
    buf[1] = 2
    _put_u16(buf, 2, pid)
    return 4


def subscribe(pid, topic_filter, qos=1):
    """SUBSCRIBE (§3.8) to one filter."""
    topic_filter = _b(topic_filter)
    _check_pid(pid)
    if not topic_filter:
        raise ValueError("empty topic filter")
    _check_u16_str(topic_filter, "topic filter")
    if qos != 0 and qos != 1:
        raise ValueError("QoS 0 or 1 only")
    buf, pos = _packet(SUBSCRIBE << 4 | 0x02, 2 + 2 + len(topic_filter) + 1)
    pos = _put_u16(buf, pos, pid)
    pos = _put_str(buf, pos, topic_filter)
    buf[pos] = qos
    return bytes(buf)


# ---------------------------------------------------------------------------------------------- decode


def _check_first(first):
    kind = first >> 4
    flags = first & 0x0F
    if kind == PUBLISH:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise PacketError("PUBLISH with QoS 3")
        if qos == 0 and flags & _PUBLISH_DUP:
            raise PacketError("DUP set on a QoS 0 PUBLISH")
    elif kind == 0 or kind == 15:
        raise PacketError("reserved packet type %d" % kind)
    elif kind == 6 or kind == 8 or kind == 10:  # PUBREL, SUBSCRIBE, UNSUBSCRIBE
        if flags != 0x02:
            raise PacketError("bad flags 0x%x for packet type %d" % (flags, kind))
    elif flags:
        raise PacketError("bad flags 0x%x for packet type %d" % (flags, kind))


def decode_fixed_header(data, n):
    """Fixed header (§2.2) at the start of data[:n].

    Returns (first_byte, remaining_length, header_size), or None when n bytes are not enough yet.
    The caller bounds remaining_length by what it is willing to hold.
    """
    if n < 2:
        return None
    first = data[0]
    _check_first(first)
    value = 0
    shift = 0
    i = 1
    while True:
        if i >= n:
            return None
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        if i == 5:
            raise PacketError("remaining length longer than 4 bytes")
        shift += 7
    if i > 2 and byte == 0:
        raise PacketError("remaining length not minimally encoded")
    return first, value, i


def _u16(body, pos):
    return body[pos] << 8 | body[pos + 1]


def decode_connack(body, n):
    """CONNACK body (§3.2) -> (session_present, return_code); return codes 0..5."""
    if n != 2:
        raise PacketError("CONNACK remaining length %d, not 2" % n)
    flags = body[0]
    code = body[1]
    if flags & 0xFE:
        raise PacketError("CONNACK reserved flags set")
    if code > 5:
        raise PacketError("CONNACK return code %d undefined" % code)
    if code and flags:
        raise PacketError("CONNACK refusal with session present")  # [MQTT-3.2.2-4]
    return flags == 1, code


def decode_puback(body, n):
    """PUBACK body (§3.4) -> packet id."""
    if n != 2:
        raise PacketError("PUBACK remaining length %d, not 2" % n)
    pid = _u16(body, 0)
    if not pid:
        raise PacketError("packet id 0")
    return pid


def decode_suback(body, n):
    """SUBACK body (§3.9) for one filter -> (packet id, return code 0/1/2 or 0x80 failure)."""
    if n != 3:
        raise PacketError("SUBACK remaining length %d, not 3 (one filter)" % n)
    pid = _u16(body, 0)
    code = body[2]
    if not pid:
        raise PacketError("packet id 0")
    if code > 2 and code != SUBACK_FAILURE:
        raise PacketError("SUBACK return code 0x%x undefined" % code)
    return pid, code


def decode_pingresp(n):
    if n:
        raise PacketError("PINGRESP remaining length %d, not 0" % n)


def decode_publish(first, body, n):
    """PUBLISH body (§3.3) in body[:n] -> (topic_start, topic_end, packet_id, payload_start).

    Offsets into body, so nothing is copied; packet_id is 0 for QoS 0. Works on a prefix too (the
    client reads the head of an oversized PUBLISH to acknowledge it and drops the rest).
    """
    if n < 2:
        raise PacketError("PUBLISH truncated in the topic length")
    end = 2 + _u16(body, 0)
    if end == 2:
        raise PacketError("PUBLISH with an empty topic")
    if end > n:
        raise PacketError("PUBLISH truncated in the topic")
    for i in range(2, end):
        c = body[i]
        if c == 0x23 or c == 0x2B or c == 0:  # '#', '+', NUL: not in a topic name [MQTT-3.3.2-2]
            raise PacketError("PUBLISH topic with a wildcard or NUL")
    pid = 0
    if (first >> 1) & 0x03:
        if end + 2 > n:
            raise PacketError("PUBLISH truncated in the packet id")
        pid = _u16(body, end)
        if not pid:
            raise PacketError("packet id 0")
        return 2, end, pid, end + 2
    return 2, end, pid, end
