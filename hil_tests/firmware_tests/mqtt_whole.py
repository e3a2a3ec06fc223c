# Whole MQTT packets as bytes, for the firmware's tests in the VM: a PUBLISH built in one piece, a PUBACK
# as bytes, and decode() of any packet a client can receive. The device never needs them (its client writes
# headers into buffers and decodes packet by packet), so they are not in pinseal.transport.mqtt_packets,
# whose code a stock-image board holds in RAM; they are built only from that module's public functions, so
# what the tests check is the device's own codec.
from pinseal.transport import mqtt_packets as mp

_PUBLISH_DUP = 0x08
_PUBLISH_RETAIN = 0x01


def publish(topic, payload, qos=0, pid=0, dup=False, retain=False, max_packet=mp.MAX_PACKET):
    topic = topic.encode() if isinstance(topic, str) else topic
    head = bytearray(mp.publish_header_size(topic))
    n = mp.publish_header(head, topic, len(payload), qos, pid, dup, retain, max_packet)
    return bytes(head[:n]) + payload


def set_dup(buf):
    """Marks an encoded QoS 1 PUBLISH as a redelivery (§3.3.1.1)."""
    buf[0] |= _PUBLISH_DUP


def puback(pid):
    buf = bytearray(4)
    mp.puback_into(buf, pid)
    return bytes(buf)


def decode(data, max_packet=mp.MAX_PACKET):
    """One whole packet a client can receive, exactly data.

    Returns (CONNACK, session_present, code), (PUBLISH, topic, payload, qos, pid, dup, retain),
    (PUBACK, pid), (SUBACK, pid, code) or (PINGRESP,). Raises mp.PacketError for anything else.
    """
    n = len(data)
    head = mp.decode_fixed_header(data, n)
    if head is None:
        raise mp.PacketError("truncated fixed header")
    first, rl, hs = head
    if hs + rl > max_packet:
        raise mp.PacketError("packet of %d bytes over the bound %d" % (hs + rl, max_packet))
    if hs + rl != n:
        raise mp.PacketError("truncated packet" if hs + rl > n else "bytes after the packet")
    body = memoryview(data)[hs:]
    kind = first >> 4
    if kind == mp.CONNACK:
        return (mp.CONNACK,) + mp.decode_connack(body, rl)
    if kind == mp.PUBLISH:
        ts, te, pid, ps = mp.decode_publish(first, body, rl)
        qos = (first >> 1) & 0x03
        dup = bool(first & _PUBLISH_DUP)
        retain = bool(first & _PUBLISH_RETAIN)
        return (mp.PUBLISH, bytes(body[ts:te]), bytes(body[ps:]), qos, pid, dup, retain)
    if kind == mp.PUBACK:
        return (mp.PUBACK, mp.decode_puback(body, rl))
    if kind == mp.SUBACK:
        return (mp.SUBACK,) + mp.decode_suback(body, rl)
    if kind == mp.PINGRESP:
        mp.decode_pingresp(rl)
        return (mp.PINGRESP,)
    raise mp.PacketError("packet type %d is not sent to a client" % kind)
