# The gateway's ack (docs/protocol.md §5): the only message a device receives, and the one that lets
# it delete readings from its outbox; or, on the same topic, its signed rejection (§5.1) of a bundle no
# resend can cure. Nothing in either is believed before the gateway's signature has verified, and it
# must name this device (so a message for one device cannot be replayed to another).
from micropython import const

from pinseal.wire import WireError, cose
from pinseal.wire.cbor import loads

VERSION = const(1)
# Messages are at most 2,048 bytes (§3); an ack is about 160. The bound stops large garbage before any
# parsing.
MAX_ACK_SIZE = const(2048)
_KEY_ID_SIZE = const(16)
_HASH_SIZE = const(32)


def _invalid(detail):
    return WireError("invalid_payload", detail)


def parse(ack_bytes):
    """Checks size and COSE shape (the pinseal header profile); returns the cose.Sign1 unverified."""
    if len(ack_bytes) > MAX_ACK_SIZE:
        raise WireError("too_large", "ack of %d bytes" % len(ack_bytes))
    msg = cose.parse(ack_bytes)
    cose.pinseal_kid(msg)
    return msg


def parse_payload(payload, device_key_id):
    """Checks an ack or rejection payload; returns (seq, bundle_hash, time_s, reason).

    An ack has reason None and seq its key 3. A rejection has key 6 (reason, text) and no key 3; its
    seq is key 7, where the counter must continue. Other keys are ignored (docs/protocol.md §7). A
    message for another device is rejected as "wrong_topic", the reason the host codec gives it.
    """
    fields = loads(payload)
    if type(fields) is not dict:
        raise _invalid("ack payload is not a map")
    if 1 not in fields:
        raise _invalid("no version")
    version = fields[1]
    if type(version) is not int or version != VERSION:
        raise WireError("unsupported_version", "ack version %r" % (version,))
    device = fields.get(2)
    reason = fields.get(6)
    seq = fields.get(3)
    if reason is not None:
        if seq is not None or type(reason) is not str or not 0 < len(reason) <= 32:
            raise _invalid("rejection with a seq, or a reason not text of 1 to 32 characters")
        seq = fields.get(7)
    bundle_hash = fields.get(4)
    time_s = fields.get(5)
    if type(device) is not bytes or len(device) != _KEY_ID_SIZE:
        raise _invalid("device is not a 16-byte key id")
    if type(bundle_hash) is not bytes or len(bundle_hash) != _HASH_SIZE:
        raise _invalid("bundle is not a 32-byte hash")
    if type(seq) is not int or seq < 0:
        raise _invalid("seq is not an unsigned integer")
    if type(time_s) is not int or time_s < 0:
        raise _invalid("time is not an unsigned integer")
    if device != device_key_id:
        raise WireError("wrong_topic", "ack is for another device")
    return seq, bundle_hash, time_s, reason


async def verify(ack_bytes, gateway_public_key, device_key_id, gateway_key_id=None):
    """Parses and verifies an ack or rejection from the network; returns parse_payload's tuple.

    Raises WireError (a ValueError) for anything that is not a well-formed ack signed by this device's
    gateway for this device: "unknown_device" when it is signed by another key, "bad_signature" when
    the signature does not verify, "wrong_topic" when it names another device. The payload is read
    only after the signature has verified. gateway_key_id saves a SHA-256 per ack when passed.
    """
    msg = parse(ack_bytes)
    if gateway_key_id is None:
        # imported here: the app passes the key id, so identity's code can leave RAM after boot
        from pinseal.identity import key_id

        gateway_key_id = key_id(gateway_public_key)
    if msg.headers[cose.HDR_KID] != gateway_key_id:
        raise WireError("unknown_device", "ack is not signed by this device's gateway key")
    await cose.verify(msg, gateway_public_key)
    return parse_payload(msg.payload, device_key_id)
