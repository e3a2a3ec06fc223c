# The BLE link's bytes on the device (docs/protocol.md §11): the advertisement, the info map, bundle chunks
# and the gateway's writes down. Pure and bounded; the radio is pinseal.transport.ble's business.
# protocol/vectors/ble_link.json holds this codec equal to the host's (pinseal_protocol.ble_link); neither
# imports the other.
from micropython import const

from pinseal.wire import cbor

# UUIDs as text: bluetooth.UUID() takes them so, and the service's bytes go into the advertisement
SERVICE_UUID = "1c26420e-5b3a-4f3c-aa36-eaf5a3bf2ada"
INFO_UUID = "1c260001-5b3a-4f3c-aa36-eaf5a3bf2ada"
BUNDLES_UUID = "1c260002-5b3a-4f3c-aa36-eaf5a3bf2ada"
DOWN_UUID = "1c260003-5b3a-4f3c-aa36-eaf5a3bf2ada"

DOWN_ACK = const(1)
DOWN_RESEND = const(2)
DOWN_RECEIVED = const(3)
DOWN_SEND = const(4)
_PREFIX = const(8)
_CHUNK_HEADER = const(3)
_MAX_RESEND = const(32)


def _uuid_le(text):
    return bytes(reversed(bytes.fromhex(text.replace("-", ""))))


def advertisement():
    """Flags (LE General Discoverable, no BR/EDR) and the complete list of 128-bit UUIDs: 21 bytes."""
    return b"\x02\x01\x06\x11\x07" + _uuid_le(SERVICE_UUID)


def scan_response(kid):
    """Service data for the service UUID with the key id's first 8 bytes: 26 bytes."""
    return b"\x19\x21" + _uuid_le(SERVICE_UUID) + bytes(kid[:_PREFIX])


def info(kid, firmware, board, depth):
    """The info characteristic's value: {1: key id, 2: firmware, 3: board, 4: outbox depth}."""
    return cbor.dumps({1: bytes(kid), 2: firmware[:32], 3: board[:32], 4: depth})


def chunk_size(mtu):
    """Bundle bytes a notification carries at this ATT MTU: a notification's value is at most ATT's
    512-byte attribute, whatever MTU a central offered (BlueZ offers 517)."""
    return min(mtu - 3, 512) - _CHUNK_HEADER


def chunk_count(n, mtu):
    size = chunk_size(mtu)
    return (n + size - 1) // size if n else 1


def chunk(transfer, bundle, mtu, index):
    """Notification `index` of `bundle` sent as transfer `transfer`: transfer | index | last index | data."""
    size = chunk_size(mtu)
    last = chunk_count(len(bundle), mtu) - 1
    if last > 255:
        raise ValueError("bundle too large for this MTU")
    return bytes((transfer & 0xFF, index, last)) + bundle[index * size : (index + 1) * size]


def decode_down(raw):
    """A write on the down characteristic -> (kind, value): the ack bytes (1), (transfer, indices) (2),
    the transfer id (3), None (4). ValueError for anything else: nothing from the air is trusted."""
    n = len(raw)
    if n == 0:
        raise ValueError("empty down write")
    kind = raw[0]
    if kind == DOWN_ACK:
        if n < 2:
            raise ValueError("ack write without an ack")
        return kind, bytes(raw[1:])
    if kind == DOWN_RESEND:
        if n < 3 or n > 2 + _MAX_RESEND:
            raise ValueError("resend request needs 1..32 indices")
        indices = bytes(raw[2:])
        for i in range(len(indices)):
            if indices[i] in indices[i + 1 :]:
                raise ValueError("resend request repeats an index")
        return kind, (raw[1], indices)
    if kind == DOWN_RECEIVED:
        if n != 2:
            raise ValueError("received write is a transfer id")
        return kind, raw[1]
    if kind == DOWN_SEND:
        if n != 1:
            raise ValueError("send write has no body")
        return kind, None
    raise ValueError("unknown down kind")
